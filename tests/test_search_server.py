"""The retrieval server over loopback: Search-R1's and verl-agent's clients as they are written,
concurrent clients, bounded and malformed requests, and the command that starts it."""

from __future__ import annotations

import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("bm25s")
pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
requests = pytest.importorskip("requests")

from ranks import free_port  # noqa: E402
from retrieval import play_expert, serving  # noqa: E402

from rewardflow_envs import cli  # noqa: E402
from rewardflow_envs.envs.search import server  # noqa: E402
from rewardflow_envs.envs.search.dataset import EMBEDDED_DATA_DIR, load_dataset  # noqa: E402
from rewardflow_envs.envs.search.retriever import bm25_retriever  # noqa: E402
from rewardflow_envs.envs.search.server import Limits, create_app  # noqa: E402

QUERIES = ["Quidron compass", "Elin Brudrom", "capital of Metrasak", "zzzz no such words"]


@pytest.fixture(scope="module")
def corpus():
    dataset = load_dataset(EMBEDDED_DATA_DIR)
    return dataset.passages, bm25_retriever(dataset)


@pytest.fixture(scope="module")
def url(corpus):
    passages, backend = corpus
    with serving(create_app(passages, backend, "bm25", Limits(max_topk=20, max_queries=8))) as url:
        yield url


def search_r1_batch_search(search_url, queries, topk):
    """Search-R1's client (search_r1/llm_agent/generation.py, _batch_search and
    _passages2string), as written there."""
    payload = {"queries": queries, "topk": topk, "return_scores": True}
    results = requests.post(search_url, json=payload).json()["result"]

    def passages2string(retrieval_result):
        format_reference = ""
        for idx, doc_item in enumerate(retrieval_result):
            content = doc_item["document"]["contents"]
            title = content.split("\n")[0]
            text = "\n".join(content.split("\n")[1:])
            format_reference += f"Doc {idx + 1}(Title: {title}) {text}\n"
        return format_reference

    return [passages2string(result) for result in results]


def test_search_r1_client_gets_the_passages_bm25_ranks_here(url, corpus):
    passages, backend = corpus
    texts = search_r1_batch_search(f"{url}/retrieve", QUERIES, 3)
    for query, text in zip(QUERIES, texts, strict=True):
        expected = "".join(
            f"Doc {rank}(Title: {passages[p].contents.split(chr(10))[0]}) {passages[p].text}\n"
            for rank, p in enumerate(backend.search(query, 3), start=1)
        )
        assert text == expected
    # The corpus quotes its titles, and Search-R1 shows them as they are.
    assert texts[0].startswith('Doc 1(Title: "Quidron compass") The Quidron compass is')
    assert texts[-1] == ""  # nothing matches: an empty list, not an error


def test_scores_ids_and_the_default_topk(url, corpus):
    passages, backend = corpus
    reply = requests.post(f"{url}/retrieve", json={"queries": ["Elin Brudrom"]}).json()
    (documents,) = reply["result"]
    expected = backend.scored_search("Elin Brudrom", 3)
    assert documents == [
        {"id": passages[p].id, "contents": passages[p].contents} for p, _ in expected
    ]
    scored = requests.post(
        f"{url}/retrieve", json={"queries": ["Elin Brudrom"], "topk": 0, "return_scores": True}
    ).json()["result"][0]
    assert [d["score"] for d in scored] == pytest.approx([score for _, score in expected])
    assert [d["document"] for d in scored] == documents


def test_verl_agent_single_query_form(url):
    payload = {"query": "Quidron compass", "topk": 2, "return_scores": True}
    reply = requests.post(f"{url}/retrieve", json=payload).json()
    assert len(reply["result"]) == 1 and len(reply["result"][0]) <= 2
    assert reply["result"][0][0]["document"]["contents"].startswith('"Quidron compass"\n')


def test_concurrent_clients_get_what_one_client_gets(url):
    expected = search_r1_batch_search(f"{url}/retrieve", QUERIES, 3)
    with ThreadPoolExecutor(max_workers=8) as pool:
        replies = list(
            pool.map(lambda _: search_r1_batch_search(f"{url}/retrieve", QUERIES, 3), range(32))
        )
    assert all(reply == expected for reply in replies)


