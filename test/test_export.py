"""ONNX export: a checked opset>=17 graph with normalisation inside, static shapes, full metadata, equal to PyTorch."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from depth_node_training.deployment.export import OPSET, export_onnx
from depth_node_training.learning.checkpoint import load_model

from depth_node.engine_build import onnx_precision
from depth_node.estimator import file_sha256
from depth_node.network.deploy_model import DeployModel

# What TensorRT 10's ONNX parser handles natively; anything else in a static export is a regression.
TENSORRT_OPS = {"Conv", "Clip", "Relu", "Add", "Mul", "Concat", "Resize", "Slice", "Pad", "Sigmoid", "Exp",
                "Log", "Abs", "Sub", "Neg", "MaxPool", "AveragePool"}  # the second line: the confidence branch


def onnx_run(path: Path, image: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"image": image})[0]


def torch_run(checkpoint: Path, image: np.ndarray) -> np.ndarray:
    net, cfg, _ = load_model(checkpoint)
    with torch.no_grad():
        return DeployModel(net, cfg.model.mean, cfg.model.std)(torch.from_numpy(image)).numpy()


def test_static_export_is_checked_tensorrt_friendly_and_carries_metadata(checkpoint, tmp_path):
    path = export_onnx(str(checkpoint), tmp_path / "m.onnx", 96, 128)
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert {op.domain: op.version for op in model.opset_import}[""] >= OPSET >= 17
    dims = [[d.dim_value for d in t.type.tensor_type.shape.dim] for t in (model.graph.input[0], model.graph.output[0])]
    assert (model.graph.input[0].name, model.graph.output[0].name) == ("image", "depth")
    assert dims == [[1, 3, 96, 128], [1, 1, 96, 128]]
    ops = Counter(node.op_type for node in model.graph.node)
    assert set(ops) <= TENSORRT_OPS, f"ops outside the TensorRT-friendly set: {set(ops) - TENSORRT_OPS}"
    assert "Shape" not in ops  # all shape arithmetic folded: static shapes inside

    _, cfg, meta = load_model(checkpoint)
    props = {p.key: p.value for p in model.metadata_props}
    assert (int(props["input_height"]), int(props["input_width"]), props["dynamic"]) == (96, 128, "false")
    assert json.loads(props["mean"]) == list(cfg.model.mean) and json.loads(props["std"]) == list(cfg.model.std)
    assert (float(props["min_depth"]), float(props["max_depth"])) == (cfg.model.min_depth, cfg.model.max_depth)
    assert float(props["factor"]) == cfg.model.factor
    assert json.loads(props["training_data"]) == meta["data"] and props["git_rev"] == meta["git_rev"]
    assert props["source_sha256"] == file_sha256(checkpoint)


def test_graph_normalises_inside_and_matches_pytorch(checkpoint, tmp_path):
    """0..255 RGB in: the graph applies (x/255 - mean)/std itself, exactly as training fed the network."""
    path = export_onnx(str(checkpoint), tmp_path / "m.onnx", 96, 128)
    image = np.random.default_rng(0).uniform(0, 255, (1, 3, 96, 128)).astype(np.float32)
    net, cfg, _ = load_model(checkpoint)
    mean = torch.tensor(cfg.model.mean).view(1, 3, 1, 1)
    std = torch.tensor(cfg.model.std).view(1, 3, 1, 1)
    with torch.no_grad():
        reference = net((torch.from_numpy(image) / 255 - mean) / std).numpy()
    depth = onnx_run(path, image)
    assert depth.shape == (1, 1, 96, 128)
    np.testing.assert_allclose(depth, reference, rtol=1e-4, atol=1e-5)
    assert depth.min() >= cfg.model.min_depth and depth.max() <= cfg.model.max_depth


def test_dynamic_export_runs_at_other_sizes(checkpoint, tmp_path):
    path = export_onnx(str(checkpoint), tmp_path / "dyn.onnx", 96, 128, dynamic=True)
    model = onnx.load(str(path))
    assert [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim] == ["batch", "", "height", "width"]
    assert {p.key: p.value for p in model.metadata_props}["dynamic"] == "true"
    rng = np.random.default_rng(1)
    for shape in [(1, 3, 64, 96), (2, 3, 70, 90)]:  # 70x90 is not a multiple of the stride: padding inside the graph
        image = rng.uniform(0, 255, shape).astype(np.float32)
        np.testing.assert_allclose(onnx_run(path, image), torch_run(checkpoint, image), rtol=1e-4, atol=1e-5)


def test_cli_export_defaults_to_the_checkpoint_size(checkpoint, tmp_path, capsys):
    from depth_node_training.cli import main as depth_train

    out = tmp_path / "cli.onnx"
    depth_train(["export", "--model", str(checkpoint), "--onnx", str(out)])
    _, cfg, _ = load_model(checkpoint)
    dims = [d.dim_value for d in onnx.load(str(out)).graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, cfg.model.input_height, cfg.model.input_width]
    assert f"{cfg.model.input_height}x{cfg.model.input_width}" in capsys.readouterr().out


def test_export_errors_name_the_problem(checkpoint, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        export_onnx(str(tmp_path / "missing.pt"), tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="positive"):
        export_onnx(str(checkpoint), tmp_path / "m.onnx", -96, 128)
    assert not (tmp_path / "m.onnx").exists()


def test_fp16_export_keeps_fp32_io_input_stage_and_head(checkpoint, tmp_path):
    """For TensorRT's strongly typed fp16 engines: fp16 network, fp32 in/out, normalisation and depth head in fp32."""
    path = export_onnx(str(checkpoint), tmp_path / "m16.onnx", 64, 96, precision="fp16", confidence=False)
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    fp32, fp16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    assert [t.type.tensor_type.elem_type for t in (*model.graph.input, *model.graph.output)] == [fp32, fp32]
    dtype = {t.name: t.data_type for t in model.graph.initializer}
    convs = {n.name: n for n in model.graph.node if n.op_type == "Conv"}
    assert dtype[convs["/net/head/conv/Conv"].input[1]] == fp32
    assert sum(dtype.get(n.input[1]) == fp16 for n in convs.values()) == len(convs) - 1
    assert {p.key: p.value for p in model.metadata_props}["precision"] == "fp16" and onnx_precision(path) == "fp16"
    image = np.random.default_rng(2).uniform(0, 255, (1, 3, 64, 96)).astype(np.float32)
    reference = onnx_run(export_onnx(str(checkpoint), tmp_path / "m32.onnx", 64, 96, confidence=False), image)
    relative = np.abs(onnx_run(path, image) - reference) / reference
    assert relative.max() < 2e-2 and relative.mean() < 2e-3


def test_export_cli_precision_and_uint8_input(checkpoint, tmp_path, capsys):
    from depth_node_training.cli import main as depth_train

    out = tmp_path / "u8.onnx"
    depth_train(["export", "--model", str(checkpoint), "--onnx", str(out), "--height", "64", "--width", "96",
                 "--uint8-input"])
    graph_input = onnx.load(str(out)).graph.input[0].type.tensor_type
    assert graph_input.elem_type == onnx.TensorProto.UINT8
    assert [d.dim_value for d in graph_input.shape.dim] == [1, 64, 96, 3]
    assert "uint8_nhwc" in capsys.readouterr().out
    with pytest.raises(ValueError, match="quantize"):
        export_onnx(str(checkpoint), tmp_path / "x.onnx", 64, 96, precision="int8")
