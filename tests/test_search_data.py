"""RF-Search-v0 data: the embedded encyclopaedia, the Search-R1 loader and the BM25 index."""

from __future__ import annotations

import gzip
import importlib.util
import json
import re
import sys
import tempfile
from pathlib import Path

import pytest

from rewardflow_envs.envs.search import SearchEnv, normalize_answer
from rewardflow_envs.envs.search.dataset import EMBEDDED_DATA_DIR, load_dataset, publish_directory
from rewardflow_envs.envs.search.generate import build, world_directory, write
from rewardflow_envs.envs.search.retriever import INDEX_VERSION, BM25Retriever
from rewardflow_envs.extras import MissingExtraError

# The data files and their errors need no extra; searching them needs bm25s.
needs_bm25s = pytest.mark.skipif(
    importlib.util.find_spec("bm25s") is None, reason='pip install "rewardflow[search]"'
)


def write_jsonl(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")


def tiny_tree(root: Path, tag: str = "") -> Path:
    """A Search-R1 style directory: integer ids, quoted titles, one question without an id."""
    root.mkdir(parents=True, exist_ok=True)
    write_jsonl(
        root / "corpus.jsonl",
        [
            {"id": 0, "contents": f'"Paris"\nParis is the capital of France. {tag}'},
            {"id": 1, "contents": '"Eiffel Tower"\nThe Eiffel Tower is a tower in Paris.'},
            {"id": 2, "contents": "Berlin\nBerlin is the capital of Germany."},
        ],
    )
    write_jsonl(
        root / "train.jsonl",
        [
            {"question": "Where is the Eiffel Tower?", "golden_answers": ["Paris"]},
            {
                "id": "de",
                "question": "What is the capital of Germany?",
                "golden_answers": ["Berlin"],
                "data_source": "nq",
            },
        ],
    )
    write_jsonl(
        root / "test.jsonl",
        [{"id": "fr", "question": "Capital of France?", "golden_answers": ["Paris"]}],
    )
    return root


def test_generator_reproduces_the_shipped_files(tmp_path):
    write(tmp_path)
    for name in ("corpus", "train", "test"):
        shipped = (EMBEDDED_DATA_DIR / f"{name}.jsonl").read_bytes()
        assert (tmp_path / f"{name}.jsonl").read_bytes() == shipped, f"{name}.jsonl differs"
    assert sum(path.stat().st_size for path in EMBEDDED_DATA_DIR.iterdir()) < 500_000


def test_embedded_data_is_consistent():
    data = build()
    passages = {record["id"]: record["contents"] for record in data["corpus"]}
    titles = [contents.split("\n", 1)[0] for contents in passages.values()]
    assert len(passages) == 244 and len(set(titles)) == len(titles)
    train, test = data["train"], data["test"]
    assert (len(train), len(test)) == (651, 165)
    assert not {q["id"] for q in train} & {q["id"] for q in test}
    for split in (train, test):
        assert {q["data_source"] for q in split} == {"single_hop", "two_hop"}
    for question in train + test:
        evidence = normalize_answer(" ".join(passages[i] for i in question["supporting_ids"]))
        answer = normalize_answer(question["golden_answers"][0])
        assert f" {answer} " in f" {evidence} ", question
        if question["data_source"] == "two_hop":
            assert question["bridge"] and len(question["supporting_ids"]) == 2
            assert question["bridge"] in passages[question["supporting_ids"][0]]


def test_different_seeds_give_different_worlds():
    assert build(1)["corpus"] != build(2)["corpus"]


def test_a_scaled_world_has_that_many_times_the_entities_and_questions():
    small, large = build(7), build(7, scale=3)
    assert len(large["corpus"]) == 3 * len(small["corpus"])
    questions = len(large["train"]) + len(large["test"])
    assert 2.5 * (len(small["train"]) + len(small["test"])) < questions
    titles = [record["contents"].split("\n", 1)[0] for record in large["corpus"]]
    assert len(set(titles)) == len(titles)
    with pytest.raises(ValueError, match="scale must be a positive integer"):
        build(7, scale=0)


@needs_bm25s
def test_world_kwargs_play_a_generated_world(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("RF_SEARCH_DATA", "/no/such/dir")  # an explicit world wins over it
    env = SearchEnv(world_seed=7, world_scale=2, expert=True)
    world = build(7, scale=2)
    assert [q.question for q in env.questions] == [q["question"] for q in world["train"]]
    assert len(env.dataset.passages) == len(world["corpus"])
    # Written once: another env, in this process or another, reads the same files.
    directory = env.dataset.directory
    assert directory.parent.parent == tmp_path.resolve()
    written = (directory / "train.jsonl").stat().st_mtime_ns
    assert SearchEnv(world_seed=7, world_scale=2).dataset.directory == directory
    assert world_directory(7, 2) == directory
    assert (directory / "train.jsonl").stat().st_mtime_ns == written
    assert [path.name for path in directory.parent.iterdir()] == [directory.name]
    _, info = env.reset(seed=3)
    reward = 0.0
    while "expert_action" in info:
        _, reward, terminated, truncated, info = env.step(info["expert_action"])
        if terminated or truncated:
            break
    assert reward == 1.0
    monkeypatch.delenv("RF_SEARCH_DATA")
    embedded = {q.question for q in SearchEnv().questions}
    assert not embedded & {q.question for q in SearchEnv(world_seed=8).questions}
    assert {q.question for q in SearchEnv(world_scale=1).questions} == embedded


def test_a_directory_that_fails_to_fill_leaves_nothing_behind(tmp_path):
    def fail(partial):
        (partial / "corpus.jsonl").write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        publish_directory(tmp_path / "worlds" / "w", fail)
    assert list((tmp_path / "worlds").iterdir()) == []
    publish_directory(tmp_path / "worlds" / "w", lambda partial: (partial / "a").write_text("1"))
    publish_directory(tmp_path / "worlds" / "w", lambda partial: (partial / "a").write_text("2"))
    assert [path.name for path in (tmp_path / "worlds").iterdir()] == ["w"]
    assert (tmp_path / "worlds" / "w" / "a").read_text() == "1"  # the first copy stays


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"world_seed": 3, "data_path": "/data"}, "give data_path or world_seed/world_scale"),
        ({"world_scale": 0}, "world_scale must be a positive integer, got 0"),
        ({"world_scale": 1.5}, "world_scale must be a positive integer, got 1.5"),
        ({"world_seed": "3"}, "world_seed must be an integer or None, got '3'"),
    ],
)
def test_bad_world_kwargs_are_named(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        SearchEnv(**kwargs)


@needs_bm25s
def test_search_r1_directory_is_loaded(tmp_path):
    env = SearchEnv(data_path=tiny_tree(tmp_path), top_k=2)
    titles = [passage.title for passage in env.dataset.passages]
    assert titles == ["Paris", "Eiffel Tower", "Berlin"]
    assert [question.id for question in env.questions] == ["train_0", "de"]
    _, info = env.reset(options={"task": "de"})
    assert info["task_type"] == "nq"
    observation, _, _, _, info = env.step("<search>eiffel tower</search>")
    assert "Doc 1 (Title: Eiffel Tower) The Eiffel Tower is a tower in Paris." in observation
    assert info["state_key"] == ("de", ("1",))
    assert env.step("<answer>berlin</answer>")[4]["won"]
    _, info = SearchEnv(data_path=tmp_path, split="test").reset(seed=0)
    assert info["task_id"] == "fr" and info["task_type"] == "qa"


@needs_bm25s
def test_data_directory_comes_from_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("RF_SEARCH_DATA", str(tiny_tree(tmp_path)))
    assert SearchEnv(split="test").questions[0].id == "fr"


@needs_bm25s
def test_expert_without_supporting_ids_searches_then_answers(tmp_path):
    env = SearchEnv(data_path=tiny_tree(tmp_path), expert=True)
    _, info = env.reset(options={"task": "train_0"})
    assert info["expert_action"] == "<search>Where is the Eiffel Tower?</search>"
    _, _, _, _, info = env.step(info["expert_action"])
    assert info["expert_action"] == "<answer>Paris</answer>"


def test_missing_directory_and_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'nowhere'} does not exist"):
        SearchEnv(data_path=tmp_path / "nowhere")
    write_jsonl(tmp_path / "train.jsonl", [{"question": "q", "golden_answers": ["a"]}])
    with pytest.raises(FileNotFoundError, match=f"{tmp_path} has no corpus.jsonl"):
        SearchEnv(data_path=tmp_path)
    tiny_tree(tmp_path)
    (tmp_path / "test.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match=r"has no test.jsonl .*splits there: \['train'\]"):
        SearchEnv(data_path=tmp_path, split="test")


@pytest.mark.parametrize(
    ("file", "line", "message"),
    [
        ("corpus.jsonl", "{not json", r"corpus.jsonl:4: not valid JSON"),
        ("corpus.jsonl", '{"id": 0, "contents": "dup"}', "corpus.jsonl:4: duplicate passage id"),
        ("corpus.jsonl", '{"id": 9}', "corpus.jsonl:4: field 'contents' must be a str"),
        ("train.jsonl", '{"question": "q"}', "train.jsonl:3: 'golden_answers' must be"),
        ("train.jsonl", '{"question": "q", "golden_answers": []}', "train.jsonl:3:"),
        ("train.jsonl", "[1, 2]", "train.jsonl:3: expected a JSON object"),
        (
            "train.jsonl",
            '{"question": "q", "golden_answers": ["a"], "supporting_ids": ["77"]}',
            r"train.jsonl:3: supporting_ids \['77'\] are not in the corpus",
        ),
    ],
)
def test_malformed_lines_are_named(tmp_path, file, line, message):
    tiny_tree(tmp_path)
    with open(tmp_path / file, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")
    with pytest.raises(ValueError, match=message):
        SearchEnv(data_path=tmp_path)


def test_dataset_is_read_once_per_process_until_the_corpus_changes(tmp_path):
    tiny_tree(tmp_path)
    first = load_dataset(tmp_path)
    assert load_dataset(tmp_path) is first
    tiny_tree(tmp_path, tag="Changed.")
    assert load_dataset(tmp_path) is not first


@needs_bm25s
def test_index_is_built_once_and_saved_in_the_cache_dir(tmp_path):
    data = tiny_tree(tmp_path / "data", tag="Cache test.")
    cache = tmp_path / "cache"
    env = SearchEnv(data_path=data, cache_dir=cache)
    assert SearchEnv(data_path=data, split="test").retriever.index is env.retriever.index
    (index_dir,) = cache.iterdir()
    assert index_dir.name == f"{INDEX_VERSION}-{env.dataset.fingerprint}"
    reloaded = BM25Retriever.load(index_dir)
    for query in ("capital of germany", "tower in paris", "France", "nothing matches zzq"):
        assert reloaded.search(query, 2) == env.retriever.index.search(query, 2)


@needs_bm25s
def test_ties_go_to_the_earlier_passage(tmp_path):
    write_jsonl(
        tmp_path / "corpus.jsonl",
        [{"id": f"d{i}", "contents": f"T{i}\nsame words here"} for i in range(6)],
    )
    write_jsonl(tmp_path / "train.jsonl", [{"question": "q", "golden_answers": ["a"]}])
    assert SearchEnv(data_path=tmp_path).retriever.index.search("same words", 3) == [0, 1, 2]


def test_missing_bm25s_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "bm25s", None)
    with pytest.raises(MissingExtraError, match=r'pip install "rewardflow\[search\]"'):
        SearchEnv(data_path=tiny_tree(tmp_path, tag="No bm25s."))


# Search-R1's instruction (scripts/data_process/nq_search.py, make_prefix, template "base").
SEARCH_R1_PREFIX = (
    "Answer the given question. You must conduct reasoning inside <think> and </think> first "
    "every time you get new information. After reasoning, if you find you lack some knowledge, "
    "you can call a search engine by <search> query </search> and it will return the top "
    "searched results between <information> and </information>. You can search as many times "
    "as your want. If you find no further external knowledge needed, you can directly provide "
    "the answer inside <answer> and </answer>, without detailed illustrations. For example, "
    "<answer> Beijing </answer>. Question: "
)


def search_r1_row(source: str, index: int, question: str, answers: list[str], flashrag=True):
    """One row as Search-R1's data scripts write it (FlashRAG's columns kept, or dropped)."""
    row = {
        "data_source": source,
        "prompt": [{"role": "user", "content": SEARCH_R1_PREFIX + question + "\n"}],
        "ability": "fact-reasoning",
        "reward_model": {"style": "rule", "ground_truth": {"target": answers}},
        "extra_info": {"split": "test", "index": index},
    }
    if flashrag:
        row.update(id=f"test_{index}", question=question, golden_answers=answers)
    return row


def write_parquet(path: Path, rows: list[dict]) -> None:
    pyarrow = pytest.importorskip("pyarrow")
    parquet = pytest.importorskip("pyarrow.parquet")
    parquet.write_table(pyarrow.Table.from_pylist(rows), path)


@needs_bm25s
def test_search_r1_parquet_files_are_read_in_their_schema(tmp_path):
    tiny_tree(tmp_path)
    (tmp_path / "test.jsonl").unlink()  # a folder with the parquet file only
    write_parquet(
        tmp_path / "test.parquet",
        [
            search_r1_row("nq", 0, "where is the eiffel tower?", ["Paris"]),
            search_r1_row("hotpotqa", 0, "capital of germany?", ["Berlin", "Berlin city"]),
            search_r1_row("bamboogle", 0, "capital of france?", ["Paris"], flashrag=False),
        ],
    )
    env = SearchEnv(data_path=tmp_path, split="test")
    # FlashRAG's ids repeat across its datasets: Search-R1's merged files need the source too.
    assert [q.id for q in env.questions] == ["nq/test_0", "hotpotqa/test_0", "test_2"]
    assert [q.question for q in env.questions][2] == "capital of france?"  # from the prompt
    assert env.questions[1].golden_answers == ("Berlin", "Berlin city")
    _, info = env.reset(options={"task": "hotpotqa/test_0"})
    assert info["task_type"] == info["data_source"] == "hotpotqa"
    _, reward, terminated, _, info = env.step("<answer>berlin city</answer>")
    assert (reward, terminated, info["won"], info["data_source"]) == (1.0, True, True, "hotpotqa")
    assert SearchEnv(data_path=tmp_path, split="test").dataset.available_splits() == [
        "test",
        "train",
    ]


def test_flashrag_jsonl_records_keep_their_ids_and_ignore_metadata(tmp_path):
    tiny_tree(tmp_path)
    write_jsonl(
        tmp_path / "dev.jsonl",
        [{"id": "dev_0", "question": "capital of france?", "golden_answers": ["Paris"],
          "metadata": {"type": "comparison", "level": "hard"}}],
    )  # fmt: skip
    (question,) = load_dataset(tmp_path).questions("dev")
    assert (question.id, question.golden_answers, question.task_type) == ("dev_0", ("Paris",), "qa")


def test_one_question_file_per_split(tmp_path):
    tiny_tree(tmp_path)
    write_parquet(tmp_path / "test.parquet", [search_r1_row("nq", 0, "q?", ["a"])])
    with pytest.raises(ValueError, match="both test.jsonl and test.parquet"):
        load_dataset(tmp_path).questions("test")


@needs_bm25s
def test_bm25_finds_the_gold_passage_of_one_hop_questions_in_its_top_3():
    from retrieval import one_hop_recall

    recall, questions = one_hop_recall(SearchEnv().retriever)
    assert questions == 444 and recall >= 0.97  # measured 1.000


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"id": 0, "contents": "Caf\xe9\\nA caf\xe9 in Paris."}\n', "not UTF-8 text"),
        ('{"id": 0, "contents": "Paris"}\n'.encode("utf-16"), "not UTF-8 text"),
        (gzip.compress(b'{"id": 0, "contents": "Paris"}\n'), "is gzip-compressed"),
    ],
    ids=["latin-1", "utf-16", "gzip"],
)
def test_a_corpus_that_is_not_utf8_json_lines_is_named(tmp_path, content, message):
    data = tiny_tree(tmp_path / "data")
    (data / "corpus.jsonl").write_bytes(content)
    with pytest.raises(ValueError, match=f"{data / 'corpus.jsonl'}.*{message}"):
        len(load_dataset(data).passages)


