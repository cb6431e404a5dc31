"""Where an RL step's time goes, against baselines measured in the same run.

    python benchmarks/bench_train.py                   # the CPU example's model on RF-Sokoban-v0
    python benchmarks/bench_train.py --model runs/sokoban_cpu/warmup_model   # a warmed-up policy
    python benchmarks/bench_train.py --preset tiny --backends hf,vllm    # 2 heads of 64, vLLM too
    python benchmarks/bench_train.py --preset 0.5b     # ~0.5B-parameter Qwen2-shaped model (GPU)

Runs a few real RL steps of the trainer (one process, `examples/configs/sokoban_cpu.yaml`),
twice on the same model and the same tasks: as the trainer runs them (each distinct prompt
of a batch, and the prefix all its prompts share, run once: `model.share_prompts=true`), and
with every row run in full (`model.share_prompts=false`, the baseline). It prints the mean
seconds of each phase of a step (the first step is left out as warm-up) for both and their
ratio; then the floor: a bare forward and forward+backward of the same model on the same
step's full rows (no DeepSpeed, no loss), against which the old-log-prob pass and the update
are ratios too; then a profile of one update. Without `--model` the model is built from
scratch with the warm-up off, so its responses run to `max_new_tokens`; with the warm-up
model of the example (`--model`), the step is the example's. Last, on the trained model, the
rollout generation backends on the same prompts: HF `generate` batched and one prompt at a
time, and vLLM (skipped with a message where it is not importable).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import statistics
import tempfile
import time
from pathlib import Path

from rewardflow_train import gpu_check

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "examples" / "configs" / "sokoban_cpu.yaml"

# The example's own model, and the shapes `rewardflow gpu-check` runs: a tiny one vLLM's CPU
# attention takes (2 heads of 64), and Qwen2-0.5B's.
PRESETS = {"example": [], **gpu_check.PRESETS}

PHASES = ("generate", "env", "advantage", "score", "update", "sync", "step")
MODES = {"shared": "model.share_prompts=true", "full rows": "model.share_prompts=false"}


class UpdateRecorder:
    """Keeps the samples of the last update, and profiles the update of `profile_step`."""

    def __init__(self):
        from rewardflow_train.update.ppo import PPOTrainer

        self.samples, self.table, self.profile_step = None, None, None
        original = PPOTrainer.update
        recorder = self

        def update(trainer, samples, step):
            recorder.samples = samples
            if step != recorder.profile_step:
                return original(trainer, samples, step)
            import torch

            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as run:
                result = original(trainer, samples, step)
            recorder.table = run.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)
            return result

        PPOTrainer.update = update


def run_steps(output_dir: Path, steps: int, overrides: list[str]) -> list[dict]:
    """The train records of steps 2 to `steps` (the first is left out as warm-up) of a run
    that may go on longer."""
    from rewardflow_train.config import load_config
    from rewardflow_train.runtime.metrics import read_metrics
    from rewardflow_train.trainer import Trainer

    base = [
        f"output_dir={output_dir}",
        "eval_tasks.count=0",
        "log.tensorboard=false",
        "log.progress_bar=false",
        "log.plot=false",
    ]
    Trainer(load_config(CONFIG, [*base, *overrides])).run()
    records = [r for r in read_metrics(output_dir) if r["kind"] == "train"][1:steps]
    if not records:
        raise SystemExit("--steps must be at least 2 (the first step is left out)")
    return records


def floor_seconds(model_dir: Path, samples, micro_batch: int) -> tuple[float, float]:
    """A bare forward, and forward+backward, of the model over the samples' full rows in
    micro-batches: what running every row costs in arithmetic alone."""
    import torch

    from rewardflow_train.runtime.models import load_model
    from rewardflow_train.update.prompt_cache import padded

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = load_model(model_dir, dtype).to(device)
    rows = [s.prompt_ids + s.response_ids for s in samples]
    chunks = [
        [t.to(device) for t in padded(rows[i : i + micro_batch], 0)]
        for i in range(0, len(rows), micro_batch)
    ]
    timings = []
    for backward in (False, True):
        start = time.perf_counter()
        for ids, mask in chunks:
            with torch.set_grad_enabled(backward):
                logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
            if backward:
                logits[:, -8:].float().logsumexp(-1).sum().backward()
        if device == "cuda":
            torch.cuda.synchronize()
        timings.append(time.perf_counter() - start)
    return timings[0], timings[1]


def generation_rates(model_dir: Path, batch: int, backends: list[str]) -> dict[str, float]:
    """Response tokens/s of each generation backend on the same prompts and sampling settings
    (and the seconds the vLLM engine took to start)."""
    import gymnasium

    import rewardflow_envs  # noqa: F401
    from rewardflow_train.config import DeepSpeedConfig, load_config
    from rewardflow_train.episode import render_prompt
    from rewardflow_train.rollout.generation import HFGenerator, SamplingSettings
    from rewardflow_train.runtime.distributed import init_distributed
    from rewardflow_train.runtime.models import (
        context_length,
        load_model,
        load_tokenizer,
        stop_token_ids,
    )

    config = load_config(CONFIG)
    # The process group vLLM's in-process engine joins (the one the trainer already made).
    dist = init_distributed(DeepSpeedConfig())
    tokenizer = load_tokenizer(model_dir)
    model = load_model(model_dir, dist.dtype).to(dist.device)
    stop_ids = stop_token_ids(model, tokenizer)
    context = context_length(model, tokenizer)
    env = gymnasium.make(config.env.id, **config.env.kwargs)
    texts = [render_prompt(tokenizer, env.reset(seed=s)[0], None) for s in range(batch)]
    prompts = tokenizer(texts, add_special_tokens=False)["input_ids"]
    sampling = SamplingSettings(config.rollout.max_new_tokens, 1.0, 1.0, greedy=False)
    rates = {}
    if "hf" in backends:
        for name, size in (("hf", batch), ("hf_one_at_a_time", 1)):
            generator = HFGenerator(model, tokenizer, stop_ids, context, size, dist.device)
            rates[f"generate_{name}_tokens_per_s"] = tokens_per_s(generator, prompts, sampling)
    if "vllm" in backends:
        from rewardflow_train.config import VLLMConfig
        from rewardflow_train.rollout.vllm_engine import VLLMGenerator

        # After the HF measurements: vLLM's CPU backend sets this process's threads its way.
        start = time.perf_counter()
        generator = VLLMGenerator(
            str(model_dir),
            stop_ids,
            context,
            VLLMConfig(),  # the trainer's defaults: compiled, with CUDA graphs on a GPU
            dist.dtype,
            seed=0,
            on_cpu=dist.device.type == "cpu",
        )
        rates["vllm_startup_s"] = time.perf_counter() - start
        rates["generate_vllm_tokens_per_s"] = tokens_per_s(generator, prompts, sampling)
    return rates


def tokens_per_s(generator, prompts, sampling, rounds: int = 3) -> float:
    """Generated tokens per second over `rounds` calls, after one untimed call (warm-up)."""
    generator.generate(prompts, sampling)
    start = time.perf_counter()
    tokens = sum(sum(map(len, generator.generate(prompts, sampling))) for _ in range(rounds))
    return tokens / (time.perf_counter() - start)


def main() -> None:
    from rewardflow_train.config import load_config

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="example")
    parser.add_argument("--model", type=Path, help="start from this HF model directory")
    parser.add_argument("--backends", default="hf,vllm", help="generation backends to compare")
    args = parser.parse_args()
    backends = args.backends.split(",")
    if "vllm" in backends and importlib.util.find_spec("vllm") is None:
        print("vLLM is not importable here: measuring HF generation only (pip install vllm)")
        backends.remove("vllm")
    start = ["warmup.enabled=false", *PRESETS[args.preset]]
    if args.model is not None:
        start += ["model.tiny=null", f"model.path={args.model.resolve()}"]

    recorder = UpdateRecorder()
    phases: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode, switch in MODES.items():
            # One more step with sharing, its update profiled and left out of the means.
            steps = args.steps + (mode == "shared")
            recorder.profile_step = steps if mode == "shared" else None
            records = run_steps(
                Path(tmp) / mode, args.steps, [*start, switch, f"train.steps={steps}"]
            )
            phases[mode] = {p: statistics.fmean(r[f"time/{p}"] for r in records) for p in PHASES}
            if mode == "shared":
                samples = statistics.fmean(r["samples"] for r in records)
                profile, last_samples = recorder.table, recorder.samples
        peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        model_dir = Path(tmp) / "shared" / "final_model"
        micro_batch = load_config(CONFIG, PRESETS[args.preset]).ppo.micro_batch_size
        floor_forward, floor_update = floor_seconds(model_dir, last_samples, micro_batch)
        rates = generation_rates(model_dir, 32, backends)

    shared, full = phases["shared"], phases["full rows"]
    print(
        f"\nseconds per RL step ({args.preset}, {samples:.0f} samples per step, mean of "
        f"{args.steps - 1} steps)"
    )
    print(f"{'phase':12s} {'shared':>9s} {'full rows':>10s} {'full/shared':>12s}")
    for phase in PHASES:
        ratio = full[phase] / shared[phase] if shared[phase] > 1e-4 else float("nan")
        print(f"{phase:12s} {shared[phase]:9.3f} {full[phase]:10.3f} {ratio:12.2f}")
    print("\nfloor: the same model on the last step's full rows, bare forward (+ backward)")
    print(f"{'pass':12s} {'floor s':>9s} {'shared/floor':>13s} {'full/floor':>11s}")
    floors = (("forward", "score", floor_forward), ("fwd+bwd", "update", floor_update))
    for name, phase, floor in floors:
        print(f"{name:12s} {floor:9.3f} {shared[phase] / floor:13.2f} {full[phase] / floor:11.2f}")
    print("\nprofile of one update (shared prompts):")
    print(profile)
    result = {
        "preset": args.preset,
        "samples_per_step": samples,
        **{f"shared/{p}_s": v for p, v in shared.items()},
        **{f"full_rows/{p}_s": v for p, v in full.items()},
        "step_speedup": full["step"] / shared["step"],
        "floor_forward_s": floor_forward,
        "floor_update_s": floor_update,
        "peak_rss_mb": peak_rss_mb,
        **rates,
    }
    hf, vllm = rates.get("generate_hf_tokens_per_s"), rates.get("generate_vllm_tokens_per_s")
    if hf:
        result["hf_batched_over_one_at_a_time"] = (
            hf / rates["generate_hf_one_at_a_time_tokens_per_s"]
        )
    if hf and vllm:
        result["vllm_over_hf"] = vllm / hf
    try:
        import torch

        if torch.cuda.is_available():
            result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    except ImportError:
        pass
    for key, value in rates.items():
        print(f"{key:38s} {value:.3f}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
