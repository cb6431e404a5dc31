"""The real-dataset loader, on a tiny tree in the layout of ALFWorld's json_2.1.1."""

from __future__ import annotations

import json
import random
import re

import pytest

pytest.importorskip("textworld")
pytest.importorskip("alfworld")

from rewardflow_envs.envs.alfworld import ALFWorldEnv, DatasetError  # noqa: E402
from rewardflow_envs.envs.alfworld.game import game_data  # noqa: E402
from rewardflow_envs.envs.alfworld.generator import SceneSampler, load_floor_plan  # noqa: E402
from rewardflow_envs.envs.alfworld.tasks import load_real  # noqa: E402

pytestmark = pytest.mark.alfworld


def write_trial(split_dir, task, scene_number, trial="trial_T20190001_000000_000001", **extra):
    """One trial directory as alfworld-download and alfworld-generate leave it."""
    params = task.pddl_params
    folder = (
        f"{task.task_type}-{params['object_target']}-None-"
        f"{params['parent_target'] or params['toggle_target']}-{scene_number}"
    )
    trial_dir = split_dir / folder / trial
    trial_dir.mkdir(parents=True)
    traj = {
        "task_type": task.task_type,
        "pddl_params": params,
        "scene": {"scene_num": scene_number},
    }
    (trial_dir / "traj_data.json").write_text(json.dumps(traj))
    (trial_dir / "initial_state.pddl").write_text(task.problem)
    game = {**game_data(task.problem, task.goal), "solvable": True, "walkthrough": None, **extra}
    (trial_dir / "game.tw-pddl").write_text(json.dumps(game))
    return trial_dir


@pytest.fixture(scope="module")
def sampled_tasks():
    rng = random.Random(5)
    simple = SceneSampler(load_floor_plan(2), rng).sample("pick_and_place_simple")
    light = SceneSampler(load_floor_plan(301), rng).sample("look_at_obj_in_light")
    return simple, light


@pytest.fixture()
def alfworld_tree(tmp_path, sampled_tasks):
    simple, light = sampled_tasks
    root = tmp_path / "alfworld" / "json_2.1.1"
    write_trial(root / "train", simple, 2)
    write_trial(root / "valid_seen", light, 301)
    write_trial(root / "valid_unseen", simple, 2, solvable=False)
    write_trial(root / "valid_unseen", light, 301, trial="trial_T20190001_000000_000002")
    return root


def test_plays_a_real_layout_game_to_a_win(alfworld_tree):
    env = ALFWorldEnv(split="valid_seen", data_path=alfworld_tree, expert=True)
    assert len(env.tasks) == 1
    _, info = env.reset(seed=0)
    assert info["task_type"] == "look_at_obj_in_light"
    assert info["task_id"].startswith("valid_seen/look_at_obj_in_light-")
    for _ in range(50):
        _, reward, terminated, _, info = env.step(info["expert_action"])
        if terminated:
            break
    assert info["won"] and reward == 10.0
    env.close()


def test_accepts_the_folder_above_json_and_the_environment_variable(alfworld_tree, monkeypatch):
    env = ALFWorldEnv(split="train", data_path=alfworld_tree.parent)
    assert [t.task_type for t in env.tasks] == ["pick_and_place_simple"]
    monkeypatch.setenv("ALFWORLD_DATA", str(alfworld_tree))
    env = ALFWorldEnv(split="valid_unseen")
    # The game marked unsolvable is left out, as ALFWorld does.
    assert [t.task_type for t in env.tasks] == ["look_at_obj_in_light"]


def test_missing_tree_names_the_path(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError, match=re.escape(str(missing)) + ".*does not exist"):
        ALFWorldEnv(split="train", data_path=missing)


def test_tree_without_splits_says_what_is_missing(tmp_path):
    (tmp_path / "something_else").mkdir()
    with pytest.raises(DatasetError, match="json_2.1.1.*train, valid_seen, valid_unseen"):
        ALFWorldEnv(split="train", data_path=tmp_path)


def test_a_missing_split_is_named(alfworld_tree):
    (alfworld_tree / "valid_seen").rename(alfworld_tree / "renamed")
    with pytest.raises(DatasetError, match="no 'valid_seen' split"):
        ALFWorldEnv(split="valid_seen", data_path=alfworld_tree)


def test_trials_without_a_game_file_are_left_out_as_alfworld_does(alfworld_tree, sampled_tasks):
    simple, _ = sampled_tasks
    second = write_trial(alfworld_tree / "train", simple, 2, trial="trial_T20190001_000000_000002")
    (second / "game.tw-pddl").unlink()
    with pytest.warns(UserWarning, match=r"1 trial\(s\) have traj_data.json but no game.tw-pddl"):
        env = ALFWorldEnv(split="train", data_path=alfworld_tree)
    assert len(env.tasks) == 1
    next((alfworld_tree / "train").glob("*/*/game.tw-pddl")).unlink()
    with pytest.raises(DatasetError, match=r"2 trial\(s\) .*no game.tw-pddl.*alfworld-generate"):
        load_real(alfworld_tree, "train")  # the env keeps the tasks it read: ask the loader


def test_games_not_marked_solvable_are_left_out_as_alfworld_does(alfworld_tree, sampled_tasks):
    simple, light = sampled_tasks
    split = alfworld_tree / "valid_seen"
    write_trial(split, simple, 2, trial="trial_T20190001_000000_000003", solvable=None)
    no_key = write_trial(split, simple, 3, trial="trial_T20190001_000000_000004")
    game = json.loads((no_key / "game.tw-pddl").read_text())
    del game["solvable"]
    (no_key / "game.tw-pddl").write_text(json.dumps(game))
    env = ALFWorldEnv(split="valid_seen", data_path=alfworld_tree)
    assert [task.task_type for task in env.tasks] == [light.task_type]


def test_malformed_game_file_is_named(alfworld_tree):
    game_file = next((alfworld_tree / "train").glob("*/*/game.tw-pddl"))
    game_file.write_text("{not json")
    with pytest.raises(
        DatasetError, match="malformed ALFWorld game in " + re.escape(str(game_file.parent))
    ):
        ALFWorldEnv(split="train", data_path=alfworld_tree)


def test_unknown_split_lists_the_real_splits(alfworld_tree):
    with pytest.raises(ValueError, match="valid_seen"):
        ALFWorldEnv(split="valid", data_path=alfworld_tree)


def test_alfworld_default_cache_folder_alone_keeps_the_generated_tasks(monkeypatch, tmp_path):
    # `import alfworld` sets ALFWORLD_DATA to ~/.cache/alfworld (and creates it) when unset.
    monkeypatch.setenv("HOME", str(tmp_path))
    cache = tmp_path / ".cache" / "alfworld"
    cache.mkdir(parents=True)
    monkeypatch.setattr("rewardflow_envs.envs.alfworld.tasks.ALFWORLD_CACHE", cache)
    monkeypatch.setenv("ALFWORLD_DATA", str(cache))
    env = ALFWorldEnv(split="valid")
    assert env.data_path is None and len(env.tasks) == 72