@needs_bm25s
def test_a_corpus_of_stopwords_only_is_named(tmp_path):
    data = tiny_tree(tmp_path / "data")
    write_jsonl(
        data / "corpus.jsonl",
        [{"id": 0, "contents": "the\nof the"}, {"id": 1, "contents": "a\nand"}],
    )
    with pytest.raises(ValueError, match=r"corpus.jsonl: no passage has a word to index"):
        SearchEnv(data_path=data)


@needs_bm25s
@pytest.mark.parametrize("damage", ["json", "array"])
def test_a_damaged_index_cache_is_rebuilt_with_a_warning(tmp_path, damage):
    data = tiny_tree(tmp_path / "data", tag=damage)
    cache = tmp_path / "cache"
    SearchEnv(data_path=data, cache_dir=cache)
    (index_dir,) = cache.iterdir()
    victims = sorted(index_dir.glob("*.json" if damage == "json" else "*.npy"))
    for victim in victims:
        victim.write_bytes(victim.read_bytes()[: len(victim.read_bytes()) // 2])
    retriever_module = sys.modules["rewardflow_envs.envs.search.retriever"]
    retriever_module._RETRIEVERS.clear()  # a fresh process would read the cache
    with pytest.warns(UserWarning, match=f"the BM25 index cached in {index_dir} cannot be read"):
        env = SearchEnv(data_path=data, cache_dir=cache, split="test")
    env.reset(options={"task": "fr"})
    _, _, _, _, info = env.step("<search>capital of France</search>")
    assert info["action_valid"]
    assert BM25Retriever.load(index_dir).search("Eiffel tower", 1) == [1]
