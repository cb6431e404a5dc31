"""RF-WebShop-v0: pages, actions, state keys, reward, expert and the embedded catalogue."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("bm25s")
pytest.importorskip("rapidfuzz")  # the webshop extra: both

from rewardflow_envs.envs.webshop import WebShopEnv, load_catalogue, parse_action  # noqa: E402
from rewardflow_envs.envs.webshop.catalogue import EMBEDDED_DATA_DIR, split_of  # noqa: E402
from rewardflow_envs.envs.webshop.generate import generate  # noqa: E402
from rewardflow_envs.envs.webshop.site import MAX_QUERY_WORDS  # noqa: E402


def page(info: dict) -> tuple:
    """The page part of a state key (the first item is the task id)."""
    return info["state_key"][1:]


def play(env: WebShopEnv, actions: list[str], task=0):
    """Reset to `task` and take bare `actions`; returns the last step's result."""
    _, info = env.reset(options={"task": task})
    result = (None, 0.0, False, False, info)
    for action in actions:
        result = env.step(f"<action>{action}</action>")
        assert result[4]["action_valid"], f"{action} was refused"
    return result


def open_goal_product(env: WebShopEnv, task=0) -> dict:
    """Reset to `task` and follow the expert to the goal product's page; returns the info."""
    _, info = env.reset(options={"task": task})
    while page(info)[0] != "item":
        _, _, _, _, info = env.step(info["expert_action"])
    return info


@pytest.fixture
def env():
    return WebShopEnv(split="test", expert=True, render_mode="ansi")


def test_gymnasium_checker_passes_on_the_unwrapped_env():
    check_env(gymnasium.make("rewardflow_envs:RF-WebShop-v0").unwrapped)


def test_registered_id_truncates_after_15_steps():
    env = gymnasium.make("rewardflow_envs:RF-WebShop-v0")
    env.reset(seed=0)
    truncated = [env.step("<action>click[nothing]</action>")[3] for _ in range(15)]
    assert truncated == [False] * 14 + [True]


def test_expert_wins_every_test_goal_within_the_step_limit(env):
    assert len(env.goals) >= 50
    for task in range(len(env.goals)):
        _, info = env.reset(options={"task": task})
        for _ in range(15):
            _, reward, terminated, _, info = env.step(info["expert_action"])
            if terminated:
                break
        assert terminated and reward == 1.0 and info["won"], env.goal.task_id


def test_search_page_lists_search_and_results_page_lists_products(env):
    observation, info = env.reset(options={"task": 0})
    assert info["admissible_actions"] == ["search[<your query>]", "click[search]"]
    assert env.goal.instruction in observation
    _, _, _, _, info = env.step("<action>search[Cotton T-Shirt!]</action>")
    assert info["state_key"] == (env.goal.task_id, "results", "cotton t shirt", 1, "", (), "")
    actions = info["admissible_actions"]
    assert actions[:2] == ["click[back to search]", "click[next >]"]
    assert len(actions) == 2 + 10
    assert all(env.catalogue.products[a[6:-1].upper()] for a in actions[2:])
    assert "< prev" not in " ".join(actions)


def test_result_pages_go_forward_and_back(env):
    play(env, ["search[cotton t-shirt]", "click[next >]"])
    assert env.state_key[3] == 2
    assert "click[< prev]" in env.site.admissible_actions(env._page)
    _, _, _, _, info = env.step("<action>click[< prev]</action>")
    assert page(info)[2] == 1


def test_query_that_matches_nothing_gives_an_empty_results_page(env):
    _, _, _, _, info = play(env, ["search[qqqzzz xyzzy]"])
    assert info["admissible_actions"] == ["click[back to search]", "click[next >]"]
    assert "Total results: 0" in env.render()


def test_item_page_offers_options_description_features_and_buy(env):
    info = open_goal_product(env)
    product = env.catalogue.products[env.goal.asin]
    actions = info["admissible_actions"]
    for _, values in product.options:
        assert {f"click[{value}]" for value in values} <= set(actions)
    for button in ("back to search", "< prev", "description", "features", "reviews", "buy now"):
        assert f"click[{button}]" in actions
    _, _, _, _, info = env.step("<action>click[Description]</action>")
    assert page(info)[5] == "description"
    assert product.description[:40] in env.render()
    assert info["admissible_actions"] == ["click[back to search]", "click[< prev]"]
    _, _, _, _, info = env.step("<action>click[< prev]</action>")
    assert page(info)[0] == "item" and page(info)[5] == ""


def test_option_click_changes_the_key_not_the_page_text(env):
    info = open_goal_product(env)
    name, values = env.catalogue.products[env.goal.asin].options[0]
    keys = {info["state_key"]}
    page_text = env.site.render(env._page)
    for value in values[:2]:
        _, _, _, _, info = env.step(f"<action>click[{value}]</action>")
        assert info["action_valid"]
        assert (name, value) in page(info)[4]
        # WebShop's text mode does not show the selection; the key keeps it (it is bought).
        assert env.site.render(env._page) == page_text
        keys.add(info["state_key"])
    assert len(keys) == 3


