"""A study's report: each finished run's curves from its metrics, the per-arm summary with its
intervals and differences, and the outputs ``study.json``, ``study.md`` and ``study.png``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rewardflow_train.advantage import SIGNAL_COUNTS, signal_rates
from rewardflow_train.experiments.runner import (
    StudyConfig,
    is_finished,
    run_dir,
    seeds_of,
    warmup_run,
)
from rewardflow_train.experiments.statistics import (
    area_under_curve,
    difference_interval,
    mean_interval,
)
from rewardflow_train.runtime.metrics import read_metrics

# What the trainer logs about the advantage signal in each step's rollouts (fractions of groups
# or steps; see rewardflow_train.advantage.signal_counts): the keys signal_rates returns.
SIGNAL_KEYS = tuple(signal_rates(dict.fromkeys(SIGNAL_COUNTS, 0.0)))


def read_run(output_dir: Path) -> dict:
    """A run's held-out success curve, training success per step and compute time, from its
    metrics.jsonl (the last record of a step counts), and the code it ran (summary.json's
    ``code``; None before runs recorded it). time = seconds in RL steps and evaluations;
    `signal`: the mean over RL steps of each SIGNAL_KEYS metric (when every step logged it)."""
    records = read_metrics(output_dir)
    evals = {r["step"]: r for r in records if r["kind"] == "eval"}
    steps = sorted(evals)
    seconds = sum(r.get("time/step", 0.0) + r.get("time/eval", 0.0) for r in records)
    trains = {r["step"]: r for r in records if r["kind"] == "train"}
    train_steps = sorted(s for s, r in trains.items() if "train/success" in r)
    signal = {
        name: float(np.mean([r[name] for r in trains.values()]))
        for name in SIGNAL_KEYS
        if trains and all(name in r for r in trains.values())
    }
    return {
        "steps": steps,
        "success": [evals[s]["eval/success"] for s in steps],
        "episodes": [evals[s]["eval/episodes"] for s in steps],
        "train_steps": train_steps,
        "train_success": [trains[s]["train/success"] for s in train_steps],
        "wall_time_s": round(seconds, 1),
        "signal": signal,
        "code": recorded_code(output_dir),
    }


def recorded_code(output_dir: Path) -> dict | None:
    """summary.json's record of the code that finished the run (None in older runs)."""
    try:
        return json.loads((output_dir / "summary.json").read_text()).get("code")
    except (OSError, ValueError):
        return None


def summarize(
    curves: dict[str, dict[int, dict]], reference_arm: str | None, primary_arm: str | None = None
) -> dict:
    """Per run and per arm: final success, area under the curve, wall time; each arm's mean
    curve with its 95% interval; each arm's differences from the reference arm (final success
    and area under the curve, see `difference_interval`; training success paired by seed and
    step, see `paired_training_success`). `curves`: arm -> seed -> read_run() of each finished
    run."""
    runs = {
        arm: {
            seed: {
                "final_success": run["success"][-1],
                "auc": area_under_curve(run["steps"], run["success"]),
                "wall_time_s": run["wall_time_s"],
                "signal": run["signal"],
            }
            for seed, run in seeds.items()
        }
        for arm, seeds in curves.items()
        if seeds
    }
    arms = {arm: _arm_summary(curves[arm], runs[arm]) for arm in runs}
    if reference_arm in arms:
        for arm, summary in arms.items():
            if arm == reference_arm:
                continue
            summary["against_reference"] = {
                metric: difference_interval(
                    {seed: r[metric] for seed, r in runs[arm].items()},
                    {seed: r[metric] for seed, r in runs[reference_arm].items()},
                )
                for metric in ("final_success", "auc")
            }
            summary["against_reference"]["train_success"] = paired_training_success(
                curves[arm], curves[reference_arm]
            )
    primary = None
    if primary_arm in arms and "against_reference" in arms[primary_arm]:
        primary = {
            "arm": primary_arm,
            "against": reference_arm,
            "metric": "final_success",
            **arms[primary_arm]["against_reference"]["final_success"],
        }
    return {
        "reference_arm": reference_arm,
        "reference_success": (
            arms[reference_arm]["final_success"]["mean"] if reference_arm in arms else None
        ),
        "primary_endpoint": primary,
        "arms": arms,
    }


