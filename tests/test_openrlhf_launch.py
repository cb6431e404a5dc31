"""The OpenRLHF launcher's side that needs no OpenRLHF: task labels, the command line it builds,
and the settings it refuses before anything starts."""

import json
import pickle

import pytest

pytest.importorskip("yaml")

from rewardflow_envs.flow import ESTIMATORS  # noqa: E402
from rewardflow_train.config import AdvantageConfig, ConfigError, load_config  # noqa: E402
from rewardflow_train.env_check import check_env_uses  # noqa: E402
from rewardflow_train.openrlhf import launcher  # noqa: E402
from rewardflow_train.openrlhf.episodes import EpisodeSpec, task_rows  # noqa: E402
from rewardflow_train.rollout.envs import EnvFactory  # noqa: E402

GROUPS = ["--rollout.n_samples_per_prompt", "4", "--algo.kl.use_loss"]


def flag(argv, name):
    index = argv.index(name)
    return argv[index + 1]


def test_labels_round_trip_and_name_their_task():
    spec = EpisodeSpec(env="RF-ALFWorld-v0", kwargs={"split": "valid"}, seed=3, task=3)
    assert EpisodeSpec.from_label(spec.to_label()) == spec
    assert EpisodeSpec.from_label(json.loads(spec.to_label())) == spec  # a parsed JSON column
    (row,) = task_rows([spec])
    assert row == {"prompt": "RF-ALFWorld-v0 task 3", "label": spec.to_label(),
                   "datasource": "RF-ALFWorld-v0"}  # fmt: skip


@pytest.mark.parametrize(
    "label, message",
    [
        ("not json", "not a JSON task object"),
        ('["RF-Sokoban-v0"]', "must be a JSON object"),
        ('{"seed": 1}', "needs either an 'env' id"),
        ('{"env": "RF-Sokoban-v0", "factory": "m:f", "seed": 1}', "needs either an 'env' id"),
        ('{"env": "RF-Sokoban-v0"}', "needs a 'seed' or a 'task'"),
        ('{"env": "RF-Sokoban-v0", "seed": 1, "steps": 3}', "unknown label keys"),
        ('{"env": "RF-Sokoban-v0", "seed": 1, "max_turns": 0}', "max_turns"),
    ],
)
def test_a_bad_label_says_what_is_wrong(label, message):
    with pytest.raises(ValueError, match=message):
        EpisodeSpec.from_label(label)


def test_a_factory_builds_the_env_of_every_row(tmp_path):
    argv = [*GROUPS, f"output_dir={tmp_path}", "env.factory=test_group:CorridorEnv"]
    run, _ = launcher.plan([*argv, "env.kwargs={length: 4}", "train_tasks.count=2"])
    (rows,) = run.task_files.values()
    spec = EpisodeSpec.from_label(rows[0]["label"])
    assert (spec.env, spec.factory, spec.kwargs) == (None, "test_group:CorridorEnv", {"length": 4})
    assert rows[0]["datasource"] == "test_group:CorridorEnv"
    check_env_uses(run.env, run.env_uses)  # builds it
    with pytest.raises(ConfigError, match="env.factory: cannot import 'test_group:Nope'"):
        bad, _ = launcher.plan([*argv[:-1], "env.factory=test_group:Nope"])
        check_env_uses(bad.env, bad.env_uses)


