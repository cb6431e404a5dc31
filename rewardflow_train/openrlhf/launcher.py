"""Run OpenRLHF's own ``train_ppo_ray`` on an RF env, with per-turn RewardFlow advantages.

    python -m rewardflow_train.openrlhf --config CONFIG [key=value ...] [--openrlhf.flag value ...]

The config's ``env``, ``train_tasks`` and ``eval_tasks`` blocks become OpenRLHF prompt datasets
(one row per task, the task in the label; see `episodes`), ``advantage`` picks the rewardflow
estimator and its settings (the ``env`` and ``advantage`` blocks are ``rewardflow train``'s, with
its checks), and ``openrlhf`` holds ``train_ppo_ray`` flags without their leading ``--``.
``key=value`` arguments override the config; ``--flags`` go to OpenRLHF as typed and win over the
config's ``openrlhf`` block. ``--algo.advantage.estimator`` may name one of OpenRLHF's own
estimators instead of ours (then the ``advantage`` block must be left at its defaults); one of
ours is chosen with ``advantage.estimator``. See docs/openrlhf.md.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from rewardflow_envs.extras import MissingExtraError
from rewardflow_envs.flow import ESTIMATORS
from rewardflow_train.config import (
    AdvantageConfig,
    Block,
    ConfigError,
    EnvConfig,
    HeldOutTasksConfig,
    TaskSetConfig,
    check_advantage,
    check_held_out_tasks,
    parse_config,
    refuse_settings,
)
from rewardflow_train.env_check import EnvUse, check_env_uses, task_set_use
from rewardflow_train.openrlhf.attention import attention_flags, flash_attn_installed
from rewardflow_train.openrlhf.episodes import EpisodeSpec, task_rows

SETUP_HOOK = "rewardflow_train.openrlhf.patch.install"
# The file OpenRLHF loads the agent executor from (not imported here: it needs OpenRLHF).
AGENT_FILE = Path(__file__).with_name("agent.py")


class DatasetTasks(TaskSetConfig):
    count: int = Field(
        256, ge=1, description="tasks in OpenRLHF's prompt dataset (each of its episodes plays all)"
    )


class HeldOutDatasetTasks(HeldOutTasksConfig):
    count: int = Field(0, ge=0, description="held-out tasks (0: no evaluation)")


class LaunchConfig(Block):
    output_dir: str = Field("runs/openrlhf", description="where everything of the run goes")
    env: EnvConfig = Field(default_factory=EnvConfig, description=EnvConfig.__doc__)
    train_tasks: DatasetTasks = Field(
        default_factory=DatasetTasks, description="the training tasks"
    )
    eval_tasks: HeldOutDatasetTasks = Field(
        default_factory=HeldOutDatasetTasks, description="the held-out tasks"
    )
    advantage: AdvantageConfig = Field(
        default_factory=AdvantageConfig, description="per-turn advantages (our estimators)"
    )
    openrlhf: dict = Field(
        default_factory=dict, description="train_ppo_ray flags without their leading --"
    )

    @model_validator(mode="after")
    def _check_across_blocks(self) -> LaunchConfig:
        refuse_settings(
            self.env,
            "env",
            ["workers", "worker_timeout"],
            "the OpenRLHF backend plays each episode in its agent executor, not in GroupEnv "
            "workers; leave it to rewardflow train",
        )
        check_held_out_tasks(
            self.train_tasks.task_set(self.env, self.train_tasks.count),
            self.eval_tasks.task_set(self.env, self.eval_tasks.count),
        )
        return self


@dataclass
class Plan:
    """What to run: OpenRLHF's argv, and our estimator with its settings (None: one of
    OpenRLHF's), set on OpenRLHF's args after parsing: its parser refuses our names, but rloo it
    takes for its own."""

    argv: list[str]
    advantage: AdvantageConfig | None
    task_files: dict[str, list[dict[str, str]]]
    env: EnvConfig
    # The env kwargs the task files play, built once before Ray starts.
    env_uses: list[EnvUse]
    # Flags changed from the config's, to tell the user (flash-attn missing).
    changes: list[str] = field(default_factory=list)


def _is_override(token: str) -> bool:
    """``advantage.step_weight=0.5``: a key=value whose first part names a config block."""
    key, sep, _ = token.partition("=")
    return bool(sep) and key.split(".")[0] in LaunchConfig.model_fields


def _starts_argument(token: str) -> bool:
    return token.startswith("--") or _is_override(token)


def split_arguments(argv: list[str]) -> tuple[str | None, list[str], dict[str, Any], bool]:
    """(config path, key=value overrides, OpenRLHF flags, dry run) from the command line."""
    config, overrides, flags, dry_run = None, [], {}, False
    index = 0
    while index < len(argv):
        token = argv[index]
        if token == "--config":
            if index + 1 >= len(argv):
                raise ConfigError("--config needs a path")
            config, index = argv[index + 1], index + 2
        elif token == "--dry-run":
            dry_run, index = True, index + 1
        elif token.startswith("--"):
            name, _, inline = token[2:].partition("=")
            values = [inline] if inline else []
            index += 1
            while not inline and index < len(argv) and not _starts_argument(argv[index]):
                values.append(argv[index])
                index += 1
            flags[name] = True if not values else values[0] if len(values) == 1 else values
        elif _is_override(token):
            overrides.append(token)
            index += 1
        else:
            raise ConfigError(
                f"unexpected argument {token!r}: give key=value overrides or --openrlhf.flags"
            )
    return config, overrides, flags, dry_run


def _dotted(block: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"actor": {"eps_clip": 0.2}}`` and ``{"actor.eps_clip": 0.2}`` both as the latter."""
    flat = {}
    for key, value in block.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_dotted(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _flag_tokens(flags: dict[str, Any]) -> list[str]:
    tokens = []
    for name, value in flags.items():
        if value is False or value is None:
            continue
        tokens.append(f"--{name}")
        if value is not True:
            tokens += [str(v) for v in value] if isinstance(value, list) else [str(value)]
    return tokens


def _tasks(env: EnvConfig, tasks: DatasetTasks | HeldOutDatasetTasks) -> list[EpisodeSpec]:
    task_set = tasks.task_set(env, tasks.count)
    return [
        EpisodeSpec(
            env=None if env.factory else env.id,
            factory=env.factory,
            kwargs=task_set.kwargs,
            seed=seed,
            task=seed if tasks.task_index else None,
            state_key=env.state_key,
            system_prompt=env.system_prompt,
            max_turns=env.max_turns,
        )
        for seed in task_set.seeds
    ]


def _number(flags: dict[str, Any], name: str, default: float) -> float:
    value = flags.get(name, default)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"--{name} takes a number, got {value!r}") from None


