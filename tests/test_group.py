"""GroupEnv: a PettingZoo ParallelEnv of N members of one task, stepped in lock-step."""

from __future__ import annotations

import functools
import itertools
import os
import signal
import string
import time

import gymnasium
import numpy as np
import pytest
from pettingzoo.test import parallel_api_test

from rewardflow_envs.group import GroupEnv, GroupWorkerError, hashable_key
from rewardflow_envs.text import extract_single_tag

LEFT, DOWN, RIGHT, UP = range(4)


class CorridorEnv(gymnasium.Env):
    """A text corridor: walk right to the last cell. The seed picks the start cell."""

    metadata = {"render_modes": ["ansi"]}

    def __init__(self, length: int = 6, max_steps: int = 8, render_mode: str | None = None):
        self.length = length
        self.max_steps = max_steps
        self.render_mode = render_mode
        self.observation_space = gymnasium.spaces.Text(200, charset=string.printable)
        self.action_space = gymnasium.spaces.Text(24, charset=string.printable)

    def _observation(self) -> str:
        return f"You stand in cell {self.position} of a corridor of {self.length} cells."

    def _info(self) -> dict:
        won = self.position == self.length - 1
        return {"state_key": ("cell", self.position), "task_id": "corridor", "won": won}

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.position = int(self.np_random.integers(self.length - 1))
        self.steps = 0
        return self._observation(), self._info()

    def step(self, action):
        move = {"left": -1, "right": 1}.get(extract_single_tag(action, "action") or "")
        if move is not None:
            self.position = min(max(self.position + move, 0), self.length - 1)
        self.steps += 1
        info = {**self._info(), "action_valid": move is not None}
        reward = 1.0 if info["won"] else 0.0
        return self._observation(), reward, info["won"], self.steps >= self.max_steps, info

    def render(self):
        return "".join("@" if i == self.position else "." for i in range(self.length))


class DriftingStartEnv(CorridorEnv):
    """Ignores the seed for its start: every new instance starts one cell further."""

    instances = itertools.count()

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.start = next(self.instances) % (self.length - 1)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.position = self.start
        return self._observation(), self._info()


class FragileCorridorEnv(CorridorEnv):
    """Raises on the action "explode" and on task 13, as a broken simulator would."""

    def reset(self, seed=None, options=None):
        if seed == 13:
            raise ValueError("cannot start task 13")
        return super().reset(seed=seed, options=options)

    def step(self, action):
        if action == "explode":
            raise ValueError("the simulator exploded")
        return super().step(action)


