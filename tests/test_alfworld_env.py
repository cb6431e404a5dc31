"""RF-ALFWorld-v0 on the generated tasks that ship with rewardflow."""

from __future__ import annotations

import pickle

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

pytest.importorskip("textworld")
pytest.importorskip("alfworld")

from rewardflow_envs.envs.alfworld import TASK_TYPES, ALFWorldEnv  # noqa: E402
from rewardflow_envs.envs.alfworld.tasks import load_generated  # noqa: E402

pytestmark = pytest.mark.alfworld

VALID_TASKS = load_generated("valid")
# The first valid task of each type: the fast check that the expert wins every type.
ONE_PER_TYPE = [next(t.task_id for t in VALID_TASKS if t.task_type == kind) for kind in TASK_TYPES]


@pytest.fixture(scope="module")
def env():
    env = ALFWorldEnv(split="valid", expert=True)
    yield env
    env.close()


def act(command: str) -> str:
    return f"<action>{command}</action>"


def play_expert(env: ALFWorldEnv, task_id: str, max_steps: int = 50):
    """Follow the expert on `task_id`; returns (won, steps, rewards, infos)."""
    _, info = env.reset(options={"task": task_id})
    infos, rewards = [info], []
    for _ in range(max_steps):
        _, reward, terminated, truncated, info = env.step(info["expert_action"])
        infos.append(info)
        rewards.append(reward)
        assert info["action_valid"]
        if terminated or truncated:
            break
    return info["won"], len(rewards), rewards, infos


def test_generated_split_sizes_and_balance():
    train = load_generated("train")
    for tasks, per_type in ((train, 60), (VALID_TASKS, 12)):
        counts = {kind: sum(t.task_type == kind for t in tasks) for kind in TASK_TYPES}
        assert counts == dict.fromkeys(TASK_TYPES, per_type)
        assert len({t.task_id for t in tasks}) == len(tasks)
    # Valid tasks are in floor plans that no training task uses, and no training task is in a
    # scene that ALFWorld's valid_unseen games use.
    assert not {t.scene for t in train} & {t.scene for t in VALID_TASKS}
    held_out = {"FloorPlan10", "FloorPlan219", "FloorPlan308", "FloorPlan424"}
    assert not {t.scene for t in train} & held_out


def test_gymnasium_env_checker():
    env = ALFWorldEnv(split="valid")
    check_env(env, skip_render_check=True)
    env.close()


def test_registered_id_makes_the_env_with_its_step_limit():
    env = gymnasium.make("rewardflow_envs:RF-ALFWorld-v0", split="valid")
    assert env.spec.max_episode_steps == 50
    assert isinstance(env.unwrapped, ALFWorldEnv)
    env.close()


@pytest.mark.parametrize("task_id", ONE_PER_TYPE)
def test_expert_wins_one_task_of_each_type(env, task_id):
    won, steps, rewards, infos = play_expert(env, task_id)
    assert won and infos[-1]["task_type"] in task_id
    assert rewards[-1] == 10.0 and sum(rewards) == 10.0
    assert not any(info["won"] for info in infos[:-1])


@pytest.mark.slow
@pytest.mark.parametrize("task_id", [t.task_id for t in VALID_TASKS])
def test_expert_wins_every_valid_task(env, task_id):
    won, *_ = play_expert(env, task_id)
    assert won


def test_observation_shows_task_feedback_and_commands_without_help(env):
    observation, info = env.reset(options={"task": ONE_PER_TYPE[0]})
    task = env.task
    assert f"Your task is to: {task.goal}." in observation
    assert "You are in the middle of a room" in observation
    assert "help" not in info["admissible_actions"]
    assert "look" in info["admissible_actions"] and "inventory" in info["admissible_actions"]
    assert "Admissible commands: " + ", ".join(info["admissible_actions"]) in observation


def test_history_shows_the_last_k_steps():
    env = ALFWorldEnv(split="valid", history_length=2)
    _, info = env.reset(options={"task": 0})
    commands = [c for c in info["admissible_actions"] if c.startswith("go to ")][:3]
    for command in commands:
        observation, *_ = env.step(act(command))
    assert f"> {commands[2]}" in observation and f"> {commands[1]}" in observation
    assert f"> {commands[0]}" not in observation
    env.close()


def test_same_seed_same_task_and_start(env):
    first = env.reset(seed=7)
    second = env.reset(seed=7)
    assert first[0] == second[0] and first[1]["state_key"] == second[1]["state_key"]
    task_ids = {env.reset(seed=seed)[1]["task_id"] for seed in range(4)}
    assert len(task_ids) > 1


def test_unknown_task_is_a_clear_error(env):
    with pytest.raises(ValueError, match="unknown task"):
        env.reset(options={"task": "no-such-task"})
    with pytest.raises(ValueError, match="unknown task"):
        env.reset(options={"task": len(env.tasks)})


