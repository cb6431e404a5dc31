"""A group: N episodes of one task, run in lock-step as a PettingZoo ``ParallelEnv``.

RewardFlow compares the episodes of a group, so every member must start from the same task.
``GroupEnv`` passes one seed and one ``options`` dict to every member's ``reset`` and checks
that all members report the same start state; each member then steps independently until its
episode ends, and the group records every member's states, rewards and actions.
"""

from __future__ import annotations

import copy
import multiprocessing
import operator
import pickle
import time
import traceback
from collections.abc import Callable, Hashable, Mapping
from typing import Any

import gymnasium
import numpy as np
from pettingzoo import ParallelEnv

StateKeyFn = Callable[[Any, Mapping[str, Any]], Hashable]
EnvFactory = Callable[..., gymnasium.Env]


def hashable_key(value: Any) -> Hashable:
    """`value` as a hashable key: arrays and lists become tuples, numpy scalars Python scalars.

    Dicts become tuples of sorted ``(key, value)`` pairs, so a ``spaces.Dict`` observation works.
    """
    if isinstance(value, np.ndarray):
        return hashable_key(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return tuple(hashable_key(item) for item in value)
    if isinstance(value, Mapping):
        return tuple(sorted((key, hashable_key(item)) for key, item in value.items()))
    return value


def default_state_key(observation: Any, info: Mapping[str, Any]) -> Hashable:
    """The env's own ``info["state_key"]`` where it has one, else the observation itself."""
    if "state_key" in info:
        return info["state_key"]
    return hashable_key(observation)


def make_member(env: str | EnvFactory, make_kwargs: Mapping[str, Any]) -> gymnasium.Env:
    """``gymnasium.make(env, **make_kwargs)`` for an env id, else ``env(**make_kwargs)``."""
    member = gymnasium.make(env, **make_kwargs) if isinstance(env, str) else env(**make_kwargs)
    if not isinstance(member, gymnasium.Env):
        raise TypeError(f"the env factory must return a gymnasium.Env, got {type(member).__name__}")
    return member


class LocalMembers:
    """Steps the members one after the other in this process."""

    def __init__(self, env: str | EnvFactory, n: int, make_kwargs: Mapping[str, Any]):
        self.envs = [make_member(env, make_kwargs) for _ in range(n)]

    def describe(self) -> list[tuple[gymnasium.Space, gymnasium.Space, dict]]:
        return [(e.observation_space, e.action_space, e.metadata) for e in self.envs]

    def reset(self, seed: int, options: dict | None) -> list[tuple[Any, dict]]:
        return [e.reset(seed=seed, options=options) for e in self.envs]

    def step(self, actions: Mapping[int, Any]) -> dict[int, tuple]:
        return {index: self.envs[index].step(action) for index, action in actions.items()}

    def render(self) -> list[Any]:
        return [e.render() for e in self.envs]

    def close(self) -> None:
        for e in self.envs:
            e.close()


def _worker_loop(connection, env: str | EnvFactory, make_kwargs: dict, count: int) -> None:
    """Serves commands for `count` members built inside this worker process."""
    try:
        members = LocalMembers(env, count, make_kwargs)
        connection.send((True, members.describe()))
    except Exception:
        connection.send((False, traceback.format_exc()))
        connection.close()
        return
    while True:
        try:
            command, payload = connection.recv()
        except (EOFError, KeyboardInterrupt):
            break  # the group's process has gone away (or is being interrupted)
        try:
            if command == "reset":
                result = members.reset(*payload)
            elif command == "step":
                result = members.step(payload)
            elif command == "render":
                result = members.render()
            else:  # "close"
                members.close()
                connection.send((True, None))
                break
            connection.send((True, result))
        except Exception:
            connection.send((False, traceback.format_exc()))
    connection.close()


def _start_context() -> multiprocessing.context.BaseContext:
    # Fork is unsafe with threads (BLAS, simulators); forkserver starts fast where it exists.
    if "forkserver" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("forkserver")
    return multiprocessing.get_context("spawn")


class GroupWorkerError(RuntimeError):
    """A worker process of a group failed, died or stopped answering; the message names its
    members and what happened. The next ``reset()`` starts a fresh worker where one died."""


# Seconds a worker gets to answer "close" before it is killed.
_CLOSE_GRACE = 5.0
# Generous: an ALFWorld or dense-search member can take seconds to build or reset.
DEFAULT_WORKER_TIMEOUT = 600.0
# Members a group may have unless the caller raises it: every member holds a whole env, so a
# mistyped size (10**6) would fill the memory long before it failed.
DEFAULT_MAX_MEMBERS = 4096
# Starting a worker (a new interpreter importing the env, loading its data) gets at least this.
_START_MIN = 120.0


class WorkerMembers:
    """Steps the members in worker processes, each owning a contiguous slice of them.

    Commands go to every worker before any answer is read, so workers step concurrently. A
    worker that does not answer within `timeout` seconds is terminated; one that dies is
    reported; either is replaced by a fresh worker at the next reset.
    """

    def __init__(
        self,
        env: str | EnvFactory,
        n: int,
        make_kwargs: Mapping[str, Any],
        workers: int,
        timeout: float | None,
        names: list[str],
    ):
        try:
            pickle.dumps((env, dict(make_kwargs)))
        except Exception as error:
            raise TypeError(
                "with workers > 0 the env and its make kwargs must be picklable (an env id, "
                f"a module-level function or a functools.partial); got {env!r}: {error}"
            ) from error
        self._target = (env, dict(make_kwargs))
        self._context = _start_context()
        self.timeout = timeout
        self.slices = [s.tolist() for s in np.array_split(np.arange(n), min(workers, n))]
        self._names = names
        self.connections: list = [None] * len(self.slices)
        self.processes: list = [None] * len(self.slices)
        self._broken: set[int] = set()
        for worker in range(len(self.slices)):
            self._start(worker)
        try:
            parts = self._receive(range(len(self.slices)), "start")
        except GroupWorkerError:
            self.close()
            raise
        self.descriptions = [item for part in parts for item in part]

    def _start(self, worker: int) -> None:
        env, make_kwargs = self._target
        parent_end, child_end = self._context.Pipe()
        process = self._context.Process(
            target=_worker_loop,
            args=(child_end, env, make_kwargs, len(self.slices[worker])),
            daemon=True,
        )
        process.start()
        child_end.close()
        self.connections[worker], self.processes[worker] = parent_end, process

    def _who(self, worker: int) -> str:
        members = ", ".join(self._names[m] for m in self.slices[worker])
        return f"the group worker of {members} (pid {self.processes[worker].pid})"

    def _send(self, worker: int, command: str, payload: Any) -> str | None:
        try:
            self.connections[worker].send((command, payload))
        except (BrokenPipeError, ConnectionResetError, OSError):
            return self._died(worker, command)
        return None

    def _died(self, worker: int, command: str) -> str:
        process = self.processes[worker]
        process.join(timeout=1)
        code = process.exitcode
        if code is None:
            how = "closed its pipe and was terminated"
            self._kill(worker)
        elif code < 0:
            how = f"was killed by signal {-code}"
        else:
            how = f"exited with code {code}"
        self._broken.add(worker)
        return f"{self._who(worker)} {how} during {command!r}"

    def _receive(self, workers, command: str, failures: list[str] | None = None) -> list[Any]:
        """Every listed worker's answer, waiting at most `timeout` seconds for all of them.

        All answers are read before anything is raised, so no stale answer stays in a pipe;
        a worker that died or stays silent is marked for a restart at the next reset.
        """
        failures = list(failures or [])
        limit = self.timeout
        if limit is not None and command == "start":
            limit = max(limit, _START_MIN)
        deadline = None if limit is None else time.monotonic() + limit
        answers = []
        for worker in workers:
            if worker in self._broken:
                continue
            wait = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            connection = self.connections[worker]
            try:
                ready = connection.poll(wait)
                reply = connection.recv() if ready else None
            except (EOFError, ConnectionResetError, OSError):
                failures.append(self._died(worker, command))
                continue
            if not ready:
                failures.append(
                    f"{self._who(worker)} did not answer {command!r} within {limit} s "
                    "and was terminated"
                )
                self._kill(worker)
                continue
            ok, result = reply
            if not ok:
                failures.append(f"{self._who(worker)} raised during {command!r}:\n{result}")
            answers.append(result)
        if failures:
            raise GroupWorkerError("; ".join(failures))
        return answers

    def _broadcast(self, command: str, payload: Any = None) -> list[Any]:
        self._require_live()
        failures = [self._send(w, command, payload) for w in range(len(self.slices))]
        return self._receive(range(len(self.slices)), command, [f for f in failures if f])

    def _require_live(self) -> None:
        if self._broken:
            who = "; ".join(self._who(w) for w in sorted(self._broken))
            raise GroupWorkerError(f"{who} is gone; call reset() to start it again")

    def _kill(self, worker: int) -> None:
        process = self.processes[worker]
        process.kill()
        process.join(timeout=_CLOSE_GRACE)
        self._broken.add(worker)

    def describe(self) -> list[tuple[gymnasium.Space, gymnasium.Space, dict]]:
        return self.descriptions

    def reset(self, seed: int, options: dict | None) -> list[tuple[Any, dict]]:
        self._restart_broken()
        return [item for part in self._broadcast("reset", (seed, options)) for item in part]

    def _restart_broken(self) -> None:
        broken, self._broken = sorted(self._broken), set()
        for worker in broken:
            self.connections[worker].close()
            if self.processes[worker].is_alive():
                self.processes[worker].kill()
            self.processes[worker].join(timeout=_CLOSE_GRACE)
            self._start(worker)
        self._receive(broken, "start")

    def step(self, actions: Mapping[int, Any]) -> dict[int, tuple]:
        self._require_live()
        busy, failures = [], []
        for worker, members in enumerate(self.slices):
            local = {i: actions[m] for i, m in enumerate(members) if m in actions}
            if local:
                failures.append(self._send(worker, "step", local))
                busy.append(worker)
        parts = self._receive(busy, "step", [f for f in failures if f])
        results = {}
        for worker, part in zip(busy, parts, strict=True):
            results.update({self.slices[worker][i]: result for i, result in part.items()})
        return results

    def render(self) -> list[Any]:
        return [item for part in self._broadcast("render") for item in part]

    def close(self) -> None:
        """Ask every worker to close its envs; kill any that has not within a few seconds.
        Always returns."""
        asked = []
        for connection in self.connections:
            try:
                connection.send(("close", None))
                asked.append(connection)
            except (BrokenPipeError, ConnectionResetError, OSError):
                pass  # the worker already exited; nothing left to close
        deadline = time.monotonic() + _CLOSE_GRACE
        for connection in asked:
            try:
                if connection.poll(max(deadline - time.monotonic(), 0.0)):
                    connection.recv()
            except (EOFError, ConnectionResetError, OSError):
                pass
        for connection in self.connections:
            connection.close()
        for process in self.processes:
            process.join(timeout=max(deadline - time.monotonic(), 0.0))
            if process.is_alive():
                process.kill()
                process.join(timeout=_CLOSE_GRACE)
        self.connections, self.processes = [], []


class GroupEnv(ParallelEnv):
    """N copies of one Gymnasium env that start from the same task and step in lock-step.

    Args:
        env: a registered env id (built with ``gymnasium.make(env, **make_kwargs)``) or a
            callable returning a ``gymnasium.Env`` (called as ``env(**make_kwargs)``).
        n: the number of members (episodes) in the group; agents are ``rollout_0 .. rollout_{n-1}``.
        state_key: ``state_key(observation, info) -> hashable``, the canonical state key that
            RewardFlow's graph is built from; by default ``info["state_key"]`` when the env
            provides it, else the observation (arrays become tuples).
        workers: 0 steps the members in this process; k > 0 steps them in k worker processes
            (for slow envs). Members are then built inside the workers, so `env` must be
            picklable; results are the same as in-process stepping.
        worker_timeout: seconds a worker may take to answer one reset, step or render, and
            to build its members (at least 120 s for that; None: no limit). A worker that
            takes longer is terminated, and one that dies is reported: both raise
            GroupWorkerError naming its members, the group has no live agents, and the next
            ``reset()`` starts a fresh worker.
        max_n: the largest `n` accepted (default 4,096); raise it for larger groups.

    ``reset(seed=s, options=o)`` passes the same `s` and `o` to every member; without a seed the
    group draws one from its own RNG, so members still share one task. Each member's action
    space is seeded differently, so ``action_space(agent).sample()`` differs across members.
    An agent leaves ``agents`` when its episode terminates or truncates; the group is over when
    ``agents`` is empty. ``episodes`` holds every member's recorded episode.
    """

    metadata = {"name": "rewardflow_group", "is_parallelizable": True}

    def __init__(
        self,
        env: str | EnvFactory,
        n: int,
        state_key: StateKeyFn | None = None,
        workers: int = 0,
        worker_timeout: float | None = DEFAULT_WORKER_TIMEOUT,
        max_n: int = DEFAULT_MAX_MEMBERS,
        **make_kwargs: Any,
    ):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int (the group size), got {n!r}")
        if n > max_n:
            raise ValueError(
                f"n={n} is more than max_n={max_n} members (each holds its own env); "
                "pass a larger max_n for a group that size"
            )
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
            raise ValueError(f"workers must be an int >= 0, got {workers!r}")
        if worker_timeout is not None and not (
            isinstance(worker_timeout, (int, float))
            and not isinstance(worker_timeout, bool)
            and 0 < worker_timeout < float("inf")
        ):
            raise ValueError(
                f"worker_timeout must be a number of seconds > 0 or None, got {worker_timeout!r}"
            )
        if isinstance(env, gymnasium.Env):
            raise TypeError(
                "GroupEnv needs n independent copies: pass an env id or a callable that builds "
                "the env, not an env instance"
            )
        if not (isinstance(env, str) or callable(env)):
            raise TypeError(f"env must be an env id or a callable, got {type(env).__name__}")
        if state_key is not None and not callable(state_key):
            raise TypeError("state_key must be a callable (observation, info) -> hashable key")

        self.state_key = state_key or default_state_key
        self.possible_agents = [f"rollout_{i}" for i in range(n)]
        self.agents: list[str] = []
        self.task_seed: int | None = None
        self._agent_index = {agent: i for i, agent in enumerate(self.possible_agents)}
        self._episodes: list[dict[str, list]] = []
        self._np_random = np.random.default_rng()
        self._members = (
            WorkerMembers(env, n, make_kwargs, workers, worker_timeout, self.possible_agents)
            if workers
            else LocalMembers(env, n, make_kwargs)
        )

        descriptions = self._members.describe()
        self._observation_spaces: dict[str, gymnasium.Space] = {}
        self._action_spaces: dict[str, gymnasium.Space] = {}
        seen: set[int] = set()
        for agent, (observation_space, action_space, _) in zip(
            self.possible_agents, descriptions, strict=True
        ):
            # Each agent needs its own action-space RNG; copy a space a factory shared.
            if id(action_space) in seen:
                action_space = copy.deepcopy(action_space)
            seen.add(id(action_space))
            self._observation_spaces[agent] = observation_space
            self._action_spaces[agent] = action_space
        member_metadata = descriptions[0][2]
        env_name = env if isinstance(env, str) else getattr(env, "__name__", type(env).__name__)
        self.metadata = {
            **self.metadata,
            "name": f"group_{env_name}",
            "render_modes": list(member_metadata.get("render_modes", [])),
        }
        self._seed_action_spaces(np.random.SeedSequence())

    def observation_space(self, agent: str) -> gymnasium.Space:
        return self._observation_spaces[self._check_agent(agent)]

    def action_space(self, agent: str) -> gymnasium.Space:
        return self._action_spaces[self._check_agent(agent)]

    @property
    def episodes(self) -> list[dict[str, list]]:
        """Each member's episode so far: ``{"states": [s0..st], "rewards": [..], "actions": [..]}``.

        States are the state keys; ``states`` is one longer than ``rewards`` and ``actions``.
        """
        return [{name: list(values) for name, values in e.items()} for e in self._episodes]

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, dict]]:
        if seed is not None:
            seed = operator.index(seed)
            self._np_random = np.random.default_rng(seed)
            self._seed_action_spaces(np.random.SeedSequence(seed))
            self.task_seed = seed
        else:
            self.task_seed = int(self._np_random.integers(2**31))
        # Until every member has reset, no agent is live: a reset that fails part-way must
        # not leave old episodes to be continued into the new task.
        self.agents, self._episodes = [], []
        starts = self._members.reset(self.task_seed, options)

        observations, infos = {}, {}
        for agent, (observation, info) in zip(self.possible_agents, starts, strict=True):
            observations[agent], infos[agent] = observation, info
            key = self._key(agent, observation, info, step=0)
            self._episodes.append({"states": [key], "rewards": [], "actions": []})
        start_keys = [e["states"][0] for e in self._episodes]
        differing = [
            a for a, k in zip(self.possible_agents, start_keys, strict=True) if k != start_keys[0]
        ]
        if differing:
            self.agents = []
            first = self._agent_index[differing[0]]
            raise RuntimeError(
                f"group members started from different states after reset(seed={self.task_seed}, "
                f"options={options!r}): rollout_0 has {start_keys[0]!r} but {differing[0]} has "
                f"{start_keys[first]!r} ({len(differing)} of {len(start_keys)} members differ); "
                "the env's reset must give the same start for the same seed and options"
            )
        self.agents = list(self.possible_agents)
        return observations, infos

    def step(self, actions: Mapping[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        if not self.agents:
            raise RuntimeError("the group has no live agents; call reset() to start a new group")
        unknown = set(actions) - set(self.agents)
        missing = set(self.agents) - set(actions)
        if unknown or missing:
            raise ValueError(
                "step() needs exactly one action per live agent: "
                f"missing {sorted(missing)}, not live {sorted(unknown, key=str)}"
            )
        try:
            results = self._members.step(
                {self._agent_index[agent]: action for agent, action in actions.items()}
            )
        except Exception:
            self.agents = []  # some members may have stepped and others not: start over
            raise

        observations, rewards, terminations, truncations, infos = {}, {}, {}, {}, {}
        for agent in self.agents:
            observation, reward, terminated, truncated, info = results[self._agent_index[agent]]
            episode = self._episodes[self._agent_index[agent]]
            episode["states"].append(
                self._key(agent, observation, info, step=len(episode["rewards"]) + 1)
            )
            episode["rewards"].append(float(reward))
            episode["actions"].append(hashable_key(actions[agent]))
            observations[agent], rewards[agent], infos[agent] = observation, float(reward), info
            terminations[agent], truncations[agent] = bool(terminated), bool(truncated)
        self.agents = [a for a in self.agents if not (terminations[a] or truncations[a])]
        return observations, rewards, terminations, truncations, infos

    def render(self) -> list[Any]:
        """Every member's render, in agent order."""
        return self._members.render()

    def close(self) -> None:
        self._members.close()

    def _check_agent(self, agent: str) -> str:
        if agent not in self._agent_index:
            raise KeyError(f"unknown agent {agent!r}; agents are {self.possible_agents}")
        return agent

    def _seed_action_spaces(self, seed_sequence: np.random.SeedSequence) -> None:
        children = seed_sequence.spawn(len(self.possible_agents))
        for agent, child in zip(self.possible_agents, children, strict=True):
            self._action_spaces[agent].seed(int(child.generate_state(1)[0]))

    def _key(self, agent: str, observation: Any, info: Mapping[str, Any], step: int) -> Hashable:
        key = self.state_key(observation, info)
        try:
            hash(key)
        except TypeError as error:
            raise TypeError(
                f"the state key of {agent} at step {step} is not hashable "
                f"({type(key).__name__}: {key!r}); return a tuple, str or int from state_key"
            ) from error
        return key
