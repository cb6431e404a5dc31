"""The env pre-check of both trainers: every env a run will build is built once before any
model or Ray worker starts, so that a wrong id, bad kwargs or a missing data path stop the run
with one message naming the key that set them."""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from rewardflow_train.config import ConfigError, EnvConfig, TaskSetConfig, import_callable


@dataclass(frozen=True)
class TaskIndices:
    """Entries first..last of the env's task list that a run resets to (task_index)."""

    first: int
    last: int
    key: str  # the task_index setting, e.g. "eval_tasks.task_index"
    bounds: str  # what to lower if the env lacks them, e.g. "eval_tasks.count or .seed"


@dataclass(frozen=True)
class EnvUse:
    """One set of kwargs a run builds its env with, and the key that sets them."""

    key: str
    kwargs: dict
    tasks: TaskIndices | None = None


def task_set_use(
    name: str, tasks: TaskSetConfig, env: EnvConfig, count: int, bounds: str
) -> EnvUse:
    """The env kwargs the first `count` tasks of the task set `name` are played with, and the
    entries of the env's task list they reset to (task_index); `bounds` names what to lower
    when the env lacks them."""
    indices = (
        TaskIndices(tasks.seed, tasks.seed + count - 1, f"{name}.task_index", bounds)
        if tasks.task_index and count
        else None
    )
    key = f"{name}.kwargs" if tasks.kwargs else "env.kwargs"
    return EnvUse(key, tasks.env_kwargs(env), indices)


def env_builder(env: EnvConfig):
    """env.factory's callable, or env.id after checking that Gymnasium knows it."""
    import gymnasium

    import rewardflow_envs

    if env.factory is not None:
        return import_callable(env.factory, "env.factory")
    module, _, name = env.id.rpartition(":")
    try:
        if module:
            importlib.import_module(module)  # registers its ids, as gymnasium.make would
        gymnasium.spec(name)
    except ImportError as error:
        raise ConfigError(f"env.id {env.id!r}: cannot import module {module!r} ({error})") from None
    except gymnasium.error.Error as error:
        known = ", ".join(rewardflow_envs.ENV_IDS)
        raise ConfigError(
            f"env.id {env.id!r} is not a registered Gymnasium env ({error}); "
            f"the rewardflow ids are: {known}"
        ) from None
    return env.id


def check_env_uses(env: EnvConfig, uses: list[EnvUse]) -> None:
    """Build one env of each distinct kwargs in `uses`; the first one also gives env.state_key
    its first observation, and each is asked for the tasks its uses will reset to."""
    import gymnasium

    from rewardflow_envs.group import make_member

    if not uses:
        return  # the run plays datasets of its own, not the env block's
    build = env_builder(env)
    state_key = import_callable(env.state_key, "env.state_key") if env.state_key else None
    for position, group in enumerate(_by_kwargs(uses)):
        kwargs = group[0].kwargs
        try:
            member = make_member(build, kwargs)
        except (TypeError, ValueError, OSError, gymnasium.error.Error) as error:
            raise ConfigError(
                f"{group[0].key}: {_name(env)} cannot be made with {kwargs!r}: {error}"
            ) from None
        try:
            if position == 0 and state_key is not None:
                _check_state_key(member, state_key, env)
            for use in group:
                if use.tasks is not None:
                    _check_tasks(member, use.tasks)
        finally:
            member.close()


def _by_kwargs(uses: list[EnvUse]) -> list[list[EnvUse]]:
    """The uses grouped by equal kwargs (dicts: not hashable), in the order first seen."""
    groups: list[list[EnvUse]] = []
    for use in uses:
        group = next((g for g in groups if g[0].kwargs == use.kwargs), None)
        if group is None:
            groups.append([use])
        else:
            group.append(use)
    return groups


def _name(env: EnvConfig) -> str:
    return env.factory or env.id


def _check_state_key(member, state_key, env: EnvConfig) -> None:
    """A state_key of the wrong signature, or one that returns an unhashable key, stops the run
    here rather than at its first step."""
    observation, info = member.reset(seed=0)
    try:
        hash(state_key(observation, info))
    except TypeError as error:
        raise ConfigError(
            f"env.state_key: {env.state_key} must take (observation, info) and return a "
            f"hashable key; on {_name(env)}'s first observation it failed: {error}"
        ) from None


def _check_tasks(member, tasks: TaskIndices) -> None:
    for index in (tasks.first, tasks.last):
        try:
            member.reset(seed=0, options={"task": index})
        except (ValueError, KeyError, IndexError) as error:
            raise ConfigError(
                f"{tasks.key}: the env has no task {index} ({error}); lower {tasks.bounds}"
            ) from None
