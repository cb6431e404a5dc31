"""A retrieval server that speaks Search-R1's protocol, so Search-R1's clients work unchanged.

    rewardflow serve-retriever [--data-path DIR] [--host 127.0.0.1] [--port 8000] [--topk 3]

``POST /retrieve`` takes Search-R1's batch request ``{"queries": [...], "topk": k,
"return_scores": bool}`` (``search_r1/search/retrieval_server.py``) or the single-query
``{"query": "..."}`` that verl-agent's search tool sends, and answers ``{"result": [...]}``: per
query, the top-k corpus rows ``{"id", "contents"}``, each as ``{"document": row, "score": s}``
when scores are asked for. A missing or zero ``topk`` is the server's default. ``GET /health``
says what is served. Requests are bounded (queries per request, characters per query, ``topk``,
body bytes) and anything else gets a 4xx with a message.
"""

# No `from __future__ import annotations`: FastAPI reads the request model from the endpoint's
# annotation, and that model is defined inside create_app.
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from rewardflow_envs.envs.search.dataset import Passage
from rewardflow_envs.extras import require

DEFAULT_HOST = "127.0.0.1"


@dataclass(frozen=True)
class Limits:
    topk: int = 3  # when a request names none, as Search-R1's server (--topk 3)
    max_topk: int = 100
    max_queries: int = 1024
    max_query_chars: int = 4096
    max_body_bytes: int = 4 * 2**20


class ScoredSearch(Protocol):
    """What a backend offers the server: (corpus position, score) of the best k passages."""

    def scored_search(self, query: str, k: int) -> list[tuple[int, float]]: ...


def create_app(passages: Sequence[Passage], backend: ScoredSearch, name: str, limits=Limits()):
    """The FastAPI app serving `backend` over `passages` (the corpus, in index order)."""
    fastapi = require("fastapi", "retriever")
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel, ConfigDict

    class RetrieveRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        queries: list[str] | None = None
        query: str | None = None
        topk: int | None = None
        return_scores: bool = False

    app = fastapi.FastAPI(title="rewardflow retriever")

    def refuse(status: int, message: str):
        return JSONResponse(status_code=status, content={"detail": message})

    @app.middleware("http")
    async def bounded_body(request, call_next):
        declared = request.headers.get("content-length", "")
        if request.method == "POST" and not declared.isdigit():
            return refuse(411, "send the request with a Content-Length")
        if declared.isdigit() and int(declared) > limits.max_body_bytes:
            return refuse(413, f"the request body is over {limits.max_body_bytes} bytes")
        return await call_next(request)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "backend": name, "passages": len(passages), "topk": limits.topk}

    @app.post("/retrieve")
    def retrieve(request: RetrieveRequest):
        if (request.queries is None) == (request.query is None):
            return refuse(422, "give either 'queries' (a list of strings) or 'query' (a string)")
        queries = request.queries if request.queries is not None else [request.query]
        if len(queries) > limits.max_queries:
            return refuse(422, f"{len(queries)} queries; at most {limits.max_queries} a request")
        if any(len(query) > limits.max_query_chars for query in queries):
            return refuse(422, f"a query is over {limits.max_query_chars} characters")
        k = request.topk or limits.topk
        if not 0 < k <= limits.max_topk:
            return refuse(422, f"topk must be between 1 and {limits.max_topk}, got {k}")
        result = []
        for query in queries:
            hits = backend.scored_search(query, k)
            documents = [{"id": passages[p].id, "contents": passages[p].contents} for p, _ in hits]
            if request.return_scores:
                documents = [
                    {"document": document, "score": score}
                    for document, (_, score) in zip(documents, hits, strict=True)
                ]
            result.append(documents)
        return {"result": result}

    return app


def serve(app, host: str = DEFAULT_HOST, port: int = 8000) -> None:
    uvicorn = require("uvicorn", "retriever")
    uvicorn.run(app, host=host, port=port, log_level="warning")
