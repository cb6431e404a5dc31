"""RF-Search-v0's `format="search-r1"` against Search-R1's own code, on the same inputs.

The oracle functions below are Search-R1's (search_r1/llm_agent/generation.py at a14dc3a:
`_postprocess_responses`, `postprocess_predictions`, `execute_predictions`, `_passages2string`),
reduced to one response and kept as written there."""

from __future__ import annotations

import re

import pytest

from rewardflow_envs.envs.search import search_r1
from rewardflow_envs.envs.search.parser import Answer, Search, Unreadable

SEARCH_R1_INVALID = (
    "\nMy previous action is invalid. If I want to search, I should put the query between "
    "<search> and </search>. If I want to give the final answer, I should put the answer between "
    "<answer> and </answer>. Let me try again.\n"
)


def oracle_postprocess_response(resp):
    return (
        resp.split("</search>")[0] + "</search>"
        if "</search>" in resp
        else resp.split("</answer>")[0] + "</answer>"
        if "</answer>" in resp
        else resp
    )


def oracle_postprocess_prediction(prediction):
    pattern = r"<(search|answer)>(.*?)</\1>"
    match = re.search(pattern, prediction, re.DOTALL)
    if match:
        content = match.group(2).strip()
        action = match.group(1)
    else:
        content = ""
        action = None
    return action, content


def oracle_passages2string(retrieval_result):
    format_reference = ""
    for idx, doc_item in enumerate(retrieval_result):
        content = doc_item["document"]["contents"]
        title = content.split("\n")[0]
        text = "\n".join(content.split("\n")[1:])
        format_reference += f"Doc {idx + 1}(Title: {title}) {text}\n"
    return format_reference


RESPONSES = [
    "<think>the capital</think><search> capital of France </search>",
    "<answer> Paris </answer>",
    "<search>first</search><search>second</search>",
    "<answer>early</answer> and then <search>late</search>",
    "<Search>capitalised</Search>",
    "<search>mismatched</answer>",
    "no tags at all",
    "<search></search>",
    "<search>q</search> trailing <answer>z</answer>",
    "<answer>a</answer><answer>b</answer>",
    "<search>never closed",
    "<think>a</think>\n<search>two\nlines</search><|im_end|>",
]


@pytest.mark.parametrize("response", RESPONSES)
def test_replies_are_cut_and_read_as_search_r1_does(response):
    kept = search_r1.kept_reply(response)
    assert kept == oracle_postprocess_response(response)
    action, content = oracle_postprocess_prediction(kept)
    parsed = search_r1.read(kept)
    if action is None:
        assert isinstance(parsed, Unreadable)
    else:
        assert parsed == (Search(content) if action == "search" else Answer(content))


def test_the_instruction_adds_a_question_mark_as_search_r1s_data_script_does():
    assert search_r1.prompt(" who wrote hamlet ") == search_r1.prompt("who wrote hamlet?")
    assert search_r1.prompt("who wrote hamlet").endswith(" Question: who wrote hamlet?\n")
    assert search_r1.INVALID == SEARCH_R1_INVALID


def test_an_episode_reads_as_search_r1s_rollout_text():
    pytest.importorskip("bm25s")
    from rewardflow_envs.envs.search import SearchEnv

    env = SearchEnv(split="train", format="search-r1")
    observation, info = env.reset(options={"task": "q0626"})
    question = env.unwrapped.questions[env.unwrapped._question_index["q0626"]].question
    expected = search_r1.prompt(question)
    assert observation == expected and "Question: In which city" in observation

    replies = [
        "<think>I need the inventor.</think>\n<search>Quidron compass</search>ignored",
        "I am not sure.",
        "<search>Elin Brudrom</search>",
        "<answer>Quirotreind</answer>",
    ]
    for reply in replies:
        observation, reward, terminated, _, info = env.step(reply)
        kept = oracle_postprocess_response(reply)
        action, content = oracle_postprocess_prediction(kept)
        if action == "search":
            found = env.unwrapped.retriever.search(content, 3)
            rows = [{"document": {"id": p.id, "contents": p.contents}} for p in found]
            shown = f"\n\n<information>{oracle_passages2string(rows).strip()}</information>\n\n"
        elif action is None:
            shown = SEARCH_R1_INVALID
        else:
            shown = ""
        expected += kept + shown
        assert observation == expected
        assert info["action_valid"] == (action is not None)
    assert terminated and reward == 1.0 and info["won"]
    assert '<information>Doc 1(Title: "Quidron compass") The Quidron compass' in observation


def test_search_r1_data_is_played_in_its_own_format_by_default(tmp_path):
    pytest.importorskip("bm25s")
    from test_search_data import search_r1_row, tiny_tree, write_parquet

    from rewardflow_envs.envs.search import SearchEnv

    tiny_tree(tmp_path)
    (tmp_path / "test.jsonl").unlink()
    row = search_r1_row("nq", 0, "capital of germany?", ["Berlin"])
    write_parquet(tmp_path / "test.parquet", [row])
    env = SearchEnv(data_path=tmp_path, split="test")
    assert env.format == "search-r1"
    observation, _ = env.reset(seed=0)
    assert observation == row["prompt"][0]["content"]  # the file's prompt, byte for byte
    assert SearchEnv(data_path=tmp_path, split="train").format == "rewardflow"
    with pytest.raises(ValueError, match="format must be one of"):
        SearchEnv(data_path=tmp_path, split="train", format="verl")


def test_the_search_r1_format_keeps_the_env_contract():
    pytest.importorskip("bm25s")
    from adversarial import adversarial_responses
    from gymnasium.utils.env_checker import check_env

    from rewardflow_envs.envs.search import SearchEnv

    check_env(SearchEnv(format="search-r1"), skip_render_check=True)
    env = SearchEnv(format="search-r1", max_turns=None)
    observation, info = env.reset(seed=3)
    for index, response in enumerate(adversarial_responses(600)):
        key_before = info["state_key"]
        observation, _, terminated, _, info = env.step(response)
        assert observation in env.observation_space, f"response #{index}"
        action, _ = oracle_postprocess_prediction(oracle_postprocess_response(response))
        assert info["action_valid"] == (action is not None), f"response #{index}"
        if action is None:
            assert info["state_key"] == key_before
        if terminated or len(observation) > 20_000:
            observation, info = env.reset(seed=3 + index)