def _advantage(config: LaunchConfig, flags: dict[str, Any]) -> AdvantageConfig | None:
    """The config's advantage block, or None where --algo.advantage.estimator names one of
    OpenRLHF's own estimators (which stays among the flags)."""
    flag = flags.get("algo.advantage.estimator")
    advantage = config.advantage
    if flag is None or flag == advantage.estimator:
        flags.pop("algo.advantage.estimator", None)
        return advantage
    if flag in ESTIMATORS:
        raise ConfigError(
            f"--algo.advantage.estimator {flag} disagrees with advantage.estimator "
            f"{advantage.estimator}: rewardflow's estimators are chosen by advantage.estimator "
            f"(set advantage.estimator={flag})"
        )
    if advantage != AdvantageConfig():
        raise ConfigError(
            f"advantage: --algo.advantage.estimator {flag} is OpenRLHF's own and does not read "
            "the advantage block; leave it at its defaults, or choose one of ours with "
            "advantage.estimator"
        )
    return None


def _check_flags(flags: dict[str, Any], advantage: AdvantageConfig | None) -> None:
    """The settings that depend on OpenRLHF's flags."""
    if advantage is None:
        return
    group_size = _number(flags, "rollout.n_samples_per_prompt", 1)
    check_advantage(advantage, int(group_size), "--rollout.n_samples_per_prompt")
    if _number(flags, "algo.kl.init_coef", 0.01) > 0 and not flags.get("algo.kl.use_loss"):
        raise ConfigError(
            f"advantage.estimator {advantage.estimator} takes KL as a loss term, not in the "
            "reward: add --algo.kl.use_loss (or set --algo.kl.init_coef 0)"
        )


def _env_use(config: LaunchConfig, name: str) -> EnvUse:
    tasks = getattr(config, name)
    bounds = f"{name}.count or {name}.seed"
    return task_set_use(name, tasks, config.env, tasks.count, bounds)