@pytest.mark.parametrize(
    "body, status, message",
    [
        ("{not json", 422, "JSON decode error"),
        (json.dumps({"queries": "one string"}), 422, "list"),
        (json.dumps({"queries": ["a"], "query": "b"}), 422, "either 'queries'"),
        (json.dumps({}), 422, "either 'queries'"),
        (json.dumps({"queries": ["a"], "topk": 21}), 422, "topk must be between 1 and 20"),
        (json.dumps({"queries": ["a"], "topk": -1}), 422, "topk must be between 1 and 20"),
        (json.dumps({"queries": ["a"] * 9}), 422, "at most 8 a request"),
        (json.dumps({"queries": ["a" * 5000]}), 422, "over 4096 characters"),
        (json.dumps({"queries": ["a"], "top_k": 3}), 422, "top_k"),
        (json.dumps({"queries": ["x" * 1000] * 5000}), 413, "body is over"),
    ],
)
def test_bad_requests_get_a_4xx_with_a_message(url, body, status, message):
    reply = requests.post(
        f"{url}/retrieve", data=body, headers={"Content-Type": "application/json"}
    )
    assert reply.status_code == status
    assert message in json.dumps(reply.json()["detail"])


def test_a_body_of_unknown_length_is_refused(url):
    chunks = iter([b'{"queries": ', b'["a"]}'])  # chunked: no Content-Length to check
    reply = requests.post(f"{url}/retrieve", data=chunks)
    assert reply.status_code == 411 and "Content-Length" in reply.json()["detail"]


def test_health(url, corpus):
    reply = requests.get(f"{url}/health").json()
    assert reply == {"status": "ok", "backend": "bm25", "passages": len(corpus[0]), "topk": 3}


def test_the_command_binds_loopback_unless_told_and_names_a_missing_corpus(
    tmp_path, capsys, monkeypatch
):
    assert cli.main(["serve-retriever", "--data-path", str(tmp_path / "nowhere")]) == 2
    assert str(tmp_path / "nowhere") in capsys.readouterr().out
    binds = []
    monkeypatch.setattr(server, "bind", lambda host, port: binds.append((host, port)))
    monkeypatch.setattr(server, "serve", lambda app, listener, limits: None)
    assert cli.main(["serve-retriever", "--port", "8123"]) == 0
    assert cli.main(["serve-retriever", "--host", "0.0.0.0", "--port", "8124"]) == 0
    assert binds == [("127.0.0.1", 8123), ("0.0.0.0", 8124)]
    assert "at http://127.0.0.1:8123/retrieve" in capsys.readouterr().out


def test_the_env_over_http_plays_as_it_does_in_process(url, tmp_path):
    from rewardflow_envs.envs.search import SearchEnv

    local = SearchEnv(split="test", expert=True)
    # A data directory with the questions only: the corpus stays on the server.
    (tmp_path / "test.jsonl").write_bytes((EMBEDDED_DATA_DIR / "test.jsonl").read_bytes())
    remote = SearchEnv(
        split="test", expert=True, data_path=tmp_path, retriever_url=f"{url}/retrieve"
    )
    seeds = range(40)
    assert play_expert(remote, seeds) == play_expert(local, seeds)


def search_env(url, **kwargs):
    from rewardflow_envs.envs.search import SearchEnv

    env = SearchEnv(retriever_url=url, **kwargs)
    env.reset(seed=0)
    return env


def test_a_dead_server_is_named_after_bounded_retries():
    from rewardflow_envs.envs.search.remote import RetrieverError

    dead = f"http://127.0.0.1:{free_port()}/retrieve"
    env = search_env(dead, retriever_timeout=0.5, retriever_retries=2)
    env.unwrapped.retriever.backoff = 0.05
    start = time.monotonic()
    with pytest.raises(RetrieverError, match=f"at {dead} did not answer in 3 tries"):
        env.step("<search>Quidron compass</search>")
    assert time.monotonic() - start < 5


