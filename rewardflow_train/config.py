"""Run configuration: one YAML file of typed blocks, validated at start, with key=value overrides.

Every block is a schema (pydantic): each field has a type, a description and its allowed range,
so loading checks each value and names the offending key (``ppo.epochs: expected int, got
'two'``, ``optim.lr: must be > 0, got -1``). Unknown keys are errors, not silently ignored, so a
typo cannot fall back to a default unnoticed. The docs' key table and ``--help-config`` are
made from the same schema (`rewardflow_train.config_reference`).
"""

from __future__ import annotations

import functools
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.fields import FieldInfo

from rewardflow_envs.flow import ESTIMATORS


class ConfigError(ValueError):
    """The configuration does not validate; the message names the key."""


class Block(BaseModel):
    """A block of the config: typed fields with their descriptions and ranges. Values are
    taken as typed (no "2" for 2, no true for 1), numbers finite; an unknown key is refused.
    A validator across fields raises ConfigError with a message that names its keys in full."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class TinyModelConfig(Block):
    """A small Llama/Qwen-style model built from scratch, with a tokenizer trained on env text."""

    arch: Literal["llama", "qwen2"] = Field("llama", description="the model's architecture")
    hidden_size: int = Field(64, ge=1, description="width (a multiple of `num_heads`)")
    num_layers: int = Field(2, ge=1, description="decoder layers")
    num_heads: int = Field(4, ge=1, description="attention heads")
    intermediate_size: int = Field(256, ge=1, description="width of the MLP")
    vocab_size: int = Field(512, ge=300, description="BPE vocabulary trained on the env's text")
    context_length: int = Field(
        1024, ge=1, description="positions; prompt + `rollout.max_new_tokens` must fit"
    )
    tokenizer_episodes: int = Field(
        64,
        ge=1,
        description="episodes played (expert moves where the env has an expert) for the "
        "tokenizer's text",
    )
    tokenizer_env_kwargs: dict = Field(
        default_factory=dict,
        description="env kwargs of those episodes, over `env.kwargs`: the tokenizer may learn "
        "other text than the task's, as a pretrained one does (e.g. RF-Search's `{world_seed: "
        "null, world_scale: 1}`: the embedded encyclopaedia while RL plays a generated world)",
    )

    @model_validator(mode="after")
    def _heads_divide_the_width(self) -> TinyModelConfig:
        _require(
            self.hidden_size % self.num_heads == 0,
            "model.tiny.hidden_size must be a multiple of model.tiny.num_heads",
        )
        return self


class ModelConfig(Block):
    path: str | None = Field(
        None, description="an HF causal LM directory or Hub id (set this or `model.tiny`)"
    )
    tiny: TinyModelConfig | None = Field(
        None, description="a small model built from scratch, with a tokenizer trained on env text"
    )
    gradient_checkpointing: bool = Field(
        False,
        description="recompute activations in the backward pass instead of keeping them "
        "(less memory)",
    )
    share_prompts: bool = Field(
        True,
        description="run each distinct prompt of a batch, and the prefix its prompts share, once "
        "(generation, log-probs, and updates except under gradient checkpointing; see "
        '"Shared prompts"); false: every row in full, the same numbers up to float rounding',
    )


class EnvConfig(Block):
    """The env both trainers play (`rewardflow train` and the OpenRLHF backend)."""

    id: str = Field(
        "RF-Sokoban-v0",
        description="a registered id, or `module:Id` (the module registers it)",
    )
    factory: str | None = Field(
        None,
        description="`module:function` that builds the env from kwargs: the OpenRLHF backend's "
        "alternative to `env.id`; `rewardflow train` refuses it",
    )
    kwargs: dict = Field(default_factory=dict, description="passed to `gymnasium.make`")
    state_key: str | None = Field(
        None,
        description="`module:function(observation, info) -> key`; default the env's own; called "
        "once on a first observation at start, so a wrong signature or an unhashable key stops "
        "the run before any model is built",
    )
    system_prompt: str | None = Field(
        None,
        description="the system message that opens every chat",
    )
    max_turns: int | None = Field(
        None,
        ge=1,
        description="turns per episode at most (null: the env's own step limit, which applies "
        "in any case)",
    )
    workers: int = Field(
        0,
        ge=0,
        description="worker processes per group for slow envs; 0 steps them in the trainer "
        "(`rewardflow train` only: the OpenRLHF backend refuses it)",
    )
    worker_timeout: float | None = Field(
        600.0,
        gt=0,
        description="seconds a worker may take for one reset or step before it is terminated "
        "and the step fails (null: no limit)",
    )


class TaskSetConfig(Block):
    """A set of tasks, the same in both trainers: seeds `seed` .. `seed + count - 1`, each
    drawing a task from the env, or with `task_index` entries of the env's task list; played
    with `kwargs` over `env.kwargs`. Each trainer's blocks add `count` with their default."""

    seed: int = Field(0, ge=0, description="the first task seed")
    # Declared here for the order of the keys; each trainer's blocks give its meaning.
    count: int | None = Field(None, ge=0, description="how many tasks")
    kwargs: dict = Field(
        default_factory=dict,
        description="env kwargs of these tasks, over `env.kwargs` (e.g. `{split: test}`: the "
        "envs that draw tasks from a file draw them from that split whatever the seed)",
    )
    task_index: bool = Field(
        False,
        description="play entries `seed` .. `seed + count - 1` of the env's task list "
        '(`reset(options={"task": i})`) instead of the tasks those seeds draw: with `seed` 0 and '
        "`count` the size of the split, every task of the split once (checked at start)",
    )

    def seeds(self, count: int) -> range:
        """The seeds (or task-list entries) of the first `count` tasks."""
        return range(self.seed, self.seed + count)

    def env_kwargs(self, env: EnvConfig) -> dict:
        """The kwargs these tasks' envs are made with."""
        return {**env.kwargs, **self.kwargs}

    def task_set(self, env: EnvConfig, count: int) -> TaskSet:
        """The first `count` tasks, with the kwargs they are played with."""
        return TaskSet(self.seeds(count), self.env_kwargs(env), self.task_index)


