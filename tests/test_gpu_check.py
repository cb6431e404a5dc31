"""benchmarks/gpu_check.py: its arithmetic (MFU, device table, parameter count), one whole
path on CPU, as the script runs it on a GPU, and the OpenRLHF path's side that needs no GPU."""

import argparse
import importlib.util
import json
import math
import os
import re
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"

# The script imports only the standard library at module level.
_spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
gpu_check = sys.modules["gpu_check"] = importlib.util.module_from_spec(_spec)  # for dataclasses
_spec.loader.exec_module(gpu_check)


@pytest.mark.parametrize(
    ("name", "tflops"),
    [
        ("NVIDIA H100 80GB HBM3", 989),
        ("NVIDIA H100 PCIe", 756),
        ("NVIDIA H200", 989),
        ("NVIDIA GH200 480GB", 989),
        ("NVIDIA A100-SXM4-80GB", 312),
        ("NVIDIA A100 80GB PCIe", 312),
        ("NVIDIA L40S", 362),
        ("NVIDIA L40", 181),
        ("NVIDIA L4", 121),
        ("NVIDIA A10", 125),
        ("Tesla T4", None),
        ("cpu", None),
    ],
)
def test_peak_tflops_by_device_name(name, tflops):
    assert gpu_check.peak_tflops(name) == tflops


def test_mfu_counts_six_flops_per_parameter_per_trained_token():
    # 6 x 5e8 parameters x 1e5 tokens/s = 3e14 FLOP/s, 30% of a 1000 TFLOP/s peak.
    assert gpu_check.mfu(500_000_000, 1e5, 1000.0) == pytest.approx(0.3)
    assert gpu_check.mfu(500_000_000, 1e5, None) is None


def write_safetensors(path: Path, shapes: dict[str, list[int]]) -> None:
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, shape in shapes.items():
        size = 4 * math.prod(shape)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    encoded = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + bytes(offset))


def test_parameters_are_counted_over_every_shard(tmp_path):
    write_safetensors(tmp_path / "model-00001-of-00002.safetensors", {"a": [4, 3], "b": [5]})
    write_safetensors(tmp_path / "model-00002-of-00002.safetensors", {"c": [2, 2, 2]})
    assert gpu_check.count_parameters(tmp_path) == 12 + 5 + 8


def test_a_missing_vllm_or_openrlhf_is_a_skip_reason(monkeypatch):
    monkeypatch.setattr(gpu_check.importlib.util, "find_spec", lambda name: None)
    assert "vLLM is not installed" in gpu_check.missing_dependency("vllm", "cuda")
    assert "openrlhf and vllm not installed" in gpu_check.missing_dependency("openrlhf", "cuda")
    assert gpu_check.missing_dependency("hf", "cuda") is None


def test_openrlhf_is_a_default_backend_on_cuda_only(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["gpu_check.py", "--device", "cpu"])
    assert gpu_check.parse_args().backends == ["hf", "vllm"]
    monkeypatch.setattr(sys, "argv", ["gpu_check.py"])
    assert gpu_check.parse_args().backends == ["hf", "vllm", "openrlhf"]


def test_a_run_past_its_timeout_is_stopped(tmp_path):
    command = [sys.executable, "-c", "import time; print('started', flush=True); time.sleep(60)"]
    log = tmp_path / "run.log"
    start = time.perf_counter()
    assert gpu_check.run_logged(command, log, dict(os.environ), timeout=5) is None
    assert time.perf_counter() - start < 30
    assert "started" in log.read_text()
    assert gpu_check.run_logged([sys.executable, "-c", "pass"], log, dict(os.environ), 60) == 0


@pytest.mark.slow
@pytest.mark.train
def test_a_cpu_path_passes_and_prints_its_throughput():
    pytest.importorskip("torch")
    pytest.importorskip("deepspeed")
    command = [sys.executable, str(SCRIPT), "--device", "cpu", "--presets", "tiny"]
    command += ["--backends", "hf", "--zero", "2", "--steps", "2", "--peak-tflops", "0.001"]
    command += ["rollout.tasks_per_step=2", "rollout.group_size=4"]  # 8 episodes a step, not 48
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    line = r"PASS  tiny/hf/zero2 .* rollout +[\d,]+ tok/s +update +[\d,]+ tok/s +MFU [\d.]+%"
    assert re.search(line, result.stdout)
    summary = json.loads(result.stdout.splitlines()[-1])
    (path,) = summary["paths"]
    assert path["status"] == "PASS"
    assert path["rollout_tokens_per_s"] > 0 and path["update_tokens_per_s"] > 0
    assert path["params"] > 0
    flops = 6 * path["params"] * path["update_tokens_per_s"]
    assert path["mfu"] == pytest.approx(flops / 1e9)  # of the given peak, 0.001 TFLOP/s


