"""A study's runs: the study file, the (arm, seed) runs it asks for, and running them.

A study runs the base run config once with ``train.steps=0`` (the warm-up and its held-out
evaluation), then every (arm, seed) as its own training run started from that model, into
``OUTPUT_DIR/runs/ARM/seed_S/``. Rerunning continues a study that was stopped: finished runs
(``summary.json`` written) are skipped, unfinished ones resume from their last checkpoint.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field, model_validator

from rewardflow_train.config import (
    Block,
    ConfigError,
    load_config,
    load_saved_config,
    parse_config,
    parse_override,
    with_moved_keys,
)
from rewardflow_train.runtime.distributed import free_port

MAIN = Path(__file__).parent.parent / "main.py"

# Set by the study for every run; the same for every arm, so all arms start from one model
# and are evaluated on the same held-out tasks.
STUDY_KEYS = ("output_dir", "seed", "resume")
SHARED_BLOCKS = ("env", "model", "warmup", "eval", "eval_tasks")


@dataclass(frozen=True)
class Run:
    name: str
    output_dir: Path
    overrides: tuple[str, ...]

    @property
    def finished(self) -> bool:
        return is_finished(self.output_dir)


def is_finished(output_dir: Path) -> bool:
    """The trainer writes summary.json when a run has done its last step."""
    return (output_dir / "summary.json").is_file()


# Configuration and plan -------------------------------------------------------------------


# What each checked key of a study file allows.
_RULES = {
    "arms": "at least one arm",
    "seeds": "at least one seed, none twice",
    "processes": "at least 1",
    "reference_arm": "the name of an arm, or null",
    "primary_arm": "the name of an arm other than reference_arm, or null; needs reference_arm",
    "arm_seeds": "arm names of this study, each with at least one seed, none twice",
}


class StudyConfig(Block):
    base_config: str = Field(
        description="the run config of every run (paths are relative to where you run the command)"
    )
    base_overrides: list[str] = Field(
        default_factory=list,
        description="`key=value` overrides for every run (the run's size: steps, evaluation)",
    )
    arms: dict[str, list[str]] = Field(
        description="arm name -> list of `key=value` overrides (e.g. `advantage.estimator=grpo`)"
    )
    seeds: list[int] = Field(description="seeds of every arm")
    arm_seeds: dict[str, list[int]] = Field(
        default_factory=dict,
        description="arm name -> its own seeds, for arms that run other (say, fewer) seeds than "
        "`seeds`",
    )
    processes: int = Field(
        1, description="processes per run; > 1 starts each run with `deepspeed --num_gpus N`"
    )
    environment: dict[str, str] = Field(
        default_factory=dict,
        description="environment variables of every run, e.g. `{DS_ACCELERATOR: cpu}`",
    )
    reference_arm: str | None = Field(
        None, description="the arm against which every other arm's difference is reported"
    )
    primary_arm: str | None = Field(
        None,
        description="the arm whose final-success difference against `reference_arm` is the "
        "study's primary endpoint, declared before the study runs",
    )
    warmup_from: str | None = Field(
        None,
        description="another study's `output_dir`: start every run from that study's finished "
        "warm-up instead of running one (its `env`, `model`, `warmup` and `eval` settings must "
        "be this study's), so that two studies start from the same model",
    )
    output_dir: str = Field(description="the study's directory")

    @model_validator(mode="after")
    def _check_arms_and_seeds(self) -> StudyConfig:
        checks = {
            "arms": bool(self.arms),
            "seeds": bool(self.seeds) and len(set(self.seeds)) == len(self.seeds),
            "processes": self.processes >= 1,
            "reference_arm": self.reference_arm in (None, *self.arms),
            "primary_arm": self.primary_arm is None
            or (
                self.primary_arm in self.arms and self.reference_arm not in (None, self.primary_arm)
            ),
            "arm_seeds": all(
                arm in self.arms and seeds and len(set(seeds)) == len(seeds)
                for arm, seeds in self.arm_seeds.items()
            ),
        }
        for key, ok in checks.items():
            if not ok:
                raise ConfigError(
                    f"{key}: {getattr(self, key)!r} is not allowed here ({_RULES[key]})"
                )
        _check_override_keys("base_overrides", self.base_overrides, STUDY_KEYS)
        for arm, overrides in self.arms.items():
            _check_override_keys(f"arms.{arm}", overrides, STUDY_KEYS + SHARED_BLOCKS)
        return self


def load_study(path: str | Path, overrides: list[str] = ()) -> StudyConfig:
    return parse_config(StudyConfig, path, overrides)


def _check_override_keys(where: str, overrides: list[str], reserved: tuple[str, ...]) -> None:
    for text in overrides:
        path, _ = parse_override(text)
        if path[0] in reserved:
            raise ConfigError(
                f"{where}: {text!r} sets {path[0]!r}; {', '.join(reserved)} are not set here "
                "(the study sets them itself or keeps them the same for every run)"
            )


def warmup_run(study: StudyConfig) -> Run:
    out = Path(study.warmup_from or study.output_dir) / "warmup"
    fixed = [f"output_dir={out}", "train.steps=0", "resume=true", "log.progress_bar=false"]
    return Run("warmup", out, (*study.base_overrides, *fixed))


def start_model(study: StudyConfig) -> str:
    """The model every run starts from: the warm-up's, else the model the warm-up run built
    or was given."""
    base = load_config(study.base_config, study.base_overrides)
    warmup_dir = warmup_run(study).output_dir
    if base.warmup.enabled:
        return str(warmup_dir / "warmup_model")
    if base.model.tiny is not None:
        return str(warmup_dir / "tiny_model")
    return base.model.path


def seeds_of(study: StudyConfig, arm: str) -> list[int]:
    return study.arm_seeds.get(arm, study.seeds)


def run_dir(study: StudyConfig, arm: str, seed: int) -> Path:
    return Path(study.output_dir) / "runs" / arm / f"seed_{seed}"


def study_runs(study: StudyConfig) -> list[Run]:
    model = start_model(study)
    runs = []
    # Seed by seed across the arms, so that a study stopped halfway has compared the arms on
    # the same seeds.
    rounds = max(len(seeds_of(study, arm)) for arm in study.arms)
    order = [
        (arm, seeds_of(study, arm)[i])
        for i in range(rounds)
        for arm in study.arms
        if i < len(seeds_of(study, arm))
    ]
    for arm, seed in order:
        out = run_dir(study, arm, seed)
        fixed = [
            f"output_dir={out}",
            f"seed={seed}",
            "resume=true",
            "warmup.enabled=false",
            "model.tiny=null",
            f"model.path={model}",
            "log.progress_bar=false",
        ]
        overrides = (*study.base_overrides, *study.arms[arm], *fixed)
        runs.append(Run(f"{arm}/seed_{seed}", out, overrides))
    return runs


def check_run_configs(study: StudyConfig, runs: list[Run]) -> None:
    """Every run's config validates now, before hours are spent on the first ones."""
    for run in [warmup_run(study), *runs]:
        try:
            load_config(study.base_config, list(run.overrides))
        except ConfigError as error:
            raise ConfigError(f"run {run.name}: {error}") from None


