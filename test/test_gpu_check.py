"""`bench/gpu_check.sh` on a machine without any GPU path: it says which paths are missing and why, exits 3, writes
nothing and installs nothing. (On a GPU machine it is the benchmark itself, run by hand: docs/benchmarks.md.)"""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def has_gpu_path() -> bool:
    import onnxruntime as ort

    from depth_node.estimator import unavailable_reason

    torch_cuda = importlib.util.find_spec("torch") is not None and __import__("torch").cuda.is_available()
    ort_gpu = {"CUDAExecutionProvider", "TensorrtExecutionProvider"} & set(ort.get_available_providers())
    return bool(torch_cuda or ort_gpu or unavailable_reason("tensorrt") is None)


@pytest.mark.skipif(has_gpu_path(), reason="this machine has a GPU path: gpu_check.sh would run the benchmark")
def test_gpu_check_without_a_gpu_lists_every_missing_path_and_exits_3(tmp_path, redkitchen):
    out = tmp_path / "gpu_check.json"
    command = ["bash", str(ROOT / "bench" / "gpu_check.sh"), "--out", str(out), "--data", str(redkitchen)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 3, result.stderr
    assert "no GPU path is present" in result.stdout and "Traceback" not in result.stderr
    for path in ("torch CUDA fp32", "torch CUDA fp16", "onnxruntime CUDA EP", "onnxruntime TensorRT EP",
                 "TensorRT engine fp32", "TensorRT engine fp16", "TensorRT engine int8"):
        assert f"  {path}: " in result.stdout
    assert not out.exists()