class TrainTasksConfig(TaskSetConfig):
    count: int | None = Field(
        None,
        ge=1,
        description="tasks the run cycles through, group after group (null: a new task for "
        "every group of every step, `train.steps * rollout.tasks_per_step` in all)",
    )


class HeldOutTasksConfig(TaskSetConfig):
    seed: int = Field(1_000_000, ge=0, description="the first held-out task seed")
    count: int = Field(16, ge=0, description="held-out tasks per evaluation (0: none)")


class WarmupConfig(Block):
    """Supervised fine-tuning on expert trajectories before RL (needs an env with an expert)."""

    enabled: bool = Field(False, description="warm up on expert trajectories before RL")
    episodes: int = Field(32, ge=0, description="expert episodes to train on")
    epochs: int = Field(1, ge=0, description="passes over them")
    lr: float = Field(1e-3, gt=0, description="learning rate of the warm-up")
    batch_size: int = Field(
        16,
        ge=1,
        description="samples per optimizer step over all ranks; each rank accumulates "
        "micro-batches",
    )
    micro_batch_size: int = Field(16, ge=1, description="samples per forward pass")
    label_noise: float = Field(
        0.0,
        ge=0,
        le=1,
        description="fraction of training targets replaced by the target of another random step, "
        "so the warmed-up policy writes valid actions but plays them poorly",
    )
    task_seed: int = Field(2_000_000, ge=0, description="first seed of the expert episodes")
    env_kwargs: dict = Field(
        default_factory=dict,
        description="env kwargs of the expert episodes, over `env.kwargs` (e.g. RF-Search's "
        "`{world_scale: 10}`: demonstrations from a larger world than the one RL trains on)",
    )


class VLLMConfig(Block):
    """The vLLM engine of each rank (rollout.backend=vllm)."""

    gpu_memory_utilization: float = Field(
        0.3,
        gt=0,
        le=1,
        description="fraction of the GPU the engine takes (weights + KV cache); on CPU "
        "`VLLM_CPU_KVCACHE_SPACE` (GiB, default 1) sizes the KV cache",
    )
    enable_sleep_mode: bool = Field(
        False,
        description="free the engine's weights and KV cache while the policy trains (CUDA only)",
    )
    sleep_level: int = Field(
        2,
        ge=1,
        le=2,
        description="2: discard the engine's weights while it sleeps (the next sync overwrites "
        "them); 1: keep them in pinned host memory and copy them back each step",
    )
    sync_bucket_mb: float = Field(
        1024,
        gt=0,
        description="weights go to vLLM in calls of at most this many MiB, at least one whole "
        "decoder layer each",
    )
    enforce_eager: bool = Field(
        False, description="skip vLLM's graph compilation (faster start, slower decoding)"
    )