class HangingCorridorEnv(CorridorEnv):
    """Never returns from the action "hang" (or from close, if asked), as a stuck simulator."""

    def __init__(self, hang_on_close: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.hang_on_close = hang_on_close

    def step(self, action):
        if action == "hang":
            time.sleep(3600)
        return super().step(action)

    def close(self):
        if self.hang_on_close:
            time.sleep(3600)


def run_group(group: GroupEnv, seed: int) -> list[dict]:
    """One full group under the group's own seeded random actions."""
    group.reset(seed=seed)
    while group.agents:
        group.step({agent: group.action_space(agent).sample() for agent in group.agents})
    return group.episodes


def frozen_lake_group(n: int = 4, **kwargs) -> GroupEnv:
    return GroupEnv("FrozenLake-v1", n, is_slippery=False, **kwargs)


@pytest.mark.parametrize(
    "make_group",
    [
        frozen_lake_group,
        lambda: GroupEnv(CorridorEnv, 3),
        lambda: GroupEnv("Taxi-v4", 2),
        lambda: GroupEnv(CorridorEnv, 3, workers=2),
    ],
    ids=["frozenlake", "text-corridor", "taxi", "text-corridor-workers"],
)
def test_parallel_api(make_group):
    group = make_group()
    parallel_api_test(group, num_cycles=300)
    group.close()


def test_members_start_from_the_same_task():
    group = GroupEnv(CorridorEnv, 4)
    starts = set()
    for seed in range(6):
        observations, infos = group.reset(seed=seed)
        assert len(set(observations.values())) == 1
        assert len({info["state_key"] for info in infos.values()}) == 1
        starts.add(observations["rollout_0"])
    assert len(starts) > 1, "different seeds should give different tasks"
    for _ in range(5):  # unseeded resets draw one task seed for the whole group
        observations, _ = group.reset()
        assert len(set(observations.values())) == 1


def test_seeded_reset_passes_the_seed_to_every_member():
    group = GroupEnv(CorridorEnv, 3)
    observations, _ = group.reset(seed=11)
    single, _ = CorridorEnv().reset(seed=11)
    assert set(observations.values()) == {single}
    assert group.task_seed == 11


def test_different_starts_raise_a_clear_error():
    group = GroupEnv(DriftingStartEnv, 3)
    with pytest.raises(RuntimeError, match="started from different states") as error:
        group.reset(seed=0)
    assert "but rollout_1 has ('cell', " in str(error.value)
    assert "2 of 3 members differ" in str(error.value)
    assert group.agents == []


def test_agents_drop_out_when_their_episode_ends():
    group = frozen_lake_group(n=2)
    group.reset(seed=0)
    # rollout_0 walks into the hole at cell 5; rollout_1 walks on the safe path.
    group.step({"rollout_0": RIGHT, "rollout_1": DOWN})
    *_, terminations, _, _ = group.step({"rollout_0": DOWN, "rollout_1": DOWN})
    assert terminations == {"rollout_0": True, "rollout_1": False}
    assert group.agents == ["rollout_1"]
    with pytest.raises(ValueError, match="not live.*rollout_0"):
        group.step({"rollout_0": DOWN, "rollout_1": RIGHT})
    with pytest.raises(ValueError, match="missing.*rollout_1"):
        group.step({})
    observations, rewards, terminations, truncations, _ = group.step({"rollout_1": RIGHT})
    assert set(observations) == set(rewards) == set(terminations) == {"rollout_1"}
    for action in (RIGHT, DOWN, RIGHT):
        *_, terminations, truncations, _ = group.step({"rollout_1": action})
    assert terminations == {"rollout_1": True} and group.agents == []
    with pytest.raises(RuntimeError, match="call reset"):
        group.step({})
    episodes = group.episodes
    assert episodes[0] == {
        "states": [0, 1, 5],
        "rewards": [0.0, 0.0],
        "actions": [RIGHT, DOWN],
    }
    assert episodes[1]["states"] == [0, 4, 8, 9, 10, 14, 15]
    assert episodes[1]["rewards"] == [0.0] * 5 + [1.0]


def test_truncated_agents_drop_out_and_episodes_match_their_lengths():
    group = GroupEnv(CorridorEnv, 3, max_steps=4)
    group.reset(seed=1)
    group.step({"rollout_0": "<action>right</action>", "rollout_1": "x", "rollout_2": "x"})
    while group.agents:
        *_, truncations, _ = group.step({agent: "wait" for agent in group.agents})
    assert all(truncations.values())
    for episode in group.episodes:
        assert len(episode["states"]) == len(episode["rewards"]) + 1 == 5
        assert len(episode["actions"]) == 4


def test_sampled_actions_differ_across_members_and_repeat_with_the_seed():
    group = frozen_lake_group(n=3)

    def sampled(seed):
        group.reset(seed=seed)
        return {a: [int(group.action_space(a).sample()) for _ in range(30)] for a in group.agents}

    first = sampled(3)
    assert len({tuple(actions) for actions in first.values()}) == 3
    assert sampled(3) == first
    assert sampled(4) != first


def test_spaces_are_cached_per_agent():
    group = GroupEnv(CorridorEnv, 2)
    assert group.action_space("rollout_1") is group.action_space("rollout_1")
    assert group.action_space("rollout_0") is not group.action_space("rollout_1")
    with pytest.raises(KeyError, match="unknown agent 'rollout_2'"):
        group.observation_space("rollout_2")


def test_state_key_prefers_info_state_key():
    group = GroupEnv(CorridorEnv, 2)
    group.reset(seed=2)
    group.step({"rollout_0": "<action>left</action>", "rollout_1": "<action>right</action>"})
    start = group.episodes[0]["states"][0]
    assert start[0] == "cell"
    assert group.episodes[0]["states"][1] == ("cell", max(start[1] - 1, 0))
    assert group.episodes[1]["states"][1] == ("cell", start[1] + 1)


def one_hot_frozen_lake() -> gymnasium.Env:
    env = gymnasium.make("FrozenLake-v1", is_slippery=False)
    space = gymnasium.spaces.Box(0, 1, (4, 4), dtype=np.int8)
    return gymnasium.wrappers.TransformObservation(
        env, lambda cell: np.eye(16, dtype=np.int8)[cell].reshape(4, 4), space
    )


def test_array_observations_become_tuple_keys():
    group = GroupEnv(one_hot_frozen_lake, 2)
    group.reset(seed=0)
    group.step({"rollout_0": RIGHT, "rollout_1": DOWN})
    states = [episode["states"] for episode in group.episodes]
    cell = {
        i: tuple(tuple(row) for row in np.eye(16, dtype=int)[i].reshape(4, 4)) for i in (0, 1, 4)
    }
    assert states == [[cell[0], cell[1]], [cell[0], cell[4]]]
    assert all(isinstance(value, int) for value in states[0][1][0])
    assert hash(states[0][1])


def test_custom_state_key_and_unhashable_keys():
    row = GroupEnv("FrozenLake-v1", 2, state_key=lambda obs, info: obs // 4, is_slippery=False)
    row.reset(seed=0)
    row.step({"rollout_0": RIGHT, "rollout_1": DOWN})
    assert [e["states"] for e in row.episodes] == [[0, 0], [0, 1]]

    broken = GroupEnv("FrozenLake-v1", 2, state_key=lambda obs, info: [obs], is_slippery=False)
    with pytest.raises(TypeError, match="state key of rollout_0 at step 0 is not hashable"):
        broken.reset(seed=0)


def test_hashable_key():
    value = {"b": np.array([[1, 2], [3, 4]]), "a": [np.float32(0.5), (np.int64(3),)]}
    key = hashable_key(value)
    assert key == (("a", (0.5, (3,))), ("b", ((1, 2), (3, 4))))
    assert hash(key) == hash(hashable_key(dict(reversed(value.items()))))


@pytest.mark.parametrize(
    "env, kwargs",
    [
        ("FrozenLake-v1", {"is_slippery": True}),  # transitions use each member's own RNG
        (CorridorEnv, {"max_steps": 12}),
    ],
    ids=["slippery-frozenlake", "text-corridor"],
)
def test_worker_processes_give_the_same_episodes(env, kwargs):
    def episodes(workers):
        group = GroupEnv(env, 5, workers=workers, render_mode="ansi", **kwargs)
        try:
            return [run_group(group, seed) for seed in (0, 1)], group.render()
        finally:
            group.close()

    assert episodes(workers=2) == episodes(workers=0)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_failing_member_ends_the_group_and_reset_recovers(workers):
    group = GroupEnv(FragileCorridorEnv, 4, workers=workers)
    group.reset(seed=0)
    actions = {agent: "wait" for agent in group.agents} | {"rollout_0": "explode"}
    with pytest.raises((ValueError, RuntimeError), match="the simulator exploded"):
        group.step(actions)
    assert group.agents == []
    episodes = run_group(group, seed=3)
    group.close()
    assert episodes == run_group(GroupEnv(FragileCorridorEnv, 4), seed=3)


def test_worker_processes_need_a_picklable_env():
    with pytest.raises(TypeError, match="must be picklable"):
        GroupEnv(lambda: CorridorEnv(), 2, workers=1)


def test_worker_errors_name_the_failure():
    with pytest.raises(
        GroupWorkerError,
        match=r"of rollout_0, rollout_1 \(pid \d+\) raised during 'start'(.|\n)*no_such_kwarg",
    ):
        GroupEnv(functools.partial(CorridorEnv, no_such_kwarg=1), 2, workers=1)


def test_a_killed_worker_is_named_and_the_next_reset_starts_a_new_one():
    group = GroupEnv(CorridorEnv, 4, workers=2)
    group.reset(seed=0)
    group.step({agent: "<action>left</action>" for agent in group.agents})
    victim = group._members.processes[1]
    os.kill(victim.pid, signal.SIGKILL)
    victim.join()
    with pytest.raises(
        GroupWorkerError,
        match=rf"worker of rollout_2, rollout_3 \(pid {victim.pid}\) was killed by signal 9 "
        "during 'step'",
    ):
        group.step({agent: "<action>right</action>" for agent in group.agents})
    assert group.agents == []
    with pytest.raises(GroupWorkerError, match="call reset"):
        group.render()
    episodes = run_group(group, seed=5)
    group.close()
    assert episodes == run_group(GroupEnv(CorridorEnv, 4), seed=5)


def test_a_silent_worker_times_out_is_terminated_and_replaced():
    group = GroupEnv(HangingCorridorEnv, 4, workers=2, worker_timeout=3)
    group.reset(seed=0)
    hung = group._members.processes[0]
    started = time.monotonic()
    with pytest.raises(
        GroupWorkerError,
        match=r"worker of rollout_0, rollout_1 \(pid \d+\) did not answer 'step' within 3 s",
    ):
        group.step({agent: "hang" if agent == "rollout_0" else "wait" for agent in group.agents})
    assert time.monotonic() - started < 30
    assert not hung.is_alive() and group.agents == []
    episodes = run_group(group, seed=2)
    group.close()
    assert episodes == run_group(GroupEnv(HangingCorridorEnv, 4), seed=2)


def test_close_returns_even_when_a_worker_hangs_in_close():
    group = GroupEnv(HangingCorridorEnv, 2, workers=2, hang_on_close=True)
    group.reset(seed=0)
    processes = list(group._members.processes)
    started = time.monotonic()
    group.close()
    assert time.monotonic() - started < 30
    assert not any(process.is_alive() for process in processes)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_reset_that_fails_leaves_no_live_agent_until_one_succeeds(workers):
    group = GroupEnv(FragileCorridorEnv, 3, workers=workers)
    group.reset(seed=0)
    group.step({agent: "<action>right</action>" for agent in group.agents})
    with pytest.raises((ValueError, RuntimeError), match="cannot start task 13"):
        group.reset(seed=13)
    assert group.agents == [] and group.episodes == []
    with pytest.raises(RuntimeError, match="no live agents"):
        group.step({"rollout_0": "<action>right</action>"})
    group.reset(seed=1)
    assert len(group.agents) == 3 and all(len(e["states"]) == 1 for e in group.episodes)
    group.close()


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), "10", True])
def test_a_bad_worker_timeout_is_refused(timeout):
    with pytest.raises(ValueError, match="worker_timeout must be a number of seconds > 0"):
        GroupEnv(CorridorEnv, 2, workers=1, worker_timeout=timeout)


