"""Studies: the statistics on hand-made metrics files (known numbers), the study file's
checks, the example studies, and a tiny study end to end, stopped and continued."""

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("deepspeed")

import yaml  # noqa: E402  (the train extra brings it)
from test_train_run import CONFIG, ROOT, TINY  # noqa: E402

from rewardflow_train import study  # noqa: E402
from rewardflow_train.config import ConfigError, load_config  # noqa: E402
from rewardflow_train.experiments import report as study_report  # noqa: E402
from rewardflow_train.experiments import runner, statistics  # noqa: E402
from rewardflow_train.runtime import metrics  # noqa: E402

pytestmark = pytest.mark.train

STUDIES = sorted((ROOT / "examples" / "studies").glob("*.yaml"))


def write_metrics(
    run_dir,
    curve,
    step_seconds=2.0,
    eval_seconds=1.0,
    finished=True,
    signal=lambda step: {},
    train_success=None,
    code=None,
):
    """A run's metrics.jsonl with eval success `curve` ({step: success}) and a train record of
    `step_seconds` per step (plus `signal(step)` and `train_success[step]`); summary.json
    (with `code`) when `finished`."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for step, success in curve.items():
        if step:
            train = {"kind": "train", "step": step, "time": 0, "time/step": step_seconds}
            if train_success:
                train["train/success"] = train_success[step]
            lines.append({**train, **signal(step)})
        lines.append(
            {
                "kind": "eval",
                "step": step,
                "time": 0,
                "eval/success": success,
                "eval/episodes": 8,
                "time/eval": eval_seconds,
            }
        )
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    if finished:
        (run_dir / "summary.json").write_text(json.dumps({"code": code} if code else {}))


def study_file(tmp_path, **settings):
    values = {
        "base_config": str(CONFIG),
        "output_dir": str(tmp_path / "study"),
        "arms": {"a": ["advantage.estimator=rewardflow"], "b": ["advantage.estimator=grpo"]},
        "seeds": [0, 1],
        "reference_arm": "b",
        **settings,
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


# Statistics.


def test_t_quantiles_match_the_table_and_the_known_large_sample_values():
    assert statistics.t_quantile_975(1) == 12.706 and statistics.t_quantile_975(4) == 2.776
    for df, known in ((31, 2.0395), (40, 2.0211), (60, 2.0003), (120, 1.9799)):
        assert statistics.t_quantile_975(df) == pytest.approx(known, abs=2e-4)


def test_mean_interval_is_a_t_interval_over_seeds():
    stats = statistics.mean_interval([0.2, 0.4, 0.6])
    half = 4.303 * 0.2 / math.sqrt(3)  # sd 0.2, 2 degrees of freedom
    assert stats["mean"] == pytest.approx(0.4) and stats["n"] == 3
    assert stats["low"] == pytest.approx(0.4 - half) and stats["high"] == pytest.approx(0.4 + half)
    assert statistics.mean_interval([0.3]) == {"mean": 0.3, "low": None, "high": None, "n": 1}


def test_the_difference_of_two_arms_has_welchs_interval_and_a_paired_one():
    arm = {0: 0.5, 1: 0.7, 2: 0.6}
    reference = {0: 0.4, 1: 0.4, 2: 0.5, 3: 0.3}
    stats = statistics.difference_interval(arm, reference)
    va, vb = 0.01 / 3, np.var([0.4, 0.4, 0.5, 0.3], ddof=1) / 4
    df = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 3)
    assert stats["difference"] == pytest.approx(0.6 - 0.4)
    assert stats["df"] == pytest.approx(df) and 3 < df < 4  # the t quantile of 3 df, wider
    assert stats["high"] - stats["difference"] == pytest.approx(3.182 * math.sqrt(va + vb))
    paired = stats["paired"]  # seeds 0-2: differences 0.1, 0.3, 0.1
    assert paired["seeds"] == [0, 1, 2] and paired["mean"] == pytest.approx(0.5 / 3)
    assert paired["correlation"] == pytest.approx(
        np.corrcoef([0.5, 0.7, 0.6], [0.4, 0.4, 0.5])[0, 1]
    )
    one = statistics.difference_interval({0: 0.5}, reference)
    assert one["low"] is None and "paired" not in one


def test_area_under_curve_is_the_mean_success_along_training():
    assert statistics.area_under_curve([0, 2, 4], [0.2, 0.4, 0.4]) == pytest.approx(1.4 / 4)
    assert statistics.area_under_curve([0, 1, 4], [0.0, 1.0, 1.0]) == pytest.approx(3.5 / 4)
    assert statistics.area_under_curve([0], [0.5]) == 0.5


def test_a_run_is_read_from_its_metrics_the_last_record_of_a_step_counting(tmp_path):
    write_metrics(tmp_path, {0: 0.1, 2: 0.3, 4: 0.5})
    with open(tmp_path / "metrics.jsonl", "a") as file:  # step 4 evaluated again
        file.write(json.dumps({"kind": "eval", "step": 4, "eval/success": 0.6, "eval/episodes": 8}))
    run = study_report.read_run(tmp_path)
    assert run["steps"] == [0, 2, 4] and run["success"] == [0.1, 0.3, 0.6]
    assert run["wall_time_s"] == 2 * 2.0 + 3 * 1.0


def test_summary_from_hand_made_runs(tmp_path, capsys):
    """Arm b (the reference) ends at mean 0.5; arm a reaches 0.5 on average at step 2."""
    path = study_file(tmp_path)
    config = runner.load_study(path)
    runs = {run.name: run.output_dir for run in runner.study_runs(config)}
    write_metrics(runs["a/seed_0"], {0: 0.2, 2: 0.6, 4: 0.8})
    write_metrics(runs["a/seed_1"], {0: 0.2, 2: 0.4, 4: 0.6}, step_seconds=4.0)
    write_metrics(runs["b/seed_0"], {0: 0.2, 2: 0.2, 4: 0.4})
    write_metrics(runs["b/seed_1"], {0: 0.2, 2: 0.4, 4: 0.6})
    write_metrics(Path(config.output_dir) / "warmup", {0: 0.25})
    assert study.main(["--config", str(path), "--dry-run"]) == 0
    assert all(": done: " in line for line in capsys.readouterr().out.splitlines())

    study_report.write_outputs(config)
    report = json.loads((tmp_path / "study" / "study.json").read_text())
    assert report["reference_success"] == pytest.approx(0.5)
    arm_a, arm_b = report["arms"]["a"], report["arms"]["b"]
    assert arm_a["curve"]["steps"] == [0, 2, 4]
    assert arm_a["curve"]["mean"] == pytest.approx([0.2, 0.5, 0.7])
    half = 12.706 * math.sqrt(0.02) / math.sqrt(2)  # two seeds 0.2 apart
    assert arm_a["curve"]["high"][2] == pytest.approx(0.7 + half)
    assert arm_a["final_success"]["mean"] == pytest.approx(0.7)
    # seed 0: (2 * 0.4 + 2 * 0.7) / 4, seed 1: (2 * 0.3 + 2 * 0.5) / 4
    assert arm_a["auc"]["mean"] == pytest.approx((0.55 + 0.4) / 2)
    assert arm_a["wall_time_s"]["mean"] == pytest.approx((7 + 11) / 2)
    assert report["curves"]["b"]["1"]["success"] == [0.2, 0.4, 0.6]
    assert report["warmup"]["success"] == [0.25] and report["missing_runs"] == []
    against = arm_a["against_reference"]["final_success"]
    assert against["difference"] == pytest.approx(0.7 - 0.5) and "against_reference" not in arm_b
    assert report["primary_endpoint"] is None  # none declared
    table = (tmp_path / "study" / "study.md").read_text()
    assert "| a | 2 | 0.700 [" in table and "updates to reach" not in table
    assert "## Against b" in table and "| a | +0.200 [" in table
    assert (tmp_path / "study" / "study.png").stat().st_size > 1000


def test_the_primary_endpoint_and_arms_with_their_own_seeds(tmp_path):
    path = study_file(tmp_path, primary_arm="a", arm_seeds={"a": [0, 1, 2]})
    config = runner.load_study(path)
    runs = {run.name: run.output_dir for run in runner.study_runs(config)}
    # Seed by seed: a study stopped halfway has both arms on its first seeds.
    assert list(runs) == ["a/seed_0", "b/seed_0", "a/seed_1", "b/seed_1", "a/seed_2"]
    for name, final in zip(sorted(runs), [0.6, 0.8, 0.7, 0.5, 0.4], strict=True):
        write_metrics(runs[name], {0: 0.2, 4: final})
    study_report.write_outputs(config)
    report = json.loads((tmp_path / "study" / "study.json").read_text())
    primary = report["primary_endpoint"]
    assert primary["arm"] == "a" and primary["against"] == "b"
    assert primary["difference"] == pytest.approx(0.7 - 0.45) and primary["n"] == [3, 2]
    table = (tmp_path / "study" / "study.md").read_text()
    assert (
        "Primary endpoint, declared in the study file: final success of a minus b, +0.250" in table
    )


def test_training_success_is_paired_by_seed_and_step(tmp_path):
    config = runner.load_study(study_file(tmp_path, seeds=[0, 1, 2]))
    runs = {run.name: run.output_dir for run in runner.study_runs(config)}
    curve = {0: 0.2, 2: 0.3, 4: 0.4}
    # Seed by seed, a's training success minus b's at the same step, averaged over steps:
    # seed 0: (0.5 - 0.25 + 0.75 - 0.5) / 2 = 0.25, seed 1: 0.0, seed 2: (0.25 - 0) / 2 = 0.125.
    train = {
        ("a", 0): {2: 0.5, 4: 0.75},
        ("b", 0): {2: 0.25, 4: 0.5},
        ("a", 1): {2: 0.5, 4: 0.5},
        ("b", 1): {2: 0.5, 4: 0.5},
        ("a", 2): {2: 0.25, 4: 0.5},
        ("b", 2): {2: 0.0, 4: 0.5},
    }
    for (arm, seed), success in train.items():
        write_metrics(runs[f"{arm}/seed_{seed}"], curve, train_success=success)
    study_report.write_outputs(config)
    report = json.loads((tmp_path / "study" / "study.json").read_text())
    paired = report["arms"]["a"]["against_reference"]["train_success"]
    expected = statistics.mean_interval([0.25, 0.0, 0.125])
    assert paired["mean"] == pytest.approx(0.125) and paired["seeds"] == [0, 1, 2]
    assert paired["low"] == pytest.approx(expected["low"])
    table = (tmp_path / "study" / "study.md").read_text()
    assert "training success, paired by seed and step" in table
    assert f"+0.125 [{expected['low']:+.3f}, {expected['high']:+.3f}] (3 seeds)" in table


def test_the_code_each_run_used_is_reported(tmp_path):
    config = runner.load_study(study_file(tmp_path, seeds=[0]))
    runs = {run.name: run.output_dir for run in runner.study_runs(config)}
    write_metrics(runs["a/seed_0"], {0: 0.2, 2: 0.6}, code={"version": "0.1.0", "commit": "abc"})
    write_metrics(runs["b/seed_0"], {0: 0.2, 2: 0.4})  # finished before runs recorded it
    study_report.write_outputs(config)
    report = json.loads((tmp_path / "study" / "study.json").read_text())
    assert report["curves"]["a"]["0"]["code"]["commit"] == "abc"
    assert report["curves"]["b"]["0"]["code"] is None
    table = (tmp_path / "study" / "study.md").read_text()
    assert "Code: abc: a/seed_0; not recorded: b/seed_0." in table


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"primary_arm": "b"}, "primary_arm: 'b' is not allowed"),
        ({"primary_arm": "a", "reference_arm": None}, "primary_arm: 'a' is not allowed"),
        ({"arm_seeds": {"c": [0]}}, "arm_seeds: .* is not allowed"),
        ({"arm_seeds": {"a": [1, 1]}}, "arm_seeds: .* is not allowed"),
    ],
)
def test_a_primary_arm_and_arm_seeds_are_checked(tmp_path, settings, message):
    with pytest.raises(ConfigError, match=message):
        runner.load_study(study_file(tmp_path, **settings))


def test_the_signal_in_the_rollouts_is_averaged_over_steps_then_seeds(tmp_path):
    config = runner.load_study(study_file(tmp_path))
    runs = {run.name: run.output_dir for run in runner.study_runs(config)}

    def signal(shared):
        return lambda step: {
            "signal/mixed_groups": 0.5,
            "signal/shared_anchor_steps": shared * step,
            "signal/step_signal_steps": 0.1,
            "signal/step_against_episode_steps": 0.05,
        }

    write_metrics(runs["a/seed_0"], {0: 0.2, 2: 0.6, 4: 0.8}, signal=signal(0.1))  # 0.2, 0.4
    write_metrics(runs["a/seed_1"], {0: 0.2, 2: 0.4, 4: 0.6}, signal=signal(0.2))  # 0.4, 0.8
    write_metrics(runs["b/seed_0"], {0: 0.2, 2: 0.2, 4: 0.4})  # logged before the metric
    write_metrics(runs["b/seed_1"], {0: 0.2, 2: 0.4, 4: 0.6}, signal=signal(0.1))
    study_report.write_outputs(config)
    report = json.loads((tmp_path / "study" / "study.json").read_text())
    shared = report["arms"]["a"]["signal"]["signal/shared_anchor_steps"]
    assert shared["mean"] == pytest.approx((0.3 + 0.6) / 2) and shared["n"] == 2
    assert report["arms"]["a"]["runs"]["1"]["signal"]["signal/mixed_groups"] == 0.5
    assert report["arms"]["b"]["signal"] == {}  # not every seed has it
    table = (tmp_path / "study" / "study.md").read_text()
    assert "## Signal in the rollouts" in table and "| a | 0.500 [" in table
    assert "| b | 0.500" not in table


def test_signal_metrics_some_runs_did_not_log_are_shown_as_not_available(tmp_path):
    config = runner.load_study(study_file(tmp_path, seeds=[0]))
    runs = {run.name: run.output_dir for run in runner.study_runs(config)}
    older = {"signal/mixed_groups": 0.5}  # logged before the other metrics existed
    write_metrics(runs["a/seed_0"], {0: 0.2, 2: 0.6}, signal=lambda step: older)
    write_metrics(runs["b/seed_0"], {0: 0.2, 2: 0.4})
    study_report.write_outputs(config)
    table = (tmp_path / "study" / "study.md").read_text()
    assert "| a | 0.500 | n/a | n/a | n/a |" in table


def test_unfinished_runs_are_left_out_of_the_summary_and_named(tmp_path):
    config = runner.load_study(study_file(tmp_path, seeds=[0]))
    runs = {run.name: run.output_dir for run in runner.study_runs(config)}
    write_metrics(runs["a/seed_0"], {0: 0.2, 2: 0.6})
    write_metrics(runs["b/seed_0"], {0: 0.2}, finished=False)
    study_report.write_outputs(config)
    report = json.loads((tmp_path / "study" / "study.json").read_text())
    assert list(report["arms"]) == ["a"] and report["missing_runs"] == ["b/seed_0 (not finished)"]
    assert report["reference_success"] is None
    assert "Left out: b/seed_0 (not finished)" in (tmp_path / "study" / "study.md").read_text()


def test_a_failed_run_is_reported_and_the_others_still_run(tmp_path, monkeypatch, capsys):
    path = study_file(tmp_path, seeds=[0])
    config = runner.load_study(path)
    write_metrics(Path(config.output_dir) / "warmup", {0: 0.25})
    runs = runner.study_runs(config)

    def fake_command(_, run):
        if run.name == "a/seed_0":
            return [sys.executable, "-c", "import sys; sys.stderr.write('boom\\n'); sys.exit(3)"]
        return [sys.executable, "-c", f"open({str(run.output_dir / 'summary.json')!r}, 'w')"]

    monkeypatch.setattr(runner, "command", fake_command)
    assert study.main(["--config", str(path)]) == 1
    error = capsys.readouterr().err
    assert "1 run(s) failed:\nrun a/seed_0 failed (exit 3): " in error and "  | boom" in error
    assert [run.finished for run in runs] == [False, True]
    left_out = "Left out: a/seed_0 (not finished), b/seed_0 (no held-out evaluation)"
    assert left_out in (tmp_path / "study" / "study.md").read_text()


# The study file.


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"arms": {"a": ["seed=3"]}, "reference_arm": None}, "arms.a: 'seed=3' sets 'seed'"),
        ({"arms": {"a": ["eval_tasks.count=3"]}, "reference_arm": None}, "sets 'eval_tasks'"),
        ({"base_overrides": ["output_dir=x"]}, "base_overrides: 'output_dir=x' sets"),
        ({"reference_arm": "c"}, "reference_arm: 'c' is not allowed here"),
        ({"seeds": [1, 1]}, "seeds: [1, 1] is not allowed here"),
        ({"seeds": ["one"]}, "seeds[0]: expected int, got 'one'"),
        ({"arms": {"a": "advantage.gamma=1"}}, "arms.a: expected a list"),
        ({"procesess": 2}, "unknown config key 'procesess'"),
    ],
)
def test_a_bad_study_file_is_named(tmp_path, settings, message):
    with pytest.raises(ConfigError, match=None) as error:
        runner.load_study(study_file(tmp_path, **settings))
    assert message in str(error.value)


def test_a_run_config_that_does_not_validate_stops_the_study_before_any_run(tmp_path, capsys):
    path = study_file(tmp_path, arms={"a": ["advantage.gamma=2"]}, reference_arm=None)
    assert study.main(["--config", str(path)]) == 2
    assert "run a/seed_0: advantage.gamma: must be in (0, 1], got 2" in capsys.readouterr().err
    assert not (tmp_path / "study").exists()


def test_a_study_dir_refuses_changed_run_settings_but_takes_more_seeds(tmp_path):
    runner.claim_output_dir(runner.load_study(study_file(tmp_path)))
    runner.claim_output_dir(runner.load_study(study_file(tmp_path, seeds=[0, 1, 2])))
    changed = {"a": ["advantage.estimator=gigpo"], "b": ["advantage.estimator=grpo"]}
    with pytest.raises(ConfigError, match=r"arms\.a differ"):
        runner.claim_output_dir(runner.load_study(study_file(tmp_path, arms=changed)))


def test_a_study_dir_saved_before_keys_moved_takes_the_same_settings_in_todays_keys(tmp_path):
    """A study started when the held-out count was `eval.tasks` resumes under today's key."""
    older = {"base_overrides": ["eval.tasks=8"], "arms": {"a": ["rollout.task_seed=5"], "b": []}}
    runner.claim_output_dir(runner.load_study(study_file(tmp_path, **older)))
    today = {
        "base_overrides": ["eval_tasks.count=8"],
        "arms": {"a": ["train_tasks.seed=5"], "b": []},
    }
    runner.claim_output_dir(runner.load_study(study_file(tmp_path, **today)))
    other = {"base_overrides": ["eval_tasks.count=9"], "arms": today["arms"]}
    with pytest.raises(ConfigError, match="base_overrides differ"):
        runner.claim_output_dir(runner.load_study(study_file(tmp_path, **other)))