class RolloutConfig(Block):
    tasks_per_step: int = Field(4, ge=1, description="tasks per RL step (B)")
    group_size: int = Field(4, ge=1, description="episodes per task (N)")
    max_new_tokens: int = Field(32, ge=1, description="response budget per turn")
    temperature: float = Field(
        1.0, gt=0, description="sampling temperature (log-probs use the same)"
    )
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling")
    backend: Literal["hf", "vllm"] = Field("hf", description="the generation engine")
    vllm: VLLMConfig = Field(default_factory=VLLMConfig, description="the vLLM engine of each rank")
    generation_batch_size: int = Field(64, ge=1, description="prompts per generate call")
    max_prompt_tokens: int = Field(
        4096,
        ge=1,
        description="the longest prompt a turn may have (the papers' data.max_prompt_length); "
        "with `max_new_tokens` it bounds a turn (and so vLLM's `max_model_len` and its KV cache, "
        "below the model's context when that is longer)",
    )


class AdvantageConfig(Block):
    estimator: Literal[ESTIMATORS] = Field(
        "rewardflow", description="the advantage estimator (see docs/rewardflow.md)"
    )
    gamma: float = Field(
        0.9, gt=0, le=1, description="discount of the values propagated over the state graph"
    )
    step_weight: float = Field(
        1.0, description="weight `w` of the per-step term (docs/rewardflow.md)"
    )
    norm_std: bool = Field(False, description="divide both terms by their standard deviation")
    invalid_action_penalty: float = Field(
        0.1,
        ge=0,
        description="charged to each step whose action the env could not read (Search-R1's "
        "runs: 0.01)",
    )
    invalid_action_penalty_mode: Literal["reward", "advantage"] = Field(
        "reward",
        description="`reward`: off the step's own score before centring, in both terms "
        "(verl-agent); `advantage`: off the finished advantage, the same size whatever the "
        "group's spread",
    )


class PPOConfig(Block):
    epochs: int = Field(1, ge=1, description="passes over each step's samples")
    mini_batches: int = Field(1, ge=1, description="optimizer steps per pass")
    micro_batch_size: int = Field(8, ge=1, description="samples per forward pass")
    clip_low: float = Field(
        0.2, ge=0, lt=1, description="the ratio is clipped to [1 - clip_low, 1 + clip_high]"
    )
    clip_high: float = Field(0.2, ge=0, description="see `clip_low`")
    dual_clip: float | None = Field(
        None,
        gt=1,
        description="Dual-clip PPO: the loss of a negative-advantage token is at most "
        "dual_clip * |advantage| (null: off)",
    )
    kl_coef: float = Field(
        0.0, ge=0, description="weight of the k3 KL to the reference (0: no reference model)"
    )
    entropy_coef: float = Field(
        0.0, ge=0, description="weight of the entropy bonus (the entropy is logged either way)"
    )
    loss_backend: Literal["native", "openrlhf"] = Field(
        "native",
        description="`openrlhf` computes the policy loss and KL with OpenRLHF's functions (same "
        "numbers)",
    )


AdamBeta = Annotated[float, Field(ge=0, lt=1)]


class OptimConfig(Block):
    lr: float = Field(1e-4, gt=0, description="peak learning rate of AdamW")
    weight_decay: float = Field(0.0, ge=0, description="AdamW's weight decay")
    betas: tuple[AdamBeta, AdamBeta] = Field(
        (0.9, 0.999), strict=False, description="AdamW's betas, each in [0, 1)"
    )
    grad_clip: float = Field(1.0, ge=0, description="gradient norm clip (0: off)")
    warmup_steps: int = Field(0, ge=0, description="linear warm-up of the learning rate")
    schedule: Literal["constant", "cosine"] = Field(
        "constant", description="the learning rate after the warm-up"
    )


