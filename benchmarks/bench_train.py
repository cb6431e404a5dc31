"""Trainer throughput: rollout and update tokens/s, peak memory, and where a step's time goes.

    python benchmarks/bench_train.py                  # CPU tiny setup on RF-Sokoban-v0
    python benchmarks/bench_train.py --preset 0.5b    # ~0.5B-parameter Qwen2-shaped model (GPU)
    python benchmarks/bench_train.py --backends hf    # leave vLLM out

Runs a few real RL steps of the trainer (one process), then reports the averages of the
metrics it logged (the first step is left out as warm-up). On the trained model it then
compares, on the same prompts and in the same run, the rollout generation backends: HF
`generate` batched and one prompt at a time, and vLLM (skipped with a message where it is not
importable).
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

import gpu_check  # this folder is the first sys.path entry when the script runs

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "examples" / "configs" / "sokoban_cpu.yaml"

# The model shapes gpu_check.py runs: a tiny one vLLM's CPU attention takes, and Qwen2-0.5B's.
PRESETS = gpu_check.PRESETS

SPLIT = ("time/generate", "time/env", "time/advantage", "time/score", "time/update", "time/sync")


def run_steps(output_dir: Path, steps: int, preset: str) -> list[dict]:
    from rewardflow_train.config import load_config
    from rewardflow_train.metrics import read_metrics
    from rewardflow_train.trainer import Trainer

    overrides = [
        f"output_dir={output_dir}",
        f"train.steps={steps}",
        "warmup.enabled=false",
        "eval.tasks=0",
        "log.tensorboard=false",
        "log.progress_bar=false",
        "log.plot=false",
        *PRESETS[preset],
    ]
    Trainer(load_config(CONFIG, overrides)).run()
    return [r for r in read_metrics(output_dir) if r["kind"] == "train"]


def generation_rates(model_dir: Path, batch: int, backends: list[str]) -> dict[str, float]:
    """Response tokens/s of each generation backend on the same prompts and sampling settings
    (and the seconds the vLLM engine took to start)."""
    import gymnasium

    import rewardflow_envs  # noqa: F401
    from rewardflow_train.config import DeepSpeedConfig, load_config
    from rewardflow_train.distributed import init_distributed
    from rewardflow_train.generation import HFGenerator, SamplingSettings
    from rewardflow_train.models import (
        context_length,
        load_model,
        load_tokenizer,
        render_prompt,
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
        from rewardflow_train.vllm_engine import VLLMGenerator

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
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    parser.add_argument("--backends", default="hf,vllm", help="generation backends to compare")
    args = parser.parse_args()
    backends = args.backends.split(",")
    if "vllm" in backends and importlib.util.find_spec("vllm") is None:
        print("vLLM is not importable here: measuring HF generation only (pip install vllm)")
        backends.remove("vllm")

    with tempfile.TemporaryDirectory() as tmp:
        output_dir = Path(tmp) / "run"
        records = run_steps(output_dir, args.steps, args.preset)[1:] or None
        if records is None:
            raise SystemExit("--steps must be at least 2 (the first step is left out)")
        peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        rates = generation_rates(output_dir / "final_model", 32, backends)

    def mean(key: str) -> float:
        return statistics.fmean(r[key] for r in records)

    step_time = mean("time/step")
    result = {
        "preset": args.preset,
        "steps_measured": len(records),
        "samples_per_step": mean("samples"),
        "rollout_tokens_per_s": mean("throughput/rollout_tokens_per_s"),
        "update_tokens_per_s": mean("throughput/update_tokens_per_s"),
        "step_s": step_time,
        **{f"share/{key[5:]}": mean(key) / step_time for key in SPLIT},
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
    for key, value in result.items():
        print(f"{key:38s} {value:.3f}" if isinstance(value, float) else f"{key:38s} {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