def finished_warmup(config, missing=(), moved=(), **changes):
    """A finished warm-up of `config` (its saved run config changed by `changes`, without the
    (block, key) pairs in `missing`, with the keys in `moved` (today's: older) at their older
    places, as a run of an older version saved it)."""
    warmup = runner.warmup_run(config)
    write_metrics(warmup.output_dir, {0: 0.25})
    saved = load_config(config.base_config, list(warmup.overrides)).to_dict()
    for block, values in changes.items():
        saved[block].update(values)
    for block, key in missing:
        del saved[block][key]
    for today, older in dict(moved).items():
        (block, key), (old_block, old_key) = today.split("."), older.split(".")
        saved.setdefault(old_block, {})[old_key] = saved[block].pop(key)
        if not saved[block]:
            del saved[block]
    (warmup.output_dir / "config.yaml").write_text(yaml.safe_dump(saved))
    return warmup.output_dir


def test_a_study_starts_from_another_studys_finished_warmup(tmp_path, monkeypatch):
    first = runner.load_study(study_file(tmp_path))
    # Saved before eval.top_p existed (its default is what that run had), and before the task
    # sets and the system prompt moved to their blocks of today.
    older_places = {
        "eval_tasks.count": "eval.tasks",
        "eval_tasks.seed": "eval.task_seed",
        "eval_tasks.kwargs": "eval.env_kwargs",
        "eval_tasks.task_index": "eval.task_index",
        "train_tasks.seed": "rollout.task_seed",
        "env.system_prompt": "model.system_prompt",
    }
    shared = finished_warmup(first, missing=[("eval", "top_p")], moved=older_places)
    path = study_file(
        tmp_path, output_dir=str(tmp_path / "second"), warmup_from=first.output_dir, seeds=[0]
    )
    started = []

    def fake_command(_, run):
        started.append(run.name)
        return [sys.executable, "-c", f"open({str(run.output_dir / 'summary.json')!r}, 'w')"]

    monkeypatch.setattr(runner, "command", fake_command)
    assert study.main(["--config", str(path)]) == 0
    assert started == ["a/seed_0", "b/seed_0"]  # no warm-up of its own
    second = runner.load_study(path)
    assert {runner.start_model(second)} == {str(shared / "warmup_model")}
    assert not (tmp_path / "second" / "warmup").exists()
    report = json.loads((tmp_path / "second" / "study.json").read_text())
    assert report["warmup"]["success"] == [0.25]