class EvalConfig(Block):
    """How the held-out tasks (`eval_tasks`) are played."""

    final_tasks: int | None = Field(
        None,
        description="held-out tasks at the last step (>= `eval_tasks.count`; null: "
        "`eval_tasks.count`); the other evaluations play the first `eval_tasks.count` of them, "
        "so a long run can afford a large final evaluation",
    )
    group_size: int = Field(1, ge=1, description="episodes per held-out task")
    greedy: bool = Field(True, description="greedy decoding")
    temperature: float | None = Field(
        None,
        gt=0,
        description="sampling of a non-greedy evaluation (null: the rollouts'); the papers "
        "validate at 0.4",
    )
    top_p: float | None = Field(
        None, gt=0, le=1, description="the same for top_p (null: the rollouts')"
    )


class TrainConfig(Block):
    steps: int = Field(20, ge=0, description="RL steps")
    eval_every: int = Field(5, ge=1, description="steps between held-out evaluations")
    save_every: int = Field(10, ge=1, description="steps between checkpoints")
    keep_checkpoints: int = Field(2, ge=1, description="checkpoints kept")
    halt_at_step: int | None = Field(
        None,
        ge=1,
        description="end this invocation after this step (with a checkpoint); `resume=true` "
        "continues to `steps`",
    )
    stop_grace_s: float = Field(
        20.0,
        ge=0,
        description="on SIGTERM, how long the step in progress may take to finish before the run "
        "saves it and ends",
    )


class DeepSpeedConfig(Block):
    zero_stage: int = Field(0, ge=0, le=3, description="ZeRO stage")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="`auto`: bf16 on GPU, fp32 on CPU"
    )
    grad_accum_dtype: Literal["auto", "fp32", "bf16"] = Field(
        "auto",
        description="`auto`: fp32 gradient accumulation under bf16 with ZeRO 1-3 (DeepSpeed's "
        "ZeRO-0 bf16 path accumulates in bf16), else the weights' dtype",
    )
    offload_optimizer: Literal["none", "cpu"] = Field(
        "none",
        description="`cpu`: ZeRO-Offload of the optimizer state and step (ZeRO 1-3; DeepSpeed's "
        "CPU Adam, compiled on first use)",
    )
    offload_param: Literal["none", "cpu"] = Field(
        "none", description="`cpu`: ZeRO-Offload of the parameters (ZeRO-3)"
    )
    peer_timeout_s: float = Field(
        120.0,
        ge=1,
        description="a rank that shows no sign of life this long (stopped, its machine "
        "unreachable) stops every rank, naming it",
    )

    @model_validator(mode="after")
    def _zero_stage_supports_the_rest(self) -> DeepSpeedConfig:
        _require(
            self.zero_stage >= 1 or (self.precision, self.grad_accum_dtype) != ("bf16", "fp32"),
            "deepspeed.grad_accum_dtype=fp32 with bf16 weights needs deepspeed.zero_stage >= 1 "
            "(DeepSpeed's ZeRO-0 bf16 path accumulates in bf16)",
        )
        _require(
            self.offload_optimizer == "none" or self.zero_stage >= 1,
            "deepspeed.offload_optimizer=cpu needs deepspeed.zero_stage >= 1",
        )
        _require(
            self.offload_param == "none" or self.zero_stage == 3,
            "deepspeed.offload_param=cpu needs deepspeed.zero_stage=3",
        )
        return self


class LogConfig(Block):
    tensorboard: bool = Field(True, description="TensorBoard event files")
    wandb: bool = Field(
        False,
        description="log the run's config and every metrics record to Weights & Biases too "
        "(optional: `pip install wandb`)",
    )
    wandb_project: str | None = Field(None, description="null: `$WANDB_PROJECT` or `rewardflow`")
    wandb_run_name: str | None = Field(
        None, description="null: `$WANDB_NAME` or the output directory's name"
    )
    progress_bar: bool = Field(True, description="a progress bar on the terminal")
    plot: bool = Field(True, description="draw the run's curves at the end")
    credit_audit: bool = Field(
        False,
        description="label every training move with the env's oracle and log each estimator's "
        "agreement with the labels (`credit/*`); the training env is made with `expert=True`",
    )


