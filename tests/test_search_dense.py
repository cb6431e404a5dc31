"""Dense retrieval with a tiny encoder built here (no download): e5's pooling and prefixes, faiss
indexes against brute force, the build-index command, and the server on a dense backend."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("faiss")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("bm25s")

from rewardflow_envs import cli  # noqa: E402
from rewardflow_envs.envs.search import dense  # noqa: E402
from rewardflow_envs.envs.search.dataset import EMBEDDED_DATA_DIR, load_dataset  # noqa: E402

QUERIES = ["Quidron compass", "Elin Brudrom engineer", "capital of Metrasak", "river"]


@pytest.fixture(scope="module")
def passages():
    return load_dataset(EMBEDDED_DATA_DIR).passages


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory, passages):
    """A 2-layer BERT with a tokenizer trained on the corpus, in a folder named like e5."""
    from rewardflow_train.models import train_tokenizer

    tokenizer = train_tokenizer([p.contents for p in passages], vocab_size=800)
    config = transformers.BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=512,
    )  # fmt: skip
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("encoders") / "tiny-e5-base"
    transformers.BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def encoder(encoder_dir):
    return dense.Encoder(encoder_dir, batch_size=16)


def test_mean_pooling_ignores_padding_and_vectors_are_unit(encoder):
    alone = encoder.encode(["capital"], "query")
    padded = encoder.encode(["capital", "a much longer text " * 10], "query")
    assert np.allclose(alone[0], padded[0], atol=1e-5)  # padding changes nothing
    assert np.allclose(np.linalg.norm(padded, axis=1), 1.0, atol=1e-5)


def test_e5_prefixes_follow_the_folder_name(encoder, encoder_dir, tmp_path):
    assert encoder.prefixes
    plain = dense.Encoder(encoder_dir, prefixes=False)
    assert np.allclose(encoder.encode(["x"], "query"), plain.encode(["query: x"], "query"))
    assert np.allclose(encoder.encode(["x"], "passage"), plain.encode(["passage: x"], "query"))
    assert not np.allclose(encoder.encode(["x"], "query"), encoder.encode(["x"], "passage"))
    renamed = tmp_path / "tiny-encoder"
    renamed.symlink_to(encoder_dir)
    assert not dense.Encoder(renamed).prefixes


def brute_force(encoder, vectors, query, k):
    scores = vectors @ encoder.encode([query], "query")[0]
    order = np.argsort(-scores, kind="stable")[:k]
    return [(int(i), float(scores[i])) for i in order]


def test_flat_index_is_brute_force_cosine(encoder, passages):
    vectors = encoder.encode([p.contents for p in passages], "passage")
    search = dense.DenseSearch(dense.build_index(vectors, "flat"), encoder, len(passages))
    for query in QUERIES:
        got = search.scored_search(query, 5)
        expected = brute_force(encoder, vectors, query, 5)
        assert [p for p, _ in got] == [p for p, _ in expected]
        assert [s for _, s in got] == pytest.approx([s for _, s in expected], abs=1e-5)


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_indexes_find_most_of_what_flat_finds(encoder, passages, kind):
    vectors = encoder.encode([p.contents for p in passages], "passage")
    flat = dense.DenseSearch(dense.build_index(vectors, "flat"), encoder, len(passages))
    other = dense.DenseSearch(dense.build_index(vectors, kind), encoder, len(passages))
    queries = [p.title for p in passages[:40]]
    found = sum(len(set(flat.search(q, 3)) & set(other.search(q, 3))) for q in queries)
    assert found / (3 * len(queries)) >= 0.8


def test_an_index_that_does_not_fit_the_corpus_or_encoder_is_refused(encoder, passages):
    vectors = encoder.encode([p.contents for p in passages[:10]], "passage")
    with pytest.raises(ValueError, match="holds 10 vectors but the corpus has"):
        dense.DenseSearch(dense.build_index(vectors), encoder, len(passages))
    wide = dense.build_index(np.eye(64, dtype=np.float32)[:10])
    with pytest.raises(ValueError, match="dimension 64, the encoder 32"):
        dense.DenseSearch(wide, encoder, 10)


def test_build_index_command_then_serve_it(encoder_dir, encoder, passages, tmp_path, capsys,
                                           monkeypatch):  # fmt: skip
    from rewardflow_envs.envs.search import server

    out = tmp_path / "e5_Flat.index"
    argv = ["build-index", "--encoder", str(encoder_dir), "--out", str(out), "--batch-size", "32"]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    assert f"wrote {out}: {len(passages)} passages, flat, dimension 32" in captured.out
    assert "encoding 244 passages" in captured.err  # the progress bar
    index = dense.load_index(out)
    vectors = encoder.encode([p.contents for p in passages], "passage")
    assert np.allclose(index.reconstruct_n(0, index.ntotal), vectors, atol=1e-5)

    apps = []
    monkeypatch.setattr(server, "serve", lambda app, host, port: apps.append(app))
    serve = ["serve-retriever", "--backend", "dense", "--index", str(out)]
    assert cli.main([*serve, "--encoder", str(encoder_dir)]) == 0
    from fastapi.testclient import TestClient

    client = TestClient(apps[0])
    assert client.get("/health").json()["backend"] == "dense tiny-e5-base"
    reply = client.post("/retrieve", json={"queries": QUERIES, "return_scores": True}).json()
    for query, documents in zip(QUERIES, reply["result"], strict=True):
        expected = brute_force(encoder, vectors, query, 3)
        assert [d["document"]["id"] for d in documents] == [passages[p].id for p, _ in expected]
    assert cli.main(serve) == 2
    assert "needs --index (a faiss index) and --encoder" in capsys.readouterr().out
    import faiss

    if not getattr(faiss, "get_num_gpus", lambda: 0)():
        assert cli.main([*serve, "--encoder", str(encoder_dir), "--faiss-gpu"]) == 2
        assert "faiss sees no GPU here" in capsys.readouterr().out
    assert cli.main([*serve[:-1], str(tmp_path / "none"), "--encoder", str(encoder_dir)]) == 2
    assert "does not exist" in capsys.readouterr().out
