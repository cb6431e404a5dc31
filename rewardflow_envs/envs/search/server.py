"""A retrieval server that speaks Search-R1's protocol, so Search-R1's clients work unchanged.

    rewardflow serve-retriever [--data-path DIR] [--host 127.0.0.1] [--port 8000] [--topk 3]

``POST /retrieve`` takes Search-R1's batch request ``{"queries": [...], "topk": k,
"return_scores": bool}`` (``search_r1/search/retrieval_server.py``) or the single-query
``{"query": "..."}`` that verl-agent's search tool sends, and answers ``{"result": [...]}``: per
query, the top-k corpus rows ``{"id", "contents"}``, each as ``{"document": row, "score": s}``
when scores are asked for. A missing or zero ``topk`` is the server's default. ``GET /health``
says what is served. Requests are bounded (queries per request, characters per query, ``topk``,
body bytes as read, requests in flight, seconds to receive a request) and anything else gets a
4xx (or a 503 while the server is full) with a message.
"""

# No `from __future__ import annotations`: FastAPI reads the request model from the endpoint's
# annotation, and that model is defined inside create_app.
import asyncio
import math
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from rewardflow_envs.envs.search.dataset import Passage
from rewardflow_envs.extras import require
from rewardflow_envs.net import listening_socket

DEFAULT_HOST = "127.0.0.1"


@dataclass(frozen=True)
class Limits:
    topk: int = 3  # when a request names none, as Search-R1's server (--topk 3)
    max_topk: int = 100
    max_queries: int = 1024
    max_query_chars: int = 4096
    max_body_bytes: int = 4 * 2**20
    # Requests being received or answered at once; more get a 503. With the body limit this
    # bounds the memory that request bodies take (16 x 4 MiB).
    max_in_flight: int = 16
    # Seconds a client has to send a request (line, headers and body) once its connection
    # opens or its previous answer is sent; then the connection is closed (or the request
    # answered 408 when its headers came in time).
    request_timeout_s: float = 30.0

    def __post_init__(self):
        if not 1 <= self.topk <= self.max_topk:
            raise ValueError(f"topk must be between 1 and {self.max_topk}, got {self.topk}")
        bounds = ("max_topk", "max_queries", "max_query_chars", "max_body_bytes", "max_in_flight")
        for name in bounds:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not (math.isfinite(self.request_timeout_s) and self.request_timeout_s > 0):
            raise ValueError(f"request_timeout_s must be above 0, got {self.request_timeout_s}")


class ScoredSearch(Protocol):
    """What a backend offers the server: (corpus position, score) of the best k passages."""

    def scored_search(self, query: str, k: int) -> list[tuple[int, float]]: ...


def create_app(passages: Sequence[Passage], backend: ScoredSearch, name: str, limits=Limits()):
    """The FastAPI app serving `backend` over `passages` (the corpus, in index order)."""
    fastapi = require("fastapi", "retriever")
    from pydantic import BaseModel, ConfigDict

    class RetrieveRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        queries: list[str] | None = None
        query: str | None = None
        topk: int | None = None
        return_scores: bool = False

    app = fastapi.FastAPI(title="rewardflow retriever")

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "backend": name, "passages": len(passages), "topk": limits.topk}

    @app.post("/retrieve")
    def retrieve(request: RetrieveRequest):
        if (request.queries is None) == (request.query is None):
            return refusal(422, "give either 'queries' (a list of strings) or 'query' (a string)")
        queries = request.queries if request.queries is not None else [request.query]
        if len(queries) > limits.max_queries:
            return refusal(422, f"{len(queries)} queries; at most {limits.max_queries} a request")
        if any(len(query) > limits.max_query_chars for query in queries):
            return refusal(422, f"a query is over {limits.max_query_chars} characters")
        k = request.topk or limits.topk
        if not 0 < k <= limits.max_topk:
            return refusal(422, f"topk must be between 1 and {limits.max_topk}, got {k}")
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

    app.add_middleware(BoundedRequests, limits=limits)
    return app