class RunConfig(Block):
    output_dir: str = Field("runs/default", description="where everything of the run goes")
    seed: int = Field(0, ge=0, description="model init, sampling, shuffling")
    resume: bool = Field(False, description="continue from `OUTPUT_DIR/checkpoints/latest`")
    env: EnvConfig = Field(default_factory=EnvConfig, description=EnvConfig.__doc__)
    model: ModelConfig = Field(default_factory=ModelConfig, description="the policy")
    warmup: WarmupConfig = Field(default_factory=WarmupConfig, description=WarmupConfig.__doc__)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig, description="the rollouts")
    train_tasks: TrainTasksConfig = Field(
        default_factory=TrainTasksConfig, description="the training tasks"
    )
    eval_tasks: HeldOutTasksConfig = Field(
        default_factory=HeldOutTasksConfig, description="the held-out tasks"
    )
    advantage: AdvantageConfig = Field(
        default_factory=AdvantageConfig, description="per-turn advantages"
    )
    ppo: PPOConfig = Field(default_factory=PPOConfig, description="the policy update")
    optim: OptimConfig = Field(default_factory=OptimConfig, description="the optimizer")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="held-out evaluation")
    train: TrainConfig = Field(default_factory=TrainConfig, description="the run's length")
    deepspeed: DeepSpeedConfig = Field(
        default_factory=DeepSpeedConfig, description="DeepSpeed and the process group"
    )
    log: LogConfig = Field(default_factory=LogConfig, description="what the run logs")

    @model_validator(mode="after")
    def _check_across_blocks(self) -> RunConfig:
        _require(
            not (self.model.path is not None and self.model.tiny is not None),
            "model: model.path and model.tiny are both set; to load model.path instead of "
            "building the tiny model, add model.tiny=null",
        )
        _require(
            self.model.path is not None or self.model.tiny is not None,
            "model: set model.path (an HF causal LM directory or Hub id) or model.tiny",
        )
        if self.eval.final_tasks is not None:
            _require(
                self.eval.final_tasks >= self.eval_tasks.count,
                f"eval.final_tasks must be >= eval_tasks.count ({self.eval_tasks.count}), got "
                f"{self.eval.final_tasks}",
            )
        check_held_out_tasks(
            self.train_tasks.task_set(self.env, self.training_tasks),
            self.eval_tasks.task_set(self.env, self.held_out_tasks),
        )
        refuse_settings(
            self.env,
            "env",
            ["factory"],
            "rewardflow train makes its envs from env.id (a registered id, or module:Id of a "
            "module that registers it); the OpenRLHF backend takes env.factory",
        )
        check_advantage(self.advantage, self.rollout.group_size, "rollout.group_size")
        return self

    @property
    def training_tasks(self) -> int:
        """How many distinct tasks training plays."""
        every_group = self.train.steps * self.rollout.tasks_per_step
        count = self.train_tasks.count
        return every_group if count is None else min(count, every_group)

    def training_task_seeds(self, step: int) -> list[int]:
        """The task seeds of RL step `step` (from 1), one per group: the next
        `rollout.tasks_per_step` of the training tasks, cycling through `train_tasks.count`."""
        batch = self.rollout.tasks_per_step
        first = (step - 1) * batch
        count = self.train_tasks.count
        return [
            self.train_tasks.seed + (i if count is None else i % count)
            for i in range(first, first + batch)
        ]

    @property
    def held_out_tasks(self) -> int:
        """How many held-out tasks the largest evaluation plays."""
        return max(self.eval_tasks.count, self.eval.final_tasks or 0)

    def to_dict(self) -> dict[str, Any]:
        return _plain(self.model_dump())