def test_different_purchases_end_in_different_terminal_keys(env):
    terminal_keys = set()
    for choice in (None, 0, 1):
        open_goal_product(env)
        values = env.catalogue.products[env.goal.asin].options[0][1]
        if choice is not None:
            env.step(f"<action>click[{values[choice]}]</action>")
        _, reward, terminated, _, info = env.step("<action>click[buy now]</action>")
        assert terminated and page(info)[0] == "bought"
        assert info["state_key"][-1] == reward
        terminal_keys.add(info["state_key"])
    assert len(terminal_keys) == 3


def test_back_to_search_returns_to_the_start_key(env):
    _, start = env.reset(options={"task": 1})
    open_goal_product(env, task=1)
    _, _, _, _, info = env.step("<action>click[back to search]</action>")
    assert info["state_key"] == start["state_key"]


@pytest.mark.parametrize(
    "response",
    [
        "click[buy now]",  # no tag
        "<action>click[buy now]</action>",  # not on the search page
        "<action>search[]</action>",  # empty query
        "<action>search[!!! ???]</action>",  # no words
        "<action>buy[it]</action>",  # no such verb
        "<action>search[a]</action><action>search[b]</action>",  # two actions
        "<action>search[shoes]",  # unclosed
    ],
)
def test_unreadable_or_inadmissible_actions_change_nothing(response):
    env = WebShopEnv(invalid_action_reward=-0.1)
    _, info = env.reset(seed=4)
    _, reward, terminated, _, after = env.step(response)
    assert after["action_valid"] is False
    assert after["state_key"] == info["state_key"]
    assert reward == -0.1 and not terminated
    assert after["admissible_actions"] == info["admissible_actions"]


def test_actions_not_admissible_on_the_current_page_are_invalid(env):
    play(env, ["search[running shoes]"])
    key = env.state_key
    for response in (
        "click[buy now]",
        "click[search]",
        "click[description]",
        "click[b0zzzzzzzz]",
        "click[< prev]",
    ):
        _, _, _, _, info = env.step(f"<action>{response}</action>")
        assert not info["action_valid"] and info["state_key"] == key, response


def test_a_step_after_the_purchase_or_before_reset_asks_for_a_reset(env):
    fresh = WebShopEnv(split="test")
    with pytest.raises(gymnasium.error.ResetNeeded, match="call reset"):
        fresh.step("<action>search[shirt]</action>")
    open_goal_product(env)
    _, _, terminated, _, info = env.step("<action>click[buy now]</action>")
    assert terminated
    with pytest.raises(gymnasium.error.ResetNeeded, match="purchase is made"):
        env.step("<action>click[buy now]</action>")
    assert env.state_key == info["state_key"]


def test_clicks_are_case_and_space_insensitive(env):
    play(env, ["search[candle]"])
    asin = env.site.page_asins(env._page)[0]
    _, _, _, _, info = env.step(f"<action> CLICK [ {asin.upper()} ] </action>")
    assert info["action_valid"] and page(info)[3] == asin


def test_overlong_query_is_cut_to_the_word_limit(env):
    env.reset(options={"task": 0})
    _, _, _, _, info = env.step("<action>search[" + "shoe " * 50_000 + "]</action>")
    assert info["action_valid"]
    assert page(info)[1] == " ".join(["shoe"] * MAX_QUERY_WORDS)
    assert env.observation_space.contains(env.render())


def test_strange_inputs_never_raise_and_keep_the_observation_in_its_space(env):
    env.reset(options={"task": 2})
    responses = [
        None,
        b"<action>search[x]</action>",
        "\x00" * 100_000,
        "<action>search[\ud800\U0001f600 candle]</action>",
        "<action>click[" + "]" * 10_000 + "</action>",
        "<action>search[[nested] [brackets]]</action>",
        "<ACTION>search[candle]</ACTION>",
    ]
    for response in responses:
        observation, _, _, _, info = env.step(response)
        assert env.observation_space.contains(observation)
        assert isinstance(info["action_valid"], bool)
    assert parse_action("<ACTION>search[candle]</ACTION>") == ("search", "candle")


def test_same_seed_same_task_and_different_seeds_cover_tasks():
    first, second = WebShopEnv(), WebShopEnv()
    tasks = set()
    for seed in range(20):
        observation_a, info_a = first.reset(seed=seed)
        observation_b, info_b = second.reset(seed=seed)
        assert observation_a == observation_b and info_a == info_b
        tasks.add(info_a["task_id"])
    assert len(tasks) > 10


def test_start_keys_differ_between_tasks_only(env):
    keys = {env.reset(options={"task": task})[1]["state_key"] for task in range(5)}
    assert len(keys) == 5
    assert {key[1:] for key in keys} == {("search", "", 0, "", (), "")}


