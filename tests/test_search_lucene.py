"""The server on a Pyserini (Lucene) index, as Search-R1's BM25 server searches. Needs pyserini
and Java (the `lucene` extra); skipped where they are not installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

os.environ.setdefault("OPENAI_API_KEY", "unused")  # pyserini 0.25 builds an OpenAI client
pytest.importorskip("pyserini.search.lucene")
pytest.importorskip("fastapi")
if shutil.which("java") is None:
    pytest.skip("Pyserini needs a Java runtime", allow_module_level=True)

from rewardflow_envs import cli  # noqa: E402
from rewardflow_envs.envs.search import server  # noqa: E402
from rewardflow_envs.envs.search.dataset import EMBEDDED_DATA_DIR, load_dataset  # noqa: E402
from rewardflow_envs.envs.search.lucene import LuceneSearch  # noqa: E402


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory):
    work = tmp_path_factory.mktemp("lucene")
    (work / "corpus").mkdir()
    shutil.copy(EMBEDDED_DATA_DIR / "corpus.jsonl", work / "corpus" / "corpus.jsonl")
    subprocess.run(
        [sys.executable, "-m", "pyserini.index.lucene", "--collection", "JsonCollection",
         "--input", str(work / "corpus"), "--index", str(work / "index"),
         "--generator", "DefaultLuceneDocumentGenerator", "--threads", "1", "--storeRaw"],
        check=True, capture_output=True,
    )  # fmt: skip
    return work / "index"


def test_hits_are_lucenes_mapped_to_the_corpus(index_dir):
    from pyserini.search.lucene import LuceneSearcher

    passages = load_dataset(EMBEDDED_DATA_DIR).passages
    search = LuceneSearch(index_dir, passages)
    searcher = LuceneSearcher(str(index_dir))
    for query in ("Quidron compass", "Elin Brudrom engineer", "capital of Metrasak"):
        hits = searcher.search(query, 3)
        got = search.scored_search(query, 3)
        assert [passages[p].id for p, _ in got] == [hit.docid for hit in hits]
        assert [s for _, s in got] == pytest.approx([hit.score for hit in hits])
    assert passages[search.search("Quidron compass", 1)[0]].title == "Quidron compass"


def test_the_server_serves_a_lucene_index(index_dir, monkeypatch):
    from fastapi.testclient import TestClient

    apps = []
    monkeypatch.setattr(server, "serve", lambda app, host, port: apps.append(app))
    assert cli.main(["serve-retriever", "--backend", "lucene", "--index", str(index_dir)]) == 0
    client = TestClient(apps[0])
    assert client.get("/health").json()["backend"] == "lucene bm25"
    reply = client.post("/retrieve", json={"queries": ["Quidron compass"], "topk": 1}).json()
    assert reply["result"][0][0]["contents"].startswith('"Quidron compass"\n')


def test_an_index_of_another_corpus_is_refused(index_dir, tmp_path):
    from test_search_data import tiny_tree

    other = load_dataset(tiny_tree(tmp_path)).passages
    with pytest.raises(ValueError, match="which the corpus does not"):
        LuceneSearch(index_dir, other).search("Quidron compass", 3)