def _plain(value: Any) -> Any:
    """Tuples as lists, so the dict dumps to YAML/JSON and loads back to the same config."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


# Keys that moved between blocks: an older config, or a run's saved config.yaml, is told where.
MOVED_KEYS = {
    "model.system_prompt": "env.system_prompt",
    "rollout.max_turns": "env.max_turns",
    "rollout.task_seed": "train_tasks.seed",
    "eval.tasks": "eval_tasks.count",
    "eval.task_seed": "eval_tasks.seed",
    "eval.task_index": "eval_tasks.task_index",
    "eval.env_kwargs": "eval_tasks.kwargs",
}

# A value of the wrong type: what was expected, by pydantic's error type.
_EXPECTED = {
    "int_type": "int",
    "float_type": "float",
    "bool_type": "bool",
    "string_type": "str",
    "dict_type": "a mapping",
    "model_type": "a mapping of fields",
    "list_type": "a list",
    "tuple_type": "a list",
    "finite_number": "a finite number",
}
# A value out of its range, by pydantic's error type.
_OUT_OF_RANGE = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}


def dotted_key(loc: tuple[str | int, ...]) -> str:
    """``("optim", "betas", 1)`` -> ``optim.betas[1]``."""
    key = ""
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else f".{part}" if key else part
    return key


def block_at(cls: type[Block], path: tuple[str | int, ...]) -> type[Block]:
    """The block class of the key `path` under `cls` (``("model", "tiny")``: TinyModelConfig)."""
    return block_of(field_at(cls, path)) if path else cls


def field_at(cls: type[Block], loc: tuple[str | int, ...]) -> FieldInfo:
    """The field of the value at `loc` under `cls`; a position names an item of a tuple field."""
    *parents, last = loc
    if isinstance(last, int):
        items = typing.get_args(field_at(cls, tuple(parents)).annotation)
        return FieldInfo.from_annotation(items[last])
    return block_at(cls, tuple(parents)).model_fields[last]


def block_of(field: FieldInfo) -> type[Block] | None:
    """The block class a field holds (`X` or `X | None`); None for a plain value."""
    annotation = field.annotation
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    options = typing.get_args(annotation) if union else (annotation,)
    return next((o for o in options if isinstance(o, type) and issubclass(o, Block)), None)


_SIGNS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}


def allowed_range(field: FieldInfo) -> str | None:
    """The range a field's constraints allow: ``> 0``, ``>= 1``, ``in (0, 1]``; None: any."""
    bounds = {name: getattr(c, name) for c in field.metadata for name in _SIGNS if hasattr(c, name)}
    if len(bounds) < 2:
        return next((f"{_SIGNS[name]} {value}" for name, value in bounds.items()), None)
    opening, low = ("(", bounds["gt"]) if "gt" in bounds else ("[", bounds["ge"])
    closing, high = (")", bounds["lt"]) if "lt" in bounds else ("]", bounds["le"])
    return f"in {opening}{low}, {high}{closing}"


def _error_message(cls: type[Block], error: dict[str, Any]) -> str:
    """One of pydantic's errors as today's message: the dotted key, then what is wrong."""
    kind, ctx, value = error["type"], error.get("ctx", {}), error.get("input")
    if kind == "value_error":
        return str(ctx["error"])  # a validator's ConfigError, which names its keys
    key = dotted_key(error["loc"])
    if kind in ("missing", "too_long") and _is_tuple(cls, error["loc"]):
        # A list of the wrong length, e.g. optim.betas: pydantic names the missing item.
        loc = error["loc"][:-1] if kind == "missing" else error["loc"]
        items = len(typing.get_args(field_at(cls, loc).annotation))
        return f"{dotted_key(loc)}: expected a list of {items} values, got {value!r}"
    if kind == "extra_forbidden":
        if key in MOVED_KEYS:
            return f"config key {key!r} is now {MOVED_KEYS[key]!r}"
        known = list(block_at(cls, error["loc"][:-1]).model_fields)
        return f"unknown config key {key!r}; known keys here: {known}"
    if kind in _EXPECTED:
        problem = f"expected {_EXPECTED[kind]}, got {value!r}"
    elif kind == "literal_error":
        problem = f"expected one of {ctx['expected']}, got {value!r}"
    elif kind in _OUT_OF_RANGE:
        problem = f"must be {allowed_range(field_at(cls, error['loc']))}, got {value!r}"
    elif kind == "too_long":
        problem = f"expected at most {ctx['max_length']} values, got {value!r}"
    elif kind == "missing":
        problem = "required"
    else:
        problem = error["msg"]
    return f"{key}: {problem}"