def paired_training_success(arm: dict[int, dict], reference: dict[int, dict]) -> dict | None:
    """Training success of `arm` minus `reference` (seed -> read_run()), paired by seed and RL
    step: every run plays the same tasks at a step (from train_tasks), so the difference
    at a step is free of task difficulty. Each seed's mean difference over the steps both runs
    logged, then the mean over seeds with its 95% t-interval; None without a shared seed."""
    per_seed = {}
    for seed in sorted(arm.keys() & reference.keys()):
        ours = dict(zip(arm[seed]["train_steps"], arm[seed]["train_success"], strict=True))
        theirs = dict(
            zip(reference[seed]["train_steps"], reference[seed]["train_success"], strict=True)
        )
        steps = sorted(ours.keys() & theirs.keys())
        if steps:
            per_seed[seed] = float(np.mean([ours[s] - theirs[s] for s in steps]))
    if not per_seed:
        return None
    return {**mean_interval(list(per_seed.values())), "seeds": sorted(per_seed)}


def _arm_summary(curves: dict[int, dict], runs: dict[int, dict]) -> dict:
    steps = sorted(set.intersection(*(set(c["steps"]) for c in curves.values())))
    points = [
        mean_interval([c["success"][c["steps"].index(s)] for c in curves.values()]) for s in steps
    ]
    return {
        "seeds": sorted(runs),
        "curve": {
            "steps": steps,
            "mean": [p["mean"] for p in points],
            "low": [p["low"] for p in points],
            "high": [p["high"] for p in points],
        },
        "final_success": mean_interval([r["final_success"] for r in runs.values()]),
        "auc": mean_interval([r["auc"] for r in runs.values()]),
        "wall_time_s": mean_interval([r["wall_time_s"] for r in runs.values()]),
        "signal": {
            name: mean_interval([r["signal"][name] for r in runs.values()])
            for name in SIGNAL_KEYS
            if all(name in r["signal"] for r in runs.values())
        },
        "runs": runs,
    }


def collect(study: StudyConfig) -> dict:
    """Every finished run's curve (arm -> seed -> curve), and the runs left out, with why."""
    curves = {arm: {} for arm in study.arms}
    missing = []
    for arm in study.arms:
        for seed in seeds_of(study, arm):
            out = run_dir(study, arm, seed)
            run = read_run(out) if is_finished(out) else None
            if run and run["steps"]:
                curves[arm][seed] = run
            else:
                why = "no held-out evaluation" if run else "not finished"
                missing.append(f"{arm}/seed_{seed} ({why})")
    return {"curves": curves, "missing": missing}