def plan(argv: list[str], flash_attn: bool | None = None) -> tuple[Plan, bool]:
    """The run `argv` asks for, and whether it is a dry run. `flash_attn`: whether flash-attn
    is installed (default: look)."""
    config_path, overrides, cli_flags, dry_run = split_arguments(argv)
    config = parse_config(LaunchConfig, config_path, overrides)
    flags = {**_dotted(config.openrlhf), **cli_flags}
    advantage = _advantage(config, flags)
    _check_flags(flags, advantage)
    changes = attention_flags(flags, flash_attn_installed() if flash_attn is None else flash_attn)

    output = Path(config.output_dir)
    flags.setdefault("ckpt.output_dir", str(output / "model"))
    flags.setdefault("ckpt.path", str(output / "checkpoints"))
    flags.setdefault("train.agent_func_path", str(AGENT_FILE))
    task_files, env_uses = {}, []
    if "data.prompt_dataset" not in flags:
        task_files[str(output / "tasks" / "train.jsonl")] = task_rows(
            _tasks(config.env, config.train_tasks)
        )
        env_uses.append(_env_use(config, "train_tasks"))
        flags.update(
            {
                "data.prompt_dataset": str(output / "tasks" / "train.jsonl"),
                "data.input_key": "prompt",
                "data.label_key": "label",
            }
        )
        if config.eval_tasks.count:
            path = str(output / "tasks" / "eval.jsonl")
            task_files[path] = task_rows(_tasks(config.env, config.eval_tasks))
            env_uses.append(_env_use(config, "eval_tasks"))
            flags.setdefault("eval.dataset", path)
    run = Plan(_flag_tokens(flags), advantage, task_files, config.env, env_uses, changes)
    return run, dry_run


def write_task_files(task_files: dict[str, list[dict[str, str]]]) -> None:
    for path, rows in task_files.items():
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        staging = Path(f"{path}.tmp-{os.getpid()}")
        staging.write_text("".join(json.dumps(row) + "\n" for row in rows))
        os.replace(staging, path)


def start_ray(**init_kwargs) -> None:
    """Start Ray (or join the cluster in RAY_ADDRESS) with the patch in every worker."""
    import ray

    ray.init(
        address=os.environ.get("RAY_ADDRESS"),
        runtime_env={
            "worker_process_setup_hook": SETUP_HOOK,
            # The variables train_ppo_ray sets when it starts Ray itself.
            "env_vars": {
                "TOKENIZERS_PARALLELISM": os.environ.get("TOKENIZERS_PARALLELISM", "true"),
                "NCCL_DEBUG": os.environ.get("NCCL_DEBUG", "WARN"),
                "RAY_ENABLE_ZERO_COPY_TORCH_TENSORS": os.environ.get(
                    "RAY_ENABLE_ZERO_COPY_TORCH_TENSORS", "1"
                ),
            },
        },
        **init_kwargs,
    )


def launch(run: Plan) -> None:
    """Run OpenRLHF's train_ppo_ray as its command line would, with the patch in place."""
    import runpy

    from rewardflow_train.openrlhf import patch

    patch.install()
    write_task_files(run.task_files)
    start_ray()
    if run.advantage is not None:
        from openrlhf.utils import config

        config.hierarchize = patch.with_advantage(run.advantage)
    sys.argv = ["train_ppo_ray", *run.argv]
    runpy.run_module("openrlhf.cli.train_ppo_ray", run_name="__main__", alter_sys=True)


def help_config_block(argv: list[str]) -> tuple[bool, str | None]:
    """Whether `argv` asks for ``--help-config [BLOCK]``, and the block."""
    if "--help-config" not in argv:
        return False, None
    rest = argv[argv.index("--help-config") + 1 :]
    return True, rest[0] if rest and not _starts_argument(rest[0]) else None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    asked, block = help_config_block(argv)
    try:
        if asked:
            from rewardflow_train.config_reference import config_help

            print(config_help(LaunchConfig, block))
            return 0
        run, dry_run = plan(argv)
        if not dry_run:
            check_env_uses(run.env, run.env_uses)
    except (ConfigError, MissingExtraError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if run.changes:
        print(
            "flash-attn is not installed: training with " + ", ".join(run.changes),
            file=sys.stderr,
        )
    if dry_run:
        advantage = run.advantage
        estimator = (
            f" (estimator {advantage.estimator}: {advantage.model_dump()})" if advantage else ""
        )
        print("python -m openrlhf.cli.train_ppo_ray " + " ".join(run.argv) + estimator)
        return 0
    launch(run)
    return 0
