"""Engine building without a GPU: the cache key and stale check, the precision plan for TensorRT 10 and 11, profiles,
the runner's input checks, the ONNX precision and Q/DQ checks on real exports, and the `depth-engine` command's errors.

Nothing here fakes a TensorRT result: the build and the runner need TensorRT and a GPU (test_estimator's TensorRT
tests, and ``bench/gpu_check.sh``); what is tested is the project's own logic that decides what to build and when.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from depth_node.backends.tensorrt_backend import check_batch
from depth_node.engine_build import (
    KEY_FIELDS,
    engine_key,
    engine_stale_reason,
    key_digest,
    onnx_precision,
    plan_precision,
    record_path,
    resolve_profile,
    stale_reason,
    tensorrt_qdq_problem,
)
from depth_node.estimator import unavailable_reason

MACHINE = {"tensorrt": "10.13.0.35", "gpu": "NVIDIA RTX A2000", "compute_capability": "8.6"}
PROFILE = ((120, 160), (480, 640), (960, 1280))
DEFAULT_ONNX = Path(__file__).resolve().parents[1] / "depth_node" / "models" / "default.onnx"
DYNAMIC_META = {"dynamic": "true", "input_height": "480", "input_width": "640"}


def key(**changes) -> dict:
    fields = {"machine": MACHINE, "precision": "fp16", "typing": "strong", "profile": PROFILE, "workspace_gib": 2.0,
              "onnx_sha256": "ab" * 32, **changes}
    return engine_key(**fields)


def test_a_changed_profile_rebuilds_and_a_record_read_back_from_json_does_not():
    built = json.loads(json.dumps(key()))  # what build_engine writes and read_record returns
    assert stale_reason(built, key()) is None
    other = key(profile=((120, 160), (480, 640), (1080, 1920)))
    reason = stale_reason(built, other)
    assert reason is not None and "profile" in reason and "1920" in reason
    assert key_digest(other) != key_digest(key())  # the cache names it differently too: both can coexist


@pytest.mark.parametrize("field, value", [("workspace_gib", 4.0), ("precision", "int8"), ("typing", "weak"),
                                          ("onnx_sha256", "cd" * 32)])
def test_every_key_field_rebuilds(field, value):
    built = json.loads(json.dumps(key()))
    changed = {**key(), field: value}
    assert field in stale_reason(built, changed)
    assert key_digest(changed) != key_digest(key())


@pytest.mark.parametrize("field, value", [("tensorrt", "11.4.0.106"), ("gpu", "NVIDIA H100"),
                                          ("compute_capability", "9.0")])
def test_another_machine_or_tensorrt_version_rebuilds(field, value):
    built = json.loads(json.dumps(key()))
    assert field in stale_reason(built, {**key(), field: value})
    assert set(KEY_FIELDS) == set(key())


def test_engine_file_checks_name_what_is_missing(tmp_path):
    engine = tmp_path / "m.engine"
    assert engine_stale_reason(engine, key()) == "it does not exist"
    engine.write_bytes(b"plan")
    assert "no build record" in engine_stale_reason(engine, key())
    record_path(engine).write_text("{not json")
    assert "not valid JSON" in engine_stale_reason(engine, key())
    record_path(engine).write_text(json.dumps({**key(), "onnx": "m.onnx"}))
    assert engine_stale_reason(engine, key()) is None
    assert engine_stale_reason(engine, {"gpu": "other"}) is not None  # the runner checks only the machine fields


@pytest.mark.parametrize("model, requested, version, expected", [
    ("fp32", None, "10.13.0", ("fp32", "strong")),
    ("fp16", None, "11.4.0", ("fp16", "strong")),
    ("int8", None, "11.4.0", ("int8", "strong")),
    ("fp16", "fp16", "10.0.1", ("fp16", "strong")),
    ("fp32", "fp16", "10.13.0", ("fp16", "weak")),  # the one weakly typed fallback, 10.x only
])
def test_precision_plan_is_strongly_typed_wherever_possible(model, requested, version, expected):
    assert plan_precision(model, requested, version) == expected


@pytest.mark.parametrize("model, requested, version, message", [
    ("fp32", "fp16", "11.4.0", "export --precision fp16"),  # TensorRT 11 removed the fp16 builder flag
    ("fp32", "int8", "10.13.0", "depth-train quantize"),  # implicit INT8 calibration is gone: Q/DQ models only
    ("fp16", "fp32", "10.13.0", "fp32 export"),
    ("fp32", "bf16", "10.13.0", "unknown precision"),
])
def test_precision_plan_refuses_what_the_model_cannot_give(model, requested, version, message):
    with pytest.raises(ValueError, match=message):
        plan_precision(model, requested, version)


def test_profiles_only_for_dynamic_models_and_ordered():
    assert resolve_profile({"dynamic": "false", "input_height": "480", "input_width": "640"}) is None
    with pytest.raises(ValueError, match="fixed input size 480x640"):
        resolve_profile({"dynamic": "false", "input_height": "480", "input_width": "640"}, high=(960, 1280))
    assert resolve_profile(DYNAMIC_META) == ((120, 160), (480, 640), (960, 1280))
    assert resolve_profile(DYNAMIC_META, opt=(240, 320))[1] == (240, 320)
    with pytest.raises(ValueError, match="min <= opt <= max"):
        resolve_profile(DYNAMIC_META, low=(600, 800))


def test_runner_input_checks_name_the_problem():
    good = np.zeros((1, 3, 48, 64), np.float32)
    check_batch(good, np.dtype(np.float32), "float32_nchw")
    with pytest.raises(ValueError, match="float32.*got float64"):
        check_batch(good.astype(np.float64), np.dtype(np.float32), "float32_nchw")
    with pytest.raises(ValueError, match=r"shape \(1,3,H,W\), got \(3, 48, 64\)"):
        check_batch(good[0], np.dtype(np.float32), "float32_nchw")
    with pytest.raises(ValueError, match="C-contiguous"):
        check_batch(np.zeros((1, 3, 64, 48), np.float32).transpose(0, 1, 3, 2), np.dtype(np.float32), "float32_nchw")
    check_batch(np.zeros((1, 48, 64, 3), np.uint8), np.dtype(np.uint8), "uint8_nhwc")
    with pytest.raises(ValueError, match=r"\(1,H,W,3\)"):
        check_batch(np.zeros((1, 3, 48, 64), np.uint8), np.dtype(np.uint8), "uint8_nhwc")


def test_onnx_precision_of_the_packaged_export():
    """fp16 exports and Q/DQ models: test_export.py and test_quantize.py."""
    assert onnx_precision(DEFAULT_ONNX) == "fp32" and tensorrt_qdq_problem(DEFAULT_ONNX) is None


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "depth_node.engine_build", *args], capture_output=True, text=True,
                          timeout=60)


def test_depth_engine_errors_are_one_line_and_exit_2(tmp_path):
    missing = run_cli("--onnx", str(tmp_path / "missing.onnx"))
    assert missing.returncode == 2 and "missing.onnx" in missing.stderr and "Traceback" not in missing.stderr
    static = DEFAULT_ONNX
    profile = run_cli("--onnx", str(static), "--max-size", "960x1280")
    assert profile.returncode == 2 and "dynamic exports only" in profile.stderr
    size = run_cli("--onnx", str(static), "--max-size", "960by1280")
    assert size.returncode == 2 and "HEIGHTxWIDTH" in size.stderr


@pytest.mark.skipif(unavailable_reason("tensorrt") is None, reason="TensorRT and a GPU are present")
def test_depth_engine_without_tensorrt_says_what_to_install(tmp_path):
    static = DEFAULT_ONNX
    result = run_cli("--onnx", str(static), "--engine", str(tmp_path / "m.engine"))
    assert result.returncode == 2 and "tensorrt" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "m.engine").exists()