class Refused(Exception):
    """A request the limits turn away: its status and the message its answer carries."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class BoundedRequests:
    """ASGI middleware that holds every request to the limits before the app sees it.

    The body is read here, counting the bytes that actually arrive (whatever Content-Length
    says), within the request's time limit, and handed to the app whole. A chunked body
    (Transfer-Encoding) is refused before any of it is read: Search-R1's clients send a
    Content-Length.
    """

    def __init__(self, app, limits: Limits):
        self.app = app
        self.limits = limits
        self.in_flight = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            self._admit(scope)
            self.in_flight += 1
            try:
                body = await self._read_body(receive)
                if body is not None:
                    await self.app(scope, _replay(body, receive), send)
            finally:
                self.in_flight -= 1
        except Refused as refused:
            await refusal(refused.status, str(refused), close=True)(scope, receive, send)

    def _admit(self, scope) -> None:
        """Refuse what the headers and the load tell before any of the body is read."""
        limits = self.limits
        headers = dict(scope["headers"])
        if b"transfer-encoding" in headers:
            raise Refused(411, "send the request with a Content-Length, not a chunked body")
        declared = headers.get(b"content-length", b"").decode("latin-1")
        if scope["method"] == "POST" and not declared.isdigit():
            raise Refused(411, "send the request with a Content-Length")
        if declared.isdigit() and int(declared) > limits.max_body_bytes:
            raise Refused(413, f"the request body is over {limits.max_body_bytes} bytes")
        if self.in_flight >= limits.max_in_flight:
            raise Refused(
                503, f"the server is answering {limits.max_in_flight} requests; try again"
            )

    async def _read_body(self, receive) -> bytes | None:
        """The whole body (None: the client left); Refused when it is too large or too slow."""
        limit = self.limits.max_body_bytes
        body = bytearray()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.request_timeout_s
        while True:
            try:
                message = await asyncio.wait_for(receive(), deadline - loop.time())
            except asyncio.TimeoutError:  # TimeoutError from Python 3.11 on
                raise Refused(408, "the request body did not arrive in time") from None
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            if len(body) > limit:
                raise Refused(413, f"the request body is over {limit} bytes")
            if not message.get("more_body", False):
                return bytes(body)


def _replay(body: bytes, receive):
    """A `receive` that gives the app the body already read, then waits on the client."""
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def refusal(status: int, message: str, close: bool = False):
    """The JSON answer `{"detail": message}` every refused request gets (an ASGI app too);
    `close` ends the connection after it (a request whose body was not read)."""
    from fastapi.responses import JSONResponse

    headers = {"connection": "close"} if close else None
    return JSONResponse(status_code=status, content={"detail": message}, headers=headers)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on `host`:`port`, or a ValueError that names what is wrong with
    them (checked before the server says it is serving)."""
    if not 0 < port < 65536:
        raise ValueError(f"--port must be between 1 and 65535, got {port}")
    try:
        return listening_socket(host, port)
    except OSError as error:
        raise ValueError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None


def deadline_protocol(timeout_s: float):
    """uvicorn's h11 protocol with a deadline on each request's line and headers.

    uvicorn has no such timeout (its keep-alive timer restarts on every byte that arrives), so
    a client could hold a connection open forever by never finishing its headers. Here a
    connection is closed when no new request has begun `timeout_s` after it opened or after
    its previous answer; the body's time limit is `BoundedRequests`'s.
    """
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class RequestDeadline(H11Protocol):
        def connection_made(self, transport):
            super().connection_made(transport)
            self._start_deadline()

        def on_response_complete(self):
            super().on_response_complete()
            self._start_deadline()

        def _start_deadline(self):
            self.loop.call_later(timeout_s, self._expire, self.cycle)

        def _expire(self, cycle):
            waiting = cycle is None or cycle.response_complete  # for the next request's head
            if self.cycle is cycle and waiting and not self.transport.is_closing():
                self.transport.close()

    return RequestDeadline


def serve(app, listener: socket.socket, limits: Limits = Limits()) -> None:
    """Serve `app` on the bound `listener` until interrupted."""
    uvicorn = require("uvicorn", "retriever")
    config = uvicorn.Config(
        app, http=deadline_protocol(limits.request_timeout_s), log_level="warning"
    )
    uvicorn.Server(config).run(sockets=[listener])