def check_shared_warmup(study: StudyConfig) -> None:
    """A warm-up taken from another study must be finished, with this study's shared blocks."""
    if study.warmup_from is None:
        return
    warmup = warmup_run(study)
    if not warmup.finished:
        raise ConfigError(
            f"warmup_from: {str(warmup.output_dir)!r} holds no finished warm-up; run the study "
            f"with output_dir {study.warmup_from!r} first"
        )
    # Both read by today's loader, so that keys added since (with defaults) compare equal.
    saved = load_saved_config(warmup.output_dir / "config.yaml").to_dict()
    mine = load_config(study.base_config, list(warmup.overrides)).to_dict()
    differ = [block for block in SHARED_BLOCKS if saved.get(block) != mine[block]]
    if differ:
        raise ConfigError(
            f"warmup_from: the warm-up in {str(warmup.output_dir)!r} has other "
            f"{', '.join(differ)} settings than this study's runs"
        )


def claim_output_dir(study: StudyConfig) -> None:
    """A study directory holds one study: its runs' settings may not change (seeds and arms
    may be added)."""
    saved_path = Path(study.output_dir) / "study.yaml"
    current = study.model_dump()
    if saved_path.is_file():
        import yaml

        saved = yaml.safe_load(saved_path.read_text())
        # Overrides saved before a key moved compare as today's keys write them.
        saved["base_overrides"] = with_moved_keys(saved.get("base_overrides", []))
        saved["arms"] = {arm: with_moved_keys(o) for arm, o in saved.get("arms", {}).items()}
        changed = [
            key
            for key in ("base_config", "base_overrides", "processes", "warmup_from")
            if saved.get(key) != current[key]
        ]
        changed += [
            f"arms.{arm}"
            for arm, overrides in current["arms"].items()
            if arm in saved.get("arms", {}) and saved["arms"][arm] != overrides
        ]
        if changed:
            raise ConfigError(
                f"output_dir {study.output_dir!r} holds a study with other settings "
                f"({', '.join(changed)} differ from {saved_path}); choose another output_dir"
            )
    saved_path.parent.mkdir(parents=True, exist_ok=True)
    import yaml

    saved_path.write_text(yaml.safe_dump(current, sort_keys=False))