def _is_tuple(cls: type[Block], loc: tuple[str | int, ...]) -> bool:
    """Whether `loc` is a tuple field or one of its items."""
    loc = loc[:-1] if isinstance(loc[-1], int) else loc
    try:
        return typing.get_origin(field_at(cls, loc).annotation) is tuple
    except (KeyError, AttributeError, TypeError):
        return False


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"ppo.epochs=2"`` -> (["ppo", "epochs"], 2); the value is read as YAML."""
    import yaml

    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} is not of the form key=value (e.g. train.steps=20)")
    try:
        value = yaml.load(raw, Loader=config_loader()) if raw.strip() else None
    except yaml.YAMLError as error:
        raise ConfigError(f"override {text!r}: the value is not valid YAML ({error})") from error
    return key.strip().split("."), value


def apply_override(raw: dict[str, Any], path: list[str], value: Any) -> None:
    node = raw
    for depth, part in enumerate(path[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            where = ".".join(path[: depth + 1])
            raise ConfigError(f"override {'.'.join(path)}: {where!r} is not a mapping")
        node = child
    node[path[-1]] = value


# Numbers as a user types them: YAML 1.1 (PyYAML) reads `1e-3` (no dot) as a string; YAML 1.2
# and every other config system read it as a float.
EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")


@functools.cache
def config_loader():
    """PyYAML's safe loader that reads `1e-3` as a float and refuses a key that appears twice
    in one mapping (the safe loader keeps the last one silently), naming the key and both
    lines."""
    import yaml

    class ConfigLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            lines: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: *anchor` may set keys again by design
                key = self.construct_object(key_node, deep=deep)
                if not isinstance(key, typing.Hashable):
                    continue  # the safe loader refuses it itself
                line = key_node.start_mark.line + 1
                if key in lines:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} appears twice, on lines {lines[key]} and {line}"
                    )
                lines[key] = line
            return super().construct_mapping(node, deep)

    ConfigLoader.add_implicit_resolver(
        "tag:yaml.org,2002:float", EXPONENT_FLOAT, list("-+0123456789")
    )
    return ConfigLoader


# The example configs travel in the wheel as rewardflow_train/configs (pyproject.toml); a
# checkout reads them from examples/configs.
_PACKAGE_DIR = Path(__file__).resolve().parent


def example_configs_dir() -> Path:
    installed = _PACKAGE_DIR / "configs"
    return installed if installed.is_dir() else _PACKAGE_DIR.parent / "examples" / "configs"


def example_configs() -> list[str]:
    """The example configs' names: ``sokoban_cpu``, ``openrlhf/alfworld_1.5b``, ..."""
    root = example_configs_dir()
    return sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.yaml"))


def config_path(path_or_name: str | Path) -> Path:
    """A config file's path: `path_or_name` itself, or the example config of that name when no
    such file exists and it has no .yaml suffix."""
    path = Path(path_or_name)
    if path.exists() or str(path_or_name).endswith((".yaml", ".yml")):
        return path
    example = example_configs_dir() / f"{path_or_name}.yaml"
    if example.is_file():
        return example
    raise ConfigError(
        f"config {str(path_or_name)!r} is neither a file nor an example config "
        f"(`rewardflow configs` lists them: {', '.join(example_configs())})"
    )


def parse_config(
    cls: type[Block], path: str | Path | None, overrides: list[str] = (), saved: bool = False
) -> Any:
    """Read the YAML file or example config (or start from the defaults), apply overrides,
    validate `cls` from it; the first error found is raised as a ConfigError. `saved`: the file
    is a run's own config.yaml, which may predate a key's move (`MOVED_KEYS`): its values are
    read at their new places."""
    import yaml

    raw: dict[str, Any] = {}
    if path is not None:
        path = config_path(path)
        if not path.exists():
            raise ConfigError(f"config file {str(path)!r} does not exist")
        if path.is_dir():
            raise ConfigError(f"config file {str(path)!r} is a directory, not a YAML file")
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} is not a regular file")
        try:
            raw = yaml.load(path.read_text(encoding="utf-8"), Loader=config_loader()) or {}
        except UnicodeDecodeError as error:
            raise ConfigError(f"config file {str(path)!r} is not UTF-8 text ({error})") from None
        except yaml.YAMLError as error:
            raise ConfigError(f"config file {str(path)!r} is not valid YAML: {error}") from error
        if not isinstance(raw, dict):
            raise ConfigError(f"config file {str(path)!r} must hold a mapping of blocks")
    if saved:
        move_keys(raw)
    for text in overrides:
        apply_override(raw, *parse_override(text))
    try:
        return cls.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(_error_message(cls, error.errors()[0])) from None