def write_outputs(study: StudyConfig) -> Path:
    from rewardflow_train.plot import plot_study

    out = Path(study.output_dir)
    found = collect(study)
    summary = summarize(found["curves"], study.reference_arm, study.primary_arm)
    warmup = warmup_run(study)
    report = {
        "study": study.model_dump(),
        "warmup": read_run(warmup.output_dir) if warmup.finished else None,
        "curves": found["curves"],
        "missing_runs": found["missing"],
        **summary,
    }
    (out / "study.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "study.md").write_text(markdown(report))
    if summary["arms"]:
        plot_study(summary["arms"], out / "study.png", title=out.name)
    return out / "study.md"


def _interval(stats: dict, digits: int) -> str:
    text = f"{stats['mean']:.{digits}f}"
    if stats["low"] is None:
        return text
    return f"{text} [{stats['low']:.{digits}f}, {stats['high']:.{digits}f}]"


def _difference(stats: dict) -> str:
    text = f"{stats['difference']:+.3f}"
    if stats["low"] is None:
        return text
    return f"{text} [{stats['low']:+.3f}, {stats['high']:+.3f}]"


def _paired(stats: dict) -> str:
    paired = stats.get("paired")
    if paired is None or paired["low"] is None:
        return "n/a"
    correlation = paired["correlation"]
    r = "n/a" if correlation is None else f"{correlation:.2f}"
    return (
        f"{paired['mean']:+.3f} [{paired['low']:+.3f}, {paired['high']:+.3f}] "
        f"({len(paired['seeds'])} pairs, r = {r})"
    )


def _paired_training(stats: dict | None) -> str:
    if stats is None or stats["low"] is None:
        return "n/a"
    return f"{stats['mean']:+.3f} [{stats['low']:+.3f}, {stats['high']:+.3f}] ({stats['n']} seeds)"


def _differences(report: dict) -> list[str]:
    """The differences against the reference arm, the primary endpoint first."""
    reference = report["reference_arm"]
    rows = [
        f"| {arm} | {_difference(s['against_reference']['final_success'])} | "
        f"{_paired(s['against_reference']['final_success'])} | "
        f"{_difference(s['against_reference']['auc'])} | "
        f"{_paired_training(s['against_reference']['train_success'])} |"
        for arm, s in report["arms"].items()
        if "against_reference" in s
    ]
    if not rows:
        return []
    lines = [f"## Against {reference}", ""]
    primary = report.get("primary_endpoint")
    if primary:
        lines += [
            f"Primary endpoint, declared in the study file: final success of {primary['arm']} "
            f"minus {primary['against']}, {_difference(primary)} (difference of the means, "
            "Welch 95% interval).",
            "",
        ]
    return lines + [
        "Difference of the means [Welch 95% t-interval]: the runs of two arms are independent "
        "samples. Paired by seed: mean difference over the seeds both arms ran [95% "
        "t-interval] and the correlation of the pairs (runs of a seed share the sampling seed, "
        "not their samples: a nominal pairing). Training success, paired by seed and step: "
        "every run plays the same tasks at a step; each seed's mean difference over the steps, "
        "then the mean over seeds [95% t-interval].",
        "",
        "| arm | final success | final success, paired by seed | area under curve "
        "| training success, paired by seed and step |",
        "|---|---|---|---|---|",
        *rows,
        "",
    ]


def markdown(report: dict) -> str:
    header = (
        "| arm | seeds | final success | area under curve | wall time (s) |\n"
        "|---|---|---|---|---|\n"
    )
    arm_rows = [
        f"| {arm} | {len(s['seeds'])} | {_interval(s['final_success'], 3)} | "
        f"{_interval(s['auc'], 3)} | {_interval(s['wall_time_s'], 0)} |"
        for arm, s in report["arms"].items()
    ]
    run_rows = [
        f"| {arm} | {seed} | {r['final_success']:.3f} | {r['auc']:.3f} | {r['wall_time_s']:.0f} |"
        for arm, s in report["arms"].items()
        for seed, r in s["runs"].items()
    ]
    lines = [f"# Study {Path(report['study']['output_dir']).name}", ""]
    warmup = report["warmup"]
    if warmup and warmup["steps"]:
        lines += [
            f"Held-out success after the shared warm-up: {warmup['success'][0]:.3f} "
            f"({warmup['episodes'][0]:.0f} tasks).",
            "",
        ]
    lines += [
        "Mean over seeds [95% t-interval]. Final success: held-out success after the last "
        "step. Area under curve: held-out success averaged over RL steps (trapezoid). Wall "
        "time: seconds in RL steps and evaluations.",
        "",
        header + "\n".join(arm_rows),
        "",
        *_differences(report),
        "## Runs",
        "",
        header.replace("| arm | seeds |", "| arm | seed |") + "\n".join(run_rows),
        "",
    ]
    signal_rows = [
        f"| {arm} | "
        + " | ".join(
            _interval(s["signal"][name], 3) if name in s["signal"] else "n/a"
            for name in SIGNAL_KEYS
        )
        + " |"
        for arm, s in report["arms"].items()
        if s["signal"]
    ]
    if signal_rows:
        lines += [
            "## Signal in the rollouts",
            "",
            "Mean over RL steps, then over seeds. Mixed groups: groups whose episode returns "
            "differ (else the episode term is 0). Shared-anchor steps: steps taken from a state "
            "another step of the group was also taken from (a step term compares only those). "
            "Step-signal steps: steps whose RewardFlow step term is not 0. Against episode: "
            "steps whose step term has another sign than their episode term. n/a: not logged "
            "by every run of the arm.",
            "",
            "| arm | mixed groups | shared-anchor steps | step-signal steps | against episode |",
            "|---|---|---|---|---|",
            *signal_rows,
            "",
        ]
    if report["missing_runs"]:
        lines += [f"Left out: {', '.join(report['missing_runs'])}", ""]
    return "\n".join(lines + _code_lines(report["curves"]))


def _code_lines(curves: dict[str, dict[int, dict]]) -> list[str]:
    """Which code commit ran which runs (summary.json's record)."""
    runs_by_commit: dict[str, list[str]] = {}
    for arm, seeds in curves.items():
        for seed, run in seeds.items():
            commit = (run.get("code") or {}).get("commit") or "not recorded"
            runs_by_commit.setdefault(commit, []).append(f"{arm}/seed_{seed}")
    if not runs_by_commit:
        return []
    if len(runs_by_commit) == 1:
        return [f"Code: {next(iter(runs_by_commit))} (every run).", ""]
    return [
        "Code: " + "; ".join(f"{c}: {', '.join(r)}" for c, r in runs_by_commit.items()) + ".",
        "",
    ]