def planned(config: Path):
    """OpenRLHF's command line from the launcher config, as `python -m rewardflow_train.openrlhf`
    plans it, and its train and eval task rows."""
    from rewardflow_train.openrlhf import launcher

    run, dry_run = launcher.plan(["--config", str(config), "--dry-run"])
    assert dry_run
    flags = dict(zip(run.argv, run.argv[1:], strict=False))  # a flag to its value, if it takes one
    rows = [run.task_files[flags[key]] for key in ("--data.prompt_dataset", "--eval.dataset")]
    return run, flags, *rows


@pytest.mark.parametrize(("context", "max_len"), [(512, 512), (32768, 2048)])
def test_the_openrlhf_config_is_a_launcher_config_of_two_steps(tmp_path, context, max_len):
    pytest.importorskip("yaml")
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps({"max_position_embeddings": context}))
    result = gpu_check.Result("tiny", "openrlhf", 3)
    config = gpu_check.openrlhf_config(result, tmp_path / "run", model_dir)
    run, flags, train, held_out = planned(config)
    assert run.estimator == "rewardflow"
    assert flags["--rollout.n_samples_per_prompt"] == "4" and flags["--rollout.batch_size"] == "4"
    assert len(train) == 8 and len(held_out) == 4  # 2 RL steps of 4 tasks
    assert flags["--actor.model_name_or_path"] == str(model_dir)
    assert flags["--ds.zero_stage"] == "3" and flags["--data.max_len"] == str(max_len)
    assert "--train.colocate_all" in run.argv and "--ds.packing_samples" not in run.argv


STEP = "(PPOTrainer pid=7) INFO ppo_trainer.py:547] ✨ Global step {}: {{'policy_loss': 0.1}}"
EVAL = (
    "(PPOTrainer pid=7) INFO ppo_trainer.py:594] ✨ Evaluation completed in 0:00:03, eval_metrics: "
)


@pytest.mark.parametrize(
    ("steps", "metrics", "completed"),
    [
        (2, "{'eval_pass1': 0.0, 'eval_success': 0.25}", True),
        (2, "{'eval_pass1': 0.0}", False),  # evaluated without rewardflow's patch
        (1, "{'eval_success': 0.25}", False),  # stopped after its first step
    ],
)
def test_an_openrlhf_run_completes_with_its_last_step_and_an_eval_success(
    steps, metrics, completed
):
    log = "\n".join([*(STEP.format(step) for step in range(1, steps + 1)), EVAL + metrics])
    assert gpu_check.openrlhf_completed(log) == completed


@pytest.mark.train
def test_openrlhf_is_a_skip_on_cpu():
    pytest.importorskip("torch")
    pytest.importorskip("deepspeed")
    command = [sys.executable, str(SCRIPT), "--device", "cpu", "--backends", "openrlhf"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert re.search(r"SKIP  tiny/openrlhf/zero2 +OpenRLHF's trainer needs CUDA", result.stdout)
    summary = json.loads(result.stdout.splitlines()[-1])
    assert [p["status"] for p in summary["paths"]] == ["SKIP", "SKIP"]  # ZeRO-2 and ZeRO-3
    assert all("needs CUDA" in p["reason"] for p in summary["paths"])


@pytest.mark.slow
@pytest.mark.train
def test_an_openrlhf_path_builds_its_model_and_reports_a_failed_launch(tmp_path):
    """With no trainer path before it, the path builds its preset's model as the trainer does;
    without OpenRLHF (here) the launch fails, and the report names its command."""
    pytest.importorskip("torch")
    pytest.importorskip("deepspeed")
    if importlib.util.find_spec("openrlhf") is not None:
        pytest.skip("OpenRLHF is installed: its launch would not fail fast on CPU")
    args = argparse.Namespace(timeout=600, tail=5, overrides=[])
    result, run_dir = gpu_check.Result("tiny", "openrlhf", 2), tmp_path / "tiny-openrlhf-zero2"
    details = gpu_check.run_openrlhf_path(args, result, run_dir, None, gpu_check.child_env("cpu"))
    assert result.status == "FAIL" and "-m rewardflow_train.openrlhf --config" in details
    _, flags, *_ = planned(run_dir / "openrlhf.yaml")
    assert flags["--actor.model_name_or_path"] == str(run_dir / "tiny_model")
    assert flags["--data.max_len"] == "512"  # sokoban_cpu.yaml's model.tiny.context_length
    assert gpu_check.count_parameters(run_dir / "tiny_model") > 0
