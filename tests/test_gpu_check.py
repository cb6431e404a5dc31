"""benchmarks/gpu_check.py: its arithmetic (MFU, device table, parameter count) and one whole
path on CPU, as the script runs it on a GPU."""

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


def test_a_missing_vllm_is_a_skip_reason(monkeypatch):
    monkeypatch.setattr(gpu_check.importlib.util, "find_spec", lambda name: None)
    assert "vLLM is not installed" in gpu_check.missing_dependency("vllm")
    assert gpu_check.missing_dependency("hf") is None


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