def test_the_plan_writes_one_row_per_task_and_points_openrlhf_at_them(tmp_path):
    run, dry_run = launcher.plan(
        [*GROUPS, f"output_dir={tmp_path}", "train_tasks.count=6", "eval_tasks.count=2",
         "env.max_turns=7", "advantage.estimator=gigpo", "advantage.step_weight=0.5"]
    )  # fmt: skip
    assert not dry_run
    assert "--algo.advantage.estimator" not in run.argv  # OpenRLHF's parser would refuse gigpo
    assert run.advantage == AdvantageConfig(estimator="gigpo", step_weight=0.5)
    train = flag(run.argv, "--data.prompt_dataset")
    assert flag(run.argv, "--data.label_key") == "label"
    assert flag(run.argv, "--train.agent_func_path").endswith("openrlhf/agent.py")
    specs = [EpisodeSpec.from_label(r["label"]) for r in run.task_files[train]]
    assert [s.seed for s in specs] == list(range(6)) and {s.max_turns for s in specs} == {7}
    held_out = [EpisodeSpec.from_label(r["label"]) for r in run.task_files[flag(run.argv,
                "--eval.dataset")]]  # fmt: skip
    assert [s.seed for s in held_out] == [1_000_000, 1_000_001]

    launcher.write_task_files(run.task_files)
    lines = (tmp_path / "tasks" / "train.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == run.task_files[train]


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_every_estimator_of_rewardflow_train_is_ours_in_the_launcher(estimator, tmp_path):
    """rloo too, though OpenRLHF has one of that name: the same per-turn estimator as in
    rewardflow_train, not OpenRLHF's on the episode return."""
    argv = [*GROUPS, f"output_dir={tmp_path}", f"advantage.estimator={estimator}"]
    run, _ = launcher.plan(argv)
    assert run.advantage.estimator == estimator and "--algo.advantage.estimator" not in run.argv


def test_task_index_plays_the_env_task_list_in_order(tmp_path):
    run, _ = launcher.plan(
        [
            *GROUPS,
            f"output_dir={tmp_path}",
            "eval_tasks={count: 3, seed: 5, task_index: true, kwargs: {split: test}}",
        ]
    )
    rows = run.task_files[flag(run.argv, "--eval.dataset")]
    specs = [EpisodeSpec.from_label(row["label"]) for row in rows]
    assert [(s.task, s.reset_options) for s in specs] == [(i, {"task": i}) for i in (5, 6, 7)]
    train = run.task_files[flag(run.argv, "--data.prompt_dataset")]
    assert all(EpisodeSpec.from_label(row["label"]).task is None for row in train)


def test_flags_on_the_command_line_win_over_the_config(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(
        "openrlhf:\n"
        "  rollout: {n_samples_per_prompt: 2}\n"
        "  actor.eps_clip_low_high: [0.2, 0.28]\n"
        "  algo.kl.use_loss: true\n"
        "  ds.packing_samples: false\n"
    )
    run, _ = launcher.plan(
        ["--config", str(config), "--rollout.n_samples_per_prompt", "8", f"output_dir={tmp_path}"]
    )
    assert flag(run.argv, "--rollout.n_samples_per_prompt") == "8"
    eps = run.argv.index("--actor.eps_clip_low_high")
    assert run.argv[eps + 1 : eps + 3] == ["0.2", "0.28"]
    assert "--algo.kl.use_loss" in run.argv and "--ds.packing_samples" not in run.argv


def test_a_users_own_dataset_is_left_alone(tmp_path):
    run, _ = launcher.plan(
        [*GROUPS, "--data.prompt_dataset", "mine.jsonl", f"output_dir={tmp_path}"]
    )
    assert flag(run.argv, "--data.prompt_dataset") == "mine.jsonl" and not run.task_files


@pytest.mark.parametrize(
    "argv, message",
    [
        (["advantage.estimator=grpo", "--algo.kl.use_loss"], "n_samples_per_prompt"),
        (["advantage.estimator=gigpo", *GROUPS[:2]], "algo.kl.use_loss"),
        (["advantage.estimator=rloo", *GROUPS[:2]], "algo.kl.use_loss"),
        ([*GROUPS, "advantage.gamma=0"], "advantage.gamma"),
        ([*GROUPS, "eval_tasks.count=4", "eval_tasks.seed=2"], "overlap"),
        ([*GROUPS, "advantage.beta=1"], "unknown config key 'advantage.beta'"),
        (["stray"], "unexpected argument 'stray'"),
        (["--rollout.n_samples_per_prompt", "many", "advantage.estimator=gigpo"],
         "takes a number"),
    ],
)  # fmt: skip
def test_bad_settings_are_refused_before_anything_starts(argv, message, capsys):
    with pytest.raises(ConfigError, match=message):
        launcher.plan(argv)
    assert launcher.main(argv) == 2
    assert message.split("'")[0] in capsys.readouterr().err


@pytest.mark.parametrize(
    "setting, message",
    [("env.id=RF-Nope-v0", "RF-Nope-v0"), ("env.kwargs={dim_room: 3}", "dim_room")],
)
def test_an_env_that_cannot_be_built_stops_the_launch_before_ray(
    setting, message, tmp_path, capsys
):
    assert launcher.main([*GROUPS, f"output_dir={tmp_path}", setting]) == 2
    assert message in capsys.readouterr().err


def test_dry_run_prints_the_openrlhf_command(tmp_path, capsys):
    argv = [
        *GROUPS,
        "advantage.estimator=rewardflow",
        f"output_dir={tmp_path}",
        "--dry-run",
    ]
    assert launcher.main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("python -m openrlhf.cli.train_ppo_ray ") and "estimator rewardflow" in out
    assert not (tmp_path / "tasks").exists()  # a dry run writes nothing


# Both trainers read the same env and advantage blocks, with the same checks.
TRAINER = ["model.tiny={}"]


def trainer_error(overrides):
    with pytest.raises(ConfigError) as caught:
        load_config(None, [*TRAINER, *overrides])
    return str(caught.value)


def launcher_error(argv):
    with pytest.raises(ConfigError) as caught:
        launcher.plan([*GROUPS, *argv])
    return str(caught.value)


@pytest.mark.parametrize(
    "setting",
    ["advantage.gamma=0", "advantage.invalid_action_penalty=-1", "env.max_turns=0",
     "advantage.estimator=nope", "env.max_turn=3"],
)  # fmt: skip
def test_a_bad_shared_setting_gets_the_same_error_from_both_trainers(setting):
    assert trainer_error([setting]) == launcher_error([setting])


def test_both_trainers_need_a_group_for_the_estimator_and_name_their_own_group_size():
    assert trainer_error(["rollout.group_size=1"]).startswith(
        "rollout.group_size: advantage.estimator rewardflow compares the episodes of a group"
    )
    assert launcher_error(["--rollout.n_samples_per_prompt", "1"]).startswith(
        "--rollout.n_samples_per_prompt: advantage.estimator rewardflow compares the episodes"
    )


@pytest.mark.parametrize(
    "error, key",
    [
        (lambda: trainer_error(["env.factory=test_group:CorridorEnv"]), "env.factory"),
        (lambda: launcher_error(["env.workers=2"]), "env.workers"),
        (lambda: launcher_error(["env.worker_timeout=null"]), "env.worker_timeout"),
    ],
)
def test_a_setting_one_trainer_cannot_honour_is_refused_by_name(error, key):
    assert error().startswith(f"{key}: ")


@pytest.mark.parametrize(
    "old, new",
    [
        ("model.system_prompt=hi", "env.system_prompt"),
        ("rollout.max_turns=3", "env.max_turns"),
        ("rollout.task_seed=3", "train_tasks.seed"),
        ("eval.tasks=3", "eval_tasks.count"),
        ("eval.task_seed=3", "eval_tasks.seed"),
        ("eval.task_index=true", "eval_tasks.task_index"),
        ("eval.env_kwargs={}", "eval_tasks.kwargs"),
    ],
)
def test_a_moved_key_names_its_new_place(old, new):
    assert f"is now {new!r}" in trainer_error([old])


def test_a_task_block_means_the_same_tasks_in_both_trainers(tmp_path):
    """train_tasks {seed, count, kwargs}: the launcher's dataset rows are the tasks the
    trainer cycles through, one group after another, with the same env kwargs."""
    block = "train_tasks={seed: 3, count: 5, kwargs: {max_steps: 7}}"
    trainer = load_config(None, [*TRAINER, block, "train.steps=3"])
    run, _ = launcher.plan([*GROUPS, f"output_dir={tmp_path}", block])
    rows = run.task_files[flag(run.argv, "--data.prompt_dataset")]
    specs = [EpisodeSpec.from_label(row["label"]) for row in rows]
    assert [spec.seed for spec in specs] == [3, 4, 5, 6, 7]
    steps = [trainer.training_task_seeds(step) for step in (1, 2, 3)]
    assert steps == [[3, 4, 5, 6], [7, 3, 4, 5], [6, 7, 3, 4]]
    assert all(spec.kwargs == {"max_steps": 7} for spec in specs)
    assert EnvFactory(trainer).kwargs == {"max_steps": 7}


def test_the_advantage_block_picks_the_estimator_and_reaches_openrlhf_whole(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("advantage: {estimator: grpo, gamma: 0.5, norm_std: true}\n")
    run, _ = launcher.plan([*GROUPS, "--config", str(config), f"output_dir={tmp_path}"])
    trainer = load_config(config, TRAINER)
    expected = AdvantageConfig(estimator="grpo", gamma=0.5, norm_std=True)
    assert run.advantage == trainer.advantage == expected
    # OpenRLHF's args carry it, pickled, to every Ray worker as it is.
    assert pickle.loads(pickle.dumps(run.advantage)) == run.advantage
    assert "--algo.advantage.estimator" not in run.argv


def test_openrlhfs_estimator_flag_may_name_its_own_but_not_another_of_ours(tmp_path):
    own = [*GROUPS, f"output_dir={tmp_path}", "--algo.advantage.estimator", "group_norm"]
    run, _ = launcher.plan(own)
    assert run.advantage is None and flag(run.argv, "--algo.advantage.estimator") == "group_norm"
    assert "leave it at its defaults" in launcher_error([*own[2:], "advantage.gamma=0.5"])
    assert "set advantage.estimator=gigpo" in launcher_error(
        ["--algo.advantage.estimator", "gigpo"]
    )
    same = launcher.plan([*GROUPS, "--algo.advantage.estimator", "rewardflow"])[0]
    assert same.advantage == AdvantageConfig()


@pytest.mark.parametrize(
    "train, held_out, refusal",
    [
        ("{}", "{seed: 0, count: 4, kwargs: {split: test}}", None),
        ("{}", "{seed: 0, count: 4, kwargs: {max_steps: 5}}", "seeds 0..3 overlap the training"),
        ("{}", "{seed: 0, count: 4}", "seeds 0..3 overlap the training task seeds"),
        ("{count: 8, task_index: true}", "{seed: 4, count: 4, task_index: true}", "entries 4..7"),
        ("{count: 4, task_index: true}", "{seed: 4, count: 4, task_index: true}", None),
        ("{count: 8, task_index: true}", "{seed: 0, count: 4}", None),
    ],
)
def test_held_out_tasks_follow_one_rule_in_both_trainers(train, held_out, refusal, tmp_path):
    """Held-out tasks may not be training tasks: seeds are compared with seeds, entries of the
    task list with entries (a seed and an entry cannot be), unless the split differs."""
    settings = [f"train_tasks={train}", f"eval_tasks={held_out}"]
    attempts = [
        lambda: load_config(None, [*TRAINER, *settings]),
        lambda: launcher.plan([*GROUPS, f"output_dir={tmp_path}", *settings]),
    ]
    for attempt in attempts:
        if refusal is None:
            attempt()
            continue
        with pytest.raises(ConfigError) as caught:
            attempt()
        assert str(caught.value).startswith(
            "eval_tasks.seed: the held-out task"
        ) and refusal in str(caught.value)


@pytest.mark.parametrize(
    "setting, message",
    [
        ("env.state_key=os:getcwd", "env.state_key: os:getcwd must take (observation, info)"),
        ("env.id=RF-Nope-v0", "env.id 'RF-Nope-v0' is not a registered Gymnasium env"),
        ("env.kwargs={dim_room: [2, 2]}", "env.kwargs: RF-Sokoban-v0 cannot be made with"),
    ],
)
def test_the_launcher_checks_its_envs_as_rewardflow_train_does(setting, message, tmp_path, capsys):
    assert launcher.main([*GROUPS, f"output_dir={tmp_path}", setting]) == 2
    assert message in capsys.readouterr().err


def test_help_config_lists_the_launchers_keys_from_the_shared_schema(capsys):
    assert launcher.main(["--help-config", "advantage", "--config", "x.yaml"]) == 0
    listed = capsys.readouterr().out
    # The same block, with the same words, as `rewardflow train --help-config advantage` gives.
    assert "advantage.gamma (float, in (0, 1]; default 0.9)" in listed
    assert "advantage.estimator" in listed and "train_tasks." not in listed
    assert launcher.main(["--help-config"]) == 0
    assert "train_tasks.count" in capsys.readouterr().out
    assert launcher.main(["--help-config", "optim"]) == 2
    assert "no block 'optim'; blocks: env, train_tasks, eval_tasks, advantage" in (
        capsys.readouterr().err
    )
