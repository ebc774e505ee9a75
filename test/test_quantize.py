"""`depth-train quantize`: a checked Q/DQ model, calibrated on training frames, that ONNX Runtime and the estimator run
within tolerance of fp32 on held-out real frames; the depth head stays float; --symmetric is what TensorRT accepts.

Tolerance here (240x320, 8 calibration frames from 0-399, 5 held-out frames from 500-599): AbsRel against the Kinect
ground truth within 0.01 of the fp32 model, and a mean relative change of the depth under 3%. The full-size figure
(640x480, 100 held-out frames, speed) is `bench/backends.py --int8` in docs/benchmarks.md.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import pytest
from depth_node_training.deployment.export import export_onnx
from depth_node_training.deployment.onnx_graph import HEAD_PREFIX
from depth_node_training.deployment.quantize import quantize
from depth_node_training.evaluation.metrics import depth_metrics
from depth_node_training.learning.datasets import open_frames

from depth_node.engine_build import onnx_precision, tensorrt_qdq_problem
from depth_node.estimator import load_estimator, onnx_metadata

SIZE = (240, 320)


@pytest.fixture(scope="module")
def fp32_onnx(checkpoint, tmp_path_factory):
    return export_onnx(str(checkpoint), tmp_path_factory.mktemp("q") / "m.onnx", *SIZE)


@pytest.fixture(scope="module")
def int8_onnx(fp32_onnx, redkitchen):
    return quantize(fp32_onnx, f"{redkitchen}@0:400", fp32_onnx.with_name("m.int8.onnx"), frames=8)


def test_quantized_model_is_checked_qdq_with_a_float_head(fp32_onnx, int8_onnx):
    model = onnx.load(str(int8_onnx))
    onnx.checker.check_model(model, full_check=True)
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops and onnx_precision(int8_onnx) == "int8"
    meta = onnx_metadata(int8_onnx)
    assert meta["precision"] == "int8" and meta["min_depth"] == onnx_metadata(fp32_onnx)["min_depth"]
    float_weights = {t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    head_conv = next(n for n in model.graph.node if n.name.startswith(HEAD_PREFIX) and n.op_type == "Conv")
    assert head_conv.input[1] in float_weights  # the head's weights are used as float, not dequantized
    dequantized = {out for n in model.graph.node if n.op_type == "DequantizeLinear" for out in n.output}
    quantized_convs = [n for n in model.graph.node if n.op_type == "Conv" and n.input[1] in dequantized]
    assert len(quantized_convs) > 40  # the encoder and decoder convs (54 in all, the head excluded)


def test_estimator_runs_int8_within_tolerance_on_held_out_frames(fp32_onnx, int8_onnx, redkitchen):
    fp32 = load_estimator(str(fp32_onnx), "onnxruntime")
    int8 = load_estimator(str(int8_onnx))  # what the node does with model:=m.int8.onnx (backend auto)
    assert int8.precision == "int8 (Q/DQ)" and int8.providers == ["CPUExecutionProvider"]
    frames = open_frames(f"{redkitchen}@500:600")
    rel_changes, abs_rel = [], {"fp32": [], "int8": []}
    for i in np.linspace(0, len(frames) - 1, 5).round().astype(int):
        frame = frames[int(i)]
        depth = {name: e.infer(frame.color)[0] for name, e in (("fp32", fp32), ("int8", int8))}
        rel_changes.append(np.mean(np.abs(depth["int8"] - depth["fp32"]) / depth["fp32"]))
        for name, d in depth.items():
            abs_rel[name].append(depth_metrics(d, frame.depth_hr, 0.1, 10.0, False)["abs_rel"])
    assert abs(np.mean(abs_rel["int8"]) - np.mean(abs_rel["fp32"])) < 0.01
    assert np.mean(rel_changes) < 0.03


def test_symmetric_int8_is_what_tensorrt_accepts(fp32_onnx, int8_onnx, redkitchen):
    problem = tensorrt_qdq_problem(int8_onnx)  # the CPU default: uint8 activations, int32 biases
    assert problem is not None and "--symmetric" in problem
    symmetric = quantize(fp32_onnx, f"{redkitchen}@0:400", fp32_onnx.with_name("m.sym.onnx"), frames=4, symmetric=True)
    assert tensorrt_qdq_problem(symmetric) is None
    assert load_estimator(str(symmetric), "onnxruntime").infer(np.zeros((48, 64, 3), np.uint8))[0].shape == (48, 64)


def test_quantize_errors_name_the_problem(checkpoint, tmp_path, redkitchen):
    dynamic = export_onnx(str(checkpoint), tmp_path / "dyn.onnx", 64, 96, dynamic=True)
    cli = [sys.executable, "-m", "depth_node_training.cli", "quantize", "--calib", f"{redkitchen}@0:10"]
    result = subprocess.run([*cli, "--onnx", str(dynamic), "--out", str(tmp_path / "q.onnx")], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2 and "dynamic export" in result.stderr and "Traceback" not in result.stderr
    result = subprocess.run([*cli, "--onnx", str(tmp_path / "none.onnx"), "--out", str(tmp_path / "q.onnx")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "none.onnx" in result.stderr
    assert not (tmp_path / "q.onnx").exists()