def test_state_key_ignores_look_examine_inventory_and_failed_commands(env):
    _, info = env.reset(options={"task": ONE_PER_TYPE[0]})
    go_to = next(c for c in info["admissible_actions"] if c.startswith("go to "))
    _, _, _, _, info = env.step(act(go_to))
    key = info["state_key"]
    examine = next(c for c in info["admissible_actions"] if c.startswith("examine "))
    for response in (
        act("look"),
        act("inventory"),
        act(examine),
        act("help"),
        act("fly away"),
        "no tags at all",
        act("LOOK"),
    ):
        _, reward, terminated, _, info = env.step(response)
        assert info["state_key"] == key, response
        assert reward == 0.0 and not terminated
    assert pickle.loads(pickle.dumps(key)) == key


def test_state_key_follows_location_held_object_and_win(env):
    won, _, _, infos = play_expert(env, ONE_PER_TYPE[0])
    keys = [info["state_key"] for info in infos]
    assert won and keys[-1][0] is True and not any(key[0] for key in keys[:-1])
    # Every expert step that is not a look/examine changes the world and so the key.
    held = [any(fact[0] == "holds" for fact in key[1]) for key in keys]
    assert held[0] is False and any(held)
    assert len(set(keys)) > 2


def test_invalid_responses_change_nothing(env):
    observation, info = env.reset(options={"task": 0})
    key = info["state_key"]
    for response in (
        "",
        "go to cabinet 1",
        "<action>go to the moon</action>",
        "<action>look</action><action>look</action>",
        "<action>" * 1000,
        "\x00\ud7ff",
    ):
        _, reward, terminated, truncated, info = env.step(response)
        assert info["action_valid"] is False and info["state_key"] == key
        assert reward == env.invalid_action_reward == 0.0
        assert not (terminated or truncated)


def test_responses_are_read_case_and_space_insensitively(env):
    _, info = env.reset(options={"task": 0})
    command = next(c for c in info["admissible_actions"] if c.startswith("go to "))
    _, _, _, _, info = env.step(f"I will move.<ACTION>  {command.upper()}  </action>")
    assert info["action_valid"]


def test_pass_invalid_commands_plays_them_in_the_game():
    env = ALFWorldEnv(split="valid", pass_invalid_commands=True, invalid_action_reward=-0.5)
    _, info = env.reset(options={"task": 0})
    observation, reward, _, _, step_info = env.step(act("go to the moon"))
    assert "Now: Nothing happens." in observation
    assert step_info["action_valid"] is False and reward == -0.5
    assert step_info["state_key"] == info["state_key"]
    env.close()


def test_a_won_episode_pays_once_and_then_asks_for_a_reset(env):
    won, steps, rewards, infos = play_expert(env, ONE_PER_TYPE[1])
    assert won and rewards[-1] == 10.0
    with pytest.raises(gymnasium.error.ResetNeeded, match="won and over: call reset"):
        env.step(infos[-1].get("expert_action", act("look")))
    env.reset(options={"task": ONE_PER_TYPE[1]})  # a reset starts the game again
    assert play_expert(env, ONE_PER_TYPE[1])[0]


def test_custom_win_reward(env):
    env_five = ALFWorldEnv(split="valid", expert=True, win_reward=5.0)
    _, _, rewards, _ = play_expert(env_five, ONE_PER_TYPE[0])
    assert rewards[-1] == 5.0
    env_five.close()


def test_render_ansi_is_the_prompt():
    env = ALFWorldEnv(split="valid", render_mode="ansi")
    observation, _ = env.reset(seed=0)
    assert env.render() == observation + "\n"
    env.close()


def test_random_admissible_play_never_raises_and_truncates_at_the_limit():
    env = gymnasium.make("rewardflow_envs:RF-ALFWorld-v0", split="valid", max_episode_steps=8)
    rng = np.random.default_rng(0)
    _, info = env.reset(seed=3)
    for _ in range(8):
        command = rng.choice(info["admissible_actions"])
        _, _, terminated, truncated, info = env.step(act(command))
        assert info["action_valid"]
        if terminated:
            break
    assert terminated or truncated
    env.close()


def test_long_history_gives_way_to_the_observation_limit(monkeypatch):
    env = ALFWorldEnv(split="valid", history_length=10, render_mode="ansi")
    _, info = env.reset(options={"task": 0})
    commands = [c for c in info["admissible_actions"] if c.startswith("go to ")][:6]
    for command in commands:
        env.step(act(command))
    full = env.render()
    assert "Your last 6 step(s)" in full
    limit = len(full) - 10
    monkeypatch.setattr("rewardflow_envs.envs.alfworld.env.OBSERVATION_MAX_LENGTH", limit)
    trimmed = env.render()
    assert len(trimmed) <= limit + 1 and "Your last 5 step(s)" in trimmed
    assert f"> {commands[-1]}" in trimmed and f"> {commands[0]}" not in trimmed
    env.close()