def load_config(path: str | Path | None, overrides: list[str] = ()) -> RunConfig:
    """The run's config from its YAML file and overrides, validated."""
    return parse_config(RunConfig, path, overrides)


def load_saved_config(path: str | Path) -> RunConfig:
    """A run's config.yaml as the trainer reads it today, whichever version wrote it."""
    return parse_config(RunConfig, path, saved=True)


def move_keys(raw: dict[str, Any]) -> None:
    """Put the values of `raw`'s moved keys at their new places (`MOVED_KEYS`), in place."""
    for old, new in MOVED_KEYS.items():
        block, name = old.split(".")
        if not isinstance(raw.get(block), dict) or name not in raw[block]:
            continue
        value = raw[block].pop(name)
        new_block, new_name = new.split(".")
        raw.setdefault(new_block, {}).setdefault(new_name, value)


def with_moved_keys(overrides: list[str]) -> list[str]:
    """Overrides as today's keys write them: ``eval.tasks=8`` -> ``eval_tasks.count=8``."""
    moved = []
    for text in overrides:
        key, sep, value = text.partition("=")
        moved.append(f"{MOVED_KEYS.get(key.strip(), key)}{sep}{value}" if sep else text)
    return moved


def import_callable(spec: str, key: str):
    """The callable that a ``"module:name"`` setting names; a ConfigError names `key`."""
    import importlib

    module_name, _, attribute = spec.partition(":")
    try:
        value = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError) as error:
        raise ConfigError(f"{key}: cannot import {spec!r} ({error})") from None
    if not callable(value):
        raise ConfigError(f"{key}: {spec!r} is not callable")
    return value


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def refuse_settings(block: Any, key: str, names: list[str], reason: str) -> None:
    """Fields of a shared block that this trainer cannot honour: refused when set (not at
    their defaults), naming the key, rather than ignored."""
    default = type(block)()
    for name in names:
        _require(getattr(block, name) == getattr(default, name), f"{key}.{name}: {reason}")


def check_advantage(advantage: AdvantageConfig, group_size: int, group_key: str) -> None:
    """The group the advantage estimator needs, the same for both trainers; `group_key` names
    the setting of the group size (it differs between the trainers)."""
    _require(
        group_size >= 2,
        f"{group_key}: advantage.estimator {advantage.estimator} compares the episodes of a "
        f"group, and a group of {group_size} gives every step an advantage of 0; set "
        f"{group_key} to 2 or more",
    )


@dataclass(frozen=True)
class TaskSet:
    """The tasks a run plays: their seeds, the env kwargs they are played with, and whether
    the seeds index the env's task list (reset's options["task"]) instead of drawing tasks."""

    seeds: range
    kwargs: dict
    task_index: bool = False


def check_held_out_tasks(train: TaskSet, held_out: TaskSet) -> None:
    """Held-out tasks may not be training tasks. Tasks of another split (another task list, so
    the same seed is another task) never are; otherwise the seeds may not overlap when both
    sets draw tasks from seeds, nor the entries when both play the task list (a seed and an
    entry cannot be compared)."""
    if held_out.kwargs.get("split") != train.kwargs.get("split"):
        return
    if held_out.task_index != train.task_index:
        return
    what = "entries" if held_out.task_index else "seeds"
    _require(
        not _overlap(train.seeds, held_out.seeds),
        f"eval_tasks.seed: the held-out task {what} {held_out.seeds.start}.."
        f"{held_out.seeds.stop - 1} overlap the training task {what} {train.seeds.start}.."
        f"{train.seeds.stop - 1}; move eval_tasks.seed, or give the held-out tasks another split "
        "(eval_tasks.kwargs)",
    )


def _overlap(a: range, b: range) -> bool:
    return len(a) > 0 and len(b) > 0 and a.start < b.stop and b.start < a.stop