def test_a_server_that_never_answers_times_out_and_is_named():
    import socket

    from rewardflow_envs.envs.search.remote import RetrieverError

    with socket.socket() as listener:  # accepts connections, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        silent = f"http://127.0.0.1:{listener.getsockname()[1]}/retrieve"
        env = search_env(silent, retriever_timeout=0.3, retriever_retries=1)
        env.unwrapped.retriever.backoff = 0.05
        start = time.monotonic()
        with pytest.raises(RetrieverError, match=f"at {silent} did not answer in 2 tries of 0.3 s"):
            env.step("<search>Quidron compass</search>")
        assert time.monotonic() - start < 5


def test_a_refused_request_is_reported_at_once_with_the_servers_reason(url):
    from rewardflow_envs.envs.search.remote import RetrieverError

    env = search_env(f"{url}/retrieve", top_k=50)  # the test server allows at most 20
    with pytest.raises(RetrieverError, match=r"refused the request \(HTTP 422\).*between 1 and 20"):
        env.step("<search>Quidron compass</search>")
    with pytest.raises(ValueError, match="retriever_url must be an http"):
        search_env("localhost:8000/retrieve")


# A hostile client or a mistyped command.


def raw_request(url: str, head: bytes, timeout: float = 10.0):
    """A socket to the server that has sent `head` (bytes as they go on the wire)."""
    host, port = url.removeprefix("http://").split(":")
    connection = socket.create_connection((host, int(port)), timeout=timeout)
    connection.sendall(head)
    return connection


def status_of(connection) -> int:
    reply = connection.recv(4096)
    return int(reply.split(b" ")[1])


@pytest.fixture
def strict_url(corpus):
    passages, backend = corpus
    limits = Limits(max_in_flight=2, request_timeout_s=1.0)
    app = create_app(passages, backend, "bm25", limits)
    with serving(app, http=server.deadline_protocol(limits.request_timeout_s)) as url:
        yield url


def test_a_chunked_body_is_refused_before_any_of_it_is_read(url):
    """Content-Length: 1 beside Transfer-Encoding: chunked used to read a body of any size."""
    head = (
        b"POST /retrieve HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    with raw_request(url, head) as connection:  # not one byte of the body sent
        assert status_of(connection) == 411


def first_status(url: str, wanted: int, within: float = 5.0):
    """The reply to a query, asked again until it has status `wanted` or time is up."""
    deadline = time.monotonic() + within
    while True:
        reply = requests.post(f"{url}/retrieve", json={"query": "Quidron compass"})
        if reply.status_code == wanted or time.monotonic() > deadline:
            return reply
        time.sleep(0.05)


def test_requests_beyond_the_in_flight_limit_get_a_503(strict_url):
    head = b"POST /retrieve HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"
    slow = [raw_request(strict_url, head) for _ in range(2)]  # bodies that never finish
    try:
        reply = first_status(strict_url, 503)  # once the server holds both
        assert reply.status_code == 503 and "try again" in reply.json()["detail"]
    finally:
        for connection in slow:
            connection.close()
    assert first_status(strict_url, 200).status_code == 200  # their places are free again


def test_a_body_that_does_not_arrive_in_time_gets_a_408(strict_url):
    head = b'POST /retrieve HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"qu'
    started = time.monotonic()
    with raw_request(strict_url, head) as connection:
        assert status_of(connection) == 408
    assert time.monotonic() - started < 5


def test_a_connection_that_never_finishes_its_headers_is_closed(strict_url):
    started = time.monotonic()
    with raw_request(strict_url, b"POST /retrieve HTTP/1.1\r\nHost: x\r\n") as connection:
        assert connection.recv(4096) == b""  # closed by the server, no answer
    assert time.monotonic() - started < 5
    assert requests.get(f"{strict_url}/health").status_code == 200


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--port", "99999"], "--port must be between 1 and 65535"),
        (["--host", "256.1.1.1"], "cannot listen on 256.1.1.1:"),
        (["--topk", "0"], "topk must be between 1 and 100"),
        (["--topk", "1000"], "topk must be between 1 and 100"),
        (["--max-in-flight", "0"], "max_in_flight must be at least 1"),
        (["--request-timeout", "nan"], "request_timeout_s must be above 0"),
    ],
)
def test_bad_command_settings_are_refused_before_the_server_says_it_serves(
    arguments, message, capsys
):
    assert cli.main(["serve-retriever", *arguments]) == 2
    out = capsys.readouterr().out
    assert message in out and "serving" not in out