def test_a_shared_warmup_must_be_finished_and_have_the_same_shared_settings(tmp_path, capsys):
    first = runner.load_study(study_file(tmp_path))
    path = study_file(tmp_path, output_dir=str(tmp_path / "second"), warmup_from=first.output_dir)
    assert study.main(["--config", str(path)]) == 2
    assert "holds no finished warm-up; run the study with output_dir" in capsys.readouterr().err
    finished_warmup(first, eval_tasks={"count": 3})
    assert study.main(["--config", str(path)]) == 2
    assert "has other eval_tasks settings than this study's runs" in capsys.readouterr().err
    assert not (tmp_path / "second").exists()


def test_eval_final_tasks_must_cover_eval_tasks_and_not_overlap_training():
    assert load_config(CONFIG, ["eval_tasks.count=8", "eval.final_tasks=16"]).eval.final_tasks == 16
    with pytest.raises(ConfigError, match="eval.final_tasks must be >= eval_tasks.count"):
        load_config(CONFIG, ["eval_tasks.count=8", "eval.final_tasks=4"])
    with pytest.raises(ConfigError, match="overlap the training task seeds"):
        load_config(CONFIG, ["eval_tasks.seed=0", "train_tasks.seed=200", "eval.final_tasks=256"])


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.name)
def test_example_studies_validate_every_run(path, capsys):
    assert study.main(["--config", str(path), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    config = runner.load_study(path)
    assert len(lines) == 1 + sum(len(runner.seeds_of(config, arm)) for arm in config.arms)
    assert lines[0].startswith("warmup") and "train.steps=0" in lines[0]


def test_the_long_cpu_study_declares_its_primary_endpoint_and_power():
    config = runner.load_study(ROOT / "examples" / "studies" / "sokoban_cpu_long.yaml")
    assert (config.primary_arm, config.reference_arm) == ("rewardflow", "grpo")
    assert len(runner.seeds_of(config, "rewardflow")) == len(runner.seeds_of(config, "grpo")) == 10
    run = load_config(config.base_config, config.base_overrides)
    assert run.env.kwargs["generator"] == "verl-agent" and run.env.kwargs["max_steps"] == 15
    assert (run.eval.final_tasks, run.eval.temperature) == (1024, 0.4)
    assert run.advantage.invalid_action_penalty_mode == "reward"


def test_the_cpu_study_compares_the_four_estimators_over_five_seeds():
    config = runner.load_study(ROOT / "examples" / "studies" / "sokoban_cpu.yaml")
    assert sorted(config.arms) == ["gigpo", "grpo", "rewardflow", "rloo"]
    assert len(config.seeds) >= 5 and config.reference_arm == "grpo"
    run = load_config(config.base_config, config.base_overrides)
    # Every point of a curve on the same 256 tasks: the first 64 alone scored 0.25 against
    # 0.32 for all 256 after the warm-up, so mixed sets bend the curve's last point.
    assert run.eval_tasks.count >= 256 and run.eval.final_tasks in (None, run.eval_tasks.count)
    assert run.eval.greedy is False


# A tiny study end to end.


@pytest.mark.slow
def test_a_tiny_study_runs_once_and_a_stopped_one_finishes_only_what_is_missing(tmp_path):
    base = [*TINY, "log.plot=false", "eval_tasks.count=2", "eval.final_tasks=3"]
    path = study_file(tmp_path, base_overrides=base)
    command = [sys.executable, "-m", "rewardflow_train.study", "--config", str(path)]

    def run_study():
        result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=900)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    run_study()
    out = tmp_path / "study"
    runs = sorted((out / "runs").glob("*/seed_*"))
    assert [f"{r.parent.name}/{r.name}" for r in runs] == [
        "a/seed_0",
        "a/seed_1",
        "b/seed_0",
        "b/seed_1",
    ]
    model_paths = {yaml.safe_load((r / "config.yaml").read_text())["model"]["path"] for r in runs}
    assert model_paths == {str(out / "warmup" / "warmup_model")}
    warmup_evals = [json.loads(line) for line in (out / "warmup" / "metrics.jsonl").open()]
    assert [(r["step"], r.get("eval/episodes")) for r in warmup_evals] == [(1, None), (0, 3)]
    report = json.loads((out / "study.json").read_text())
    for arm in ("a", "b"):
        for seed in ("0", "1"):
            curve = report["curves"][arm][seed]
            assert curve["steps"] == [0, 1, 2] and curve["episodes"] == [2, 2, 3]
        assert report["arms"][arm]["curve"]["steps"] == [0, 1, 2]
        assert report["arms"][arm]["final_success"]["n"] == 2
    assert (out / "study.md").is_file() and (out / "study.png").is_file()

    # Stop the study as a kill would: one run lost its end, one never started.
    stamps = {r: (r / "metrics.jsonl").stat().st_mtime_ns for r in runs}
    warmup_stamp = (out / "warmup" / "metrics.jsonl").stat().st_mtime_ns
    killed, never_started = out / "runs" / "a" / "seed_1", out / "runs" / "b" / "seed_0"
    (killed / "summary.json").unlink()
    shutil.rmtree(killed / "checkpoints")
    shutil.rmtree(never_started)

    run_study()
    for run, stamp in stamps.items():
        rerun = run in (killed, never_started)
        assert ((run / "metrics.jsonl").stat().st_mtime_ns != stamp) == rerun, run
    assert (out / "warmup" / "metrics.jsonl").stat().st_mtime_ns == warmup_stamp
    # The killed run started over from nothing: its history holds each step once.
    evals = [json.loads(line) for line in (killed / "metrics.jsonl").open()]
    assert [r["step"] for r in evals if r["kind"] == "eval"] == [0, 1, 2]
    assert len(json.loads((out / "study.json").read_text())["arms"]["b"]["seeds"]) == 2


@pytest.mark.parametrize("ignores_sigterm", [False, True])
def test_a_stopped_study_asks_its_run_to_save_then_kills_it(monkeypatch, ignores_sigterm):
    import time

    handler = "signal.SIG_IGN" if ignores_sigterm else "lambda *_: sys.exit(143)"
    script = f"import signal, sys, time; signal.signal(signal.SIGTERM, {handler}); time.sleep(60)"
    process = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    time.sleep(1.0)  # the handler is installed
    monkeypatch.setattr(runner, "STOP_WAIT_S", 2)
    started = time.monotonic()
    runner.stop_run(process)
    assert process.returncode == (-9 if ignores_sigterm else 143)
    assert time.monotonic() - started < 10


def git(cwd, *args):
    return subprocess.run(
        ["git", "-C", str(cwd), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_a_run_records_the_commit_of_its_own_checkout_and_nothing_from_another(tmp_path):
    checkout = tmp_path / "checkout"
    (checkout / "pkg").mkdir(parents=True)
    (checkout / "pkg" / "code.py").write_text("A = 1\n")
    git(checkout, "init", "-q")
    git(checkout, "add", ".")
    git(checkout, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    head = git(checkout, "rev-parse", "HEAD")
    assert metrics._git_commit(checkout.resolve()) == head
    (checkout / "pkg" / "code.py").write_text("A = 2\n")
    assert metrics._git_commit(checkout.resolve()) == head + "+dirty"
    # A package installed in a folder of some other repository (a venv inside a checkout).
    assert metrics._git_commit((checkout / "pkg").resolve()) is None
    assert metrics._git_commit(tmp_path.resolve()) is None  # no repository at all
