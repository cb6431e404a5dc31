"""What one OpenRLHF sample carries: the task it plays (the label) and what happened (the record).

A prompt dataset row's ``label`` is a JSON object naming one task::

    {"env": "RF-ALFWorld-v0", "kwargs": {"split": "train"}, "seed": 17}

OpenRLHF samples ``n_samples_per_prompt`` responses per row, so the N episodes of a row play the
same task from the same start: one RewardFlow group. Instead of ``env``, ``factory`` names a
callable that builds the env (``"module:function"``, called with ``kwargs``), as ``GroupEnv``
takes one. Optional keys: ``task`` (passed to reset as ``options={"task": ...}``), ``state_key``
("module:function" giving the canonical state key, as ``GroupEnv`` takes it), ``system_prompt``
and ``max_turns``.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

LABEL_KEYS = (
    "env", "factory", "kwargs", "seed", "task", "state_key", "system_prompt", "max_turns",
)  # fmt: skip


@dataclass(frozen=True)
class EpisodeSpec:
    """One task: which env to build, and how to reset it."""

    env: str | None = None
    factory: str | None = None
    kwargs: dict = field(default_factory=dict)
    seed: int | None = None
    task: Any = None
    state_key: str | None = None
    system_prompt: str | None = None
    max_turns: int | None = None

    @classmethod
    def from_label(cls, label: str | Mapping[str, Any]) -> EpisodeSpec:
        """The spec in a dataset label (a JSON string, or the object a dataset loader parsed)."""
        if isinstance(label, str):
            try:
                label = json.loads(label)
            except json.JSONDecodeError as error:
                raise ValueError(f"the label is not a JSON task object: {label[:200]!r}") from error
        if not isinstance(label, Mapping):
            raise ValueError(f"the label must be a JSON object naming a task, got {label!r}")
        unknown = sorted(set(label) - set(LABEL_KEYS))
        if unknown:
            raise ValueError(f"unknown label keys {unknown}; known: {list(LABEL_KEYS)}")
        builders = [key for key in ("env", "factory") if isinstance(label.get(key), str)]
        if len(builders) != 1 or not label[builders[0]]:
            raise ValueError(
                "the label needs either an 'env' id (e.g. 'RF-Sokoban-v0') or a 'factory' "
                f"('module:function'), got {label!r}"
            )
        if label.get("seed") is None and label.get("task") is None:
            raise ValueError(
                f"the label needs a 'seed' or a 'task' so the group shares one: {label!r}"
            )
        max_turns = label.get("max_turns")
        if max_turns is not None and (not isinstance(max_turns, int) or max_turns < 1):
            raise ValueError(f"label max_turns must be a positive int, got {max_turns!r}")
        return cls(**{key: label[key] for key in LABEL_KEYS if label.get(key) is not None})

    def to_label(self) -> str:
        values = {key: getattr(self, key) for key in LABEL_KEYS}
        return json.dumps({k: v for k, v in values.items() if v not in (None, {})}, sort_keys=True)

    @property
    def reset_options(self) -> dict | None:
        return None if self.task is None else {"task": self.task}

    @property
    def name(self) -> str:
        """The env id, or the factory that builds the env."""
        return self.env or self.factory

    def describe(self) -> str:
        """A short human-readable name of the task (the dataset's prompt column)."""
        which = f"seed {self.seed}" if self.task is None else f"task {json.dumps(self.task)}"
        return f"{self.name} {which}"


@dataclass
class EpisodeRecord:
    """One played episode: its state keys (one more than its turns), and per turn the reward,
    whether the env could read the action, and the token range of the action in the sequence."""

    states: list[Hashable]
    rewards: list[float] = field(default_factory=list)
    valid: list[bool] = field(default_factory=list)
    action_ranges: list[tuple[int, int]] = field(default_factory=list)
    won: bool = False

    @property
    def episode_return(self) -> float:
        return float(sum(self.rewards))


def task_rows(specs: Iterable[EpisodeSpec]) -> list[dict[str, str]]:
    """Prompt dataset rows for ``--data.input_key prompt --data.label_key label``."""
    return [
        {"prompt": spec.describe(), "label": spec.to_label(), "datasource": spec.name}
        for spec in specs
    ]
