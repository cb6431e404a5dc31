"""ALFWorld tasks: the generated set that ships with rewardflow, and the real json_2.1.1 tree.

A task is one PDDL problem of the ALFWorld domain, its task type, its task sentence and the
parameters ALFWorld's hand-coded expert reads (``pddl_params``).
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TASK_TYPES = (
    "pick_and_place_simple",
    "pick_two_obj_and_place",
    "look_at_obj_in_light",
    "pick_heat_then_place_in_recep",
    "pick_cool_then_place_in_recep",
    "pick_clean_then_place_in_recep",
)
DEFAULT_DATA_FILE = (
    Path(__file__).resolve().parents[2] / "data" / "alfworld" / "generated_tasks.json.gz"
)
GENERATED_SPLITS = ("train", "valid")
REAL_SPLITS = ("train", "valid_seen", "valid_unseen")
DATA_ENV_VAR = "ALFWORLD_DATA"
ALFWORLD_CACHE = Path("~/.cache/alfworld").expanduser()


class DatasetError(FileNotFoundError):
    """A requested ALFWorld dataset is missing or not in the expected layout."""


@dataclass(frozen=True)
class Task:
    task_id: str
    task_type: str
    goal: str
    pddl_params: dict[str, Any]
    problem: str
    scene: str = ""
    expert_steps: int | None = None

    def with_id(self, task_id: str, expert_steps: int | None = None) -> Task:
        return dataclasses.replace(self, task_id=task_id, expert_steps=expert_steps)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Task:
        return cls(**raw)


def load_generated(split: str, path: Path = DEFAULT_DATA_FILE) -> list[Task]:
    """The generated tasks of `split` ("train" or "valid") from the shipped task file."""
    if split not in GENERATED_SPLITS:
        raise ValueError(
            f"split must be one of {GENERATED_SPLITS} for generated tasks, got {split!r}"
        )
    if not path.is_file():
        raise DatasetError(
            f"generated ALFWorld tasks not found at {path}; rebuild them with "
            "`python -m rewardflow_envs.envs.alfworld.generator`"
        )
    with gzip.open(path, "rt", encoding="utf-8") as file:
        payload = json.load(file)
    return [Task.from_json(raw) for raw in payload["splits"][split]]


def resolve_data_path(data_path: str | os.PathLike | None) -> Path | None:
    """The real dataset requested by `data_path`, else by $ALFWORLD_DATA, else None."""
    if data_path is not None:
        return Path(data_path).expanduser()
    from_env = os.environ.get(DATA_ENV_VAR)
    if not from_env:
        return None
    path = Path(from_env).expanduser()
    # Importing alfworld sets $ALFWORLD_DATA to its own cache folder when it is unset; that
    # value asks for the real data only once alfworld-download has filled the folder.
    if path == ALFWORLD_CACHE and not (path / "json_2.1.1").is_dir():
        return None
    return path


def _json_root(path: Path) -> Path:
    """The json_2.1.1 directory: `path` itself, or the one inside an ALFWorld data folder."""
    if not path.exists():
        raise DatasetError(f"ALFWorld data path {path} does not exist")
    if not path.is_dir():
        raise DatasetError(f"ALFWorld data path {path} is not a directory")
    if any((path / split).is_dir() for split in REAL_SPLITS):
        return path
    nested = path / "json_2.1.1"
    if nested.is_dir():
        return nested
    raise DatasetError(
        f"ALFWorld data path {path} has neither a json_2.1.1 directory nor the split "
        f"directories {', '.join(REAL_SPLITS)}"
    )


def load_real(data_path: Path, split: str) -> list[Task]:
    """The playable games of one split of the real ALFWorld tree (json_2.1.1 layout).

    Each game is a trial directory with ``traj_data.json`` and ``game.tw-pddl`` (made by
    ``alfworld-generate``). As in ALFWorld's ``AlfredTWEnv.collect_game_files``, a trial without
    ``game.tw-pddl``, a game not marked ``"solvable": true`` and the movable-receptacle and
    sliced variants are left out; a warning counts the trials left out for a missing game file.
    """
    if split not in REAL_SPLITS:
        raise ValueError(f"split must be one of {REAL_SPLITS} for the real dataset, got {split!r}")
    root = _json_root(data_path)
    split_dir = root / split
    if not split_dir.is_dir():
        raise DatasetError(f"ALFWorld data path {root} has no {split!r} split directory")
    tasks, without_game = [], []
    trial_files = sorted(split_dir.glob("*/*/traj_data.json"))
    for traj_file in trial_files:
        trial = traj_file.parent
        if "movable" in trial.parent.name or "Sliced" in trial.parent.name:
            continue
        game_file = trial / "game.tw-pddl"
        if not game_file.is_file():
            without_game.append(trial)
            continue
        try:
            traj = json.loads(traj_file.read_text())
            game = json.loads(game_file.read_text())
            task_type = traj["task_type"]
            params = traj["pddl_params"]
            problem = game["pddl_problem"]
            goal = _goal_sentence(game["grammar"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise DatasetError(f"malformed ALFWorld game in {trial}: {error!r}") from error
        if task_type not in TASK_TYPES or game.get("solvable") is not True:
            continue
        tasks.append(
            Task(
                task_id=f"{split}/{trial.parent.name}/{trial.name}",
                task_type=task_type,
                goal=goal,
                pddl_params=params,
                problem=problem,
                scene=f"FloorPlan{traj.get('scene', {}).get('scene_num', '')}",
            )
        )
    missing = ""
    if without_game:
        missing = (
            f"{len(without_game)} trial(s) have traj_data.json but no game.tw-pddl (first: "
            f"{without_game[0]}); run alfworld-generate on the tree"
        )
    if not tasks:
        raise DatasetError(
            f"no playable games in {split_dir}: expected <task>/<trial>/traj_data.json with "
            f"a solvable game.tw-pddl next to it" + (f"; {missing}" if missing else "")
        )
    if missing:
        warnings.warn(f"{split_dir}: left out, as alfworld does: {missing}", stacklevel=3)
    return tasks


def _goal_sentence(grammar: str) -> str:
    """The task sentence that alfworld-generate wrote into a game's grammar."""
    marker = "Your task is to: "
    start = grammar.index(marker) + len(marker)
    end = grammar.index('"', start)
    return grammar[start:end].rstrip(".")