@pytest.mark.parametrize(
    "args, error, match",
    [
        (("FrozenLake-v1", 0), ValueError, "n must be a positive int"),
        (("FrozenLake-v1", 2.0), ValueError, "n must be a positive int"),
        ((gymnasium.make("FrozenLake-v1"), 2), TypeError, "not an env instance"),
        ((42, 2), TypeError, "env id or a callable"),
        ((lambda: "not an env", 2), TypeError, "must return a gymnasium.Env"),
    ],
)
def test_bad_arguments(args, error, match):
    with pytest.raises(error, match=match):
        GroupEnv(*args)


def test_a_group_larger_than_max_n_is_refused_before_any_member_is_built():
    """A mistyped size (10**6 members, one env each) used to fill the memory."""
    started = time.monotonic()
    with pytest.raises(ValueError, match="n=1000000 is more than max_n=4096"):
        GroupEnv("FrozenLake-v1", 10**6)
    assert time.monotonic() - started < 1
    with pytest.raises(ValueError, match="n=5 is more than max_n=4"):
        GroupEnv("FrozenLake-v1", 5, max_n=4)
    group = GroupEnv("FrozenLake-v1", 5, max_n=5)
    assert len(group.possible_agents) == 5
    group.close()


def test_bad_workers_argument():
    with pytest.raises(ValueError, match="workers must be an int >= 0"):
        GroupEnv("FrozenLake-v1", 2, workers=-1)