def test_state_keys_are_picklable_and_carry_no_history(env):
    _, info = env.reset(options={"task": 0})
    key = info["state_key"]
    assert pickle.loads(pickle.dumps(key)) == key
    wander = ["search[coffee]", "click[back to search]", "search[candle]", "click[back to search]"]
    play(env, wander)
    assert env.state_key == key


def test_info_names_the_task_and_its_category(env):
    _, info = env.reset(options={"task": env.goals[3].task_id})
    assert info["task_id"] == env.goals[3].task_id
    assert env.reset(options={"task": np.int64(3)})[1] == info
    assert info["task_type"] == env.catalogue.products[env.goals[3].asin].category
    assert info["won"] is False


def test_unknown_task_or_split_is_a_clear_error(env):
    with pytest.raises(ValueError, match="outside the 'test' split"):
        env.reset(options={"task": 10_000})
    train_only = next(goal for goal in env.catalogue.goals if split_of(goal.task_id) == "train")
    with pytest.raises(ValueError, match="no task"):
        env.reset(options={"task": train_only.task_id})
    with pytest.raises(ValueError, match="unknown split"):
        WebShopEnv(split="validation")


def test_embedded_catalogue_splits_are_fixed_and_disjoint():
    catalogue = load_catalogue()
    train = {goal.task_id for goal in catalogue.split("train")}
    test = {goal.task_id for goal in catalogue.split("test")}
    assert not train & test and len(train) + len(test) == len(catalogue.goals)
    assert 0.1 < len(test) / len(catalogue.goals) < 0.3
    assert len(catalogue.products) >= 200
    assert len({product.category for product in catalogue.products.values()}) >= 4


def test_shipped_products_have_every_field_webshops_loader_reads():
    """web_agent_site/engine/engine.py's load_products indexes these keys of every product."""
    import gzip
    import json

    with gzip.open(EMBEDDED_DATA_DIR / "items_shuffle.json.gz", "rt", encoding="utf-8") as file:
        products = json.load(file)
    read = ("asin", "category", "query", "product_category", "name", "full_description",
            "small_description", "pricing", "customization_options", "images")  # fmt: skip
    for product in products:
        assert set(read) <= set(product), product["asin"]
        assert isinstance(product["images"], list) and product["images"], product["asin"]
        for values in product["customization_options"].values():
            assert all("value" in value for value in values)


def test_shipped_catalogue_is_what_the_generator_makes():
    import gzip
    import json

    for name, content in generate().items():
        with gzip.open(EMBEDDED_DATA_DIR / name, "rt", encoding="utf-8") as file:
            assert json.load(file) == content, name
    total = sum(path.stat().st_size for path in EMBEDDED_DATA_DIR.iterdir())
    assert total < 1_000_000


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_a_click_is_valid_exactly_when_its_target_is_on_the_page(env, data):
    play(env, ["search[scented candle]"])
    key = env.state_key
    on_page = env.site.clickables(env._page) + ["buy now", "description", "b0zzzzzzzz"]
    target = data.draw(
        st.one_of(
            st.text(max_size=60),
            st.sampled_from(on_page).map(str.upper),
            st.sampled_from(on_page).map(lambda text: f"  {text} "),
        )
    )
    clickable = " ".join(target.lower().split()) in env.site.clickables(env._page)
    _, _, _, _, info = env.step(f"<action>click[{target}]</action>")
    assert info["action_valid"] is clickable
    assert (info["state_key"] == key) is not clickable


def test_search_index_is_built_once_per_catalogue(env, monkeypatch):
    from rewardflow_envs.envs.webshop import search

    def no_new_index(*args, **kwargs):
        raise AssertionError("a second index was built")

    monkeypatch.setattr(search.SearchEngine, "__init__", no_new_index)
    other = WebShopEnv(split="train")
    assert other.catalogue is env.catalogue
    for seed in range(3):
        other.reset(seed=seed)
        other.step("<action>search[coffee]</action>")


_EPISODE_KEYS = """
import pickle, sys
from rewardflow_envs.envs.webshop import WebShopEnv
env = WebShopEnv(split="test", expert=True)
keys = []
for seed in range(3):
    _, info = env.reset(seed=seed)
    keys.append(info["state_key"])
    for action in ("search[scented candle lavender]", "click[next >]", "click[back to search]"):
        keys.append(env.step(f"<action>{action}</action>")[4]["state_key"])
    terminated = False
    while not terminated:
        _, _, terminated, _, info = env.step(info["expert_action"])
        keys.append(info["state_key"])
sys.stdout.write(pickle.dumps(keys).hex())
"""


def test_episodes_give_the_same_keys_in_another_process():
    def run(hash_seed: str) -> list:
        environment = {**os.environ, "PYTHONHASHSEED": hash_seed}
        result = subprocess.run(
            [sys.executable, "-c", _EPISODE_KEYS],
            capture_output=True,
            text=True,
            check=True,
            env=environment,
            timeout=300,
        )
        return pickle.loads(bytes.fromhex(result.stdout))

    first, second = run("1"), run("4242")
    assert first == second
    assert len(set(first)) > 10