# Running ----------------------------------------------------------------------------------


def command(study: StudyConfig, run: Run) -> list[str]:
    script = [str(MAIN), "--config", study.base_config, *run.overrides]
    if study.processes == 1:
        return [sys.executable, *script]
    launcher = shutil.which("deepspeed", path=str(Path(sys.executable).parent))
    launcher = launcher or shutil.which("deepspeed")
    if launcher is None:
        raise ConfigError("processes > 1 needs the deepspeed launcher on PATH")
    port = ["--master_port", str(free_port())]
    return [launcher, "--num_gpus", str(study.processes), *port, *script]


def execute(study: StudyConfig, run: Run) -> str | None:
    """Run to the end; None, or what went wrong (the command and the end of its stderr)."""
    run.output_dir.mkdir(parents=True, exist_ok=True)
    argv = command(study, run)
    stderr_path = run.output_dir / "stderr.log"
    environment = {**os.environ, **study.environment}
    with open(run.output_dir / "stdout.log", "a") as out, open(stderr_path, "a") as err:
        # Its own process group, so that stopping the study stops the run and every process
        # the launcher started (a run left behind would hold its output_dir's lock).
        process = subprocess.Popen(
            argv, stdout=out, stderr=err, env=environment, start_new_session=True
        )
        try:
            code = process.wait()
        except BaseException:
            stop_run(process)
            raise
    if code == 0 and run.finished:
        return None
    tail = stderr_path.read_text(errors="replace").splitlines()[-20:]
    return f"run {run.name} failed (exit {code}): {shlex.join(argv)}\n" + "\n".join(
        f"  | {line}" for line in tail
    )


# How long a run stopped with SIGTERM may take to save its step and end before it is killed:
# the trainer's default train.stop_grace_s (20 s) and a checkpoint of a small model.
STOP_WAIT_S = 60


def stop_run(process: subprocess.Popen) -> None:
    """SIGTERM to the run's process group, so that it saves a checkpoint of the step it is in;
    SIGKILL if it has not ended within STOP_WAIT_S."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_WAIT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def run_study(study: StudyConfig, runs: list[Run]) -> list[str]:
    """The warm-up once, then every unfinished run; returns the failures."""
    from tqdm import tqdm

    warmup = warmup_run(study)
    if not warmup.finished:
        print(f"warm-up: {warmup.output_dir}", flush=True)
        failure = execute(study, warmup)
        if failure:
            return [failure]
    failures = []
    todo = [run for run in runs if not run.finished]
    bar = tqdm(total=len(runs), initial=len(runs) - len(todo), desc="study", unit="run")
    for run in todo:
        bar.set_postfix_str(run.name)
        failure = execute(study, run)
        if failure:
            failures.append(failure)
            bar.write(failure)
        bar.update(1)
    bar.close()
    return failures
