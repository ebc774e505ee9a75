"""Model files the node cannot serve are refused with ``<file>: <reason>``, before any loader's traceback."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from depth_node.default_model import MODEL_DIR
from depth_node.estimator import load_estimator
from depth_node.model_check import ModelFileError, check_model_file, probe

DEPTH_META = {"min_depth": "0.1", "max_depth": "10.0"}


def onnx_model(path: Path, nodes: list, output_shape: list, meta: dict[str, str] | None = None,
               input_shape: tuple = (1, 3, 32, 48)) -> Path:
    """A small hand-made ONNX graph: image (input_shape) -> ``nodes`` -> out (output_shape)."""
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("image", TensorProto.FLOAT, input_shape)],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, output_shape)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, DEPTH_META if meta is None else meta)
    onnx.save(model, path)
    return path


def depth_like(path: Path) -> Path:
    """A valid 'depth' network: the channel mean of the image, one (1,1,H,W) map."""
    return onnx_model(path, [helper.make_node("ReduceMean", ["image"], ["out"], axes=[1], keepdims=1)], [1, 1, 32, 48])


def classifier(path: Path) -> Path:
    """An image classifier that carries depth metadata: (1,3,H,W) -> (1,3)."""
    nodes = [helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["out"])]
    return onnx_model(path, nodes, [1, 3])


def reason(model: str, backend: str = "auto") -> str:
    with pytest.raises(ModelFileError) as error:
        check_model_file(model, backend)
    assert str(error.value).startswith(f"{error.value.path}: ")
    return error.value.reason


def test_a_valid_model_passes_and_the_empty_name_is_the_default(tmp_path: Path) -> None:
    good = check_model_file(str(depth_like(tmp_path / "good.onnx")))
    assert (good.kind, good.input_size) == ("onnx", (32, 48))
    assert check_model_file("").path == MODEL_DIR / "default.pt"
    assert check_model_file("  ").path == MODEL_DIR / "default.pt"
    estimator = load_estimator(str(good.path), "onnxruntime")
    assert probe(estimator) is None


def test_unreadable_corrupt_and_foreign_files_are_refused_with_the_reason(tmp_path: Path) -> None:
    assert reason(str(tmp_path / "none.onnx")) == "does not exist"
    (tmp_path / "text.pt").write_text("a model, I promise\n")
    assert "is not a PyTorch checkpoint" in reason(str(tmp_path / "text.pt"))
    (tmp_path / "text.onnx").write_text("hello\n" * 20)
    assert "is not a readable ONNX model: a text file" in reason(str(tmp_path / "text.onnx"))
    full = depth_like(tmp_path / "full.onnx").read_bytes()
    (tmp_path / "truncated.onnx").write_bytes(full[: len(full) // 2])
    assert "is not a readable ONNX model: corrupt or truncated" in reason(str(tmp_path / "truncated.onnx"))
    (tmp_path / "empty.engine").write_bytes(b"")
    assert reason(str(tmp_path / "empty.engine")) == "is empty"
    (tmp_path / "text.engine").write_text("not an engine")
    assert reason(str(tmp_path / "text.engine")) == "is a text file, not a TensorRT engine"
    assert "unknown model type '.h5'" in reason(str(tmp_path / "model.h5"))
    assert reason(str(tmp_path)).startswith("unknown model type")  # a directory has no model suffix
    assert "has no min_depth / max_depth metadata" in reason(
        str(onnx_model(tmp_path / "nometa.onnx", [helper.make_node("ReduceMean", ["image"], ["out"], axes=[1])],
                       [1, 1, 32, 48], meta={})))
    assert "gives out (1, 3), not one depth map (N,1,H,W) of its input's size (32, 48)" in reason(
        str(classifier(tmp_path / "classifier.onnx")))
    half = [helper.make_node("AveragePool", ["image"], ["pooled"], kernel_shape=[2, 2], strides=[2, 2]),
            helper.make_node("ReduceMean", ["pooled"], ["out"], axes=[1], keepdims=1)]
    assert "gives out (1, 1, 16, 24)" in reason(str(onnx_model(tmp_path / "half.onnx", half, [1, 1, 16, 24])))


def test_a_checkpoint_beside_a_corrupt_onnx_export_is_refused_unless_torch_runs_it(tmp_path: Path) -> None:
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes((MODEL_DIR / "default.pt").read_bytes())
    (tmp_path / "model.onnx").write_bytes(b"\x08\x07garbage" * 10)
    why = reason(str(checkpoint))
    assert "its ONNX export beside it is unusable" in why and "model.onnx: is not a readable ONNX model" in why
    assert check_model_file(str(checkpoint), "torch").kind == "checkpoint"  # torch never reads the export


def test_probe_refuses_a_network_that_does_not_answer_with_a_depth_map(tmp_path: Path) -> None:
    path = classifier(tmp_path / "classifier.onnx")
    estimator = load_estimator(str(path), "onnxruntime")  # it loads: only running it shows what it is
    assert probe(estimator) == "its output is (), not one depth map of its 32x48 input"
    nodes = [helper.make_node("Sub", ["image", "image"], ["zero"]), helper.make_node("Div", ["zero", "zero"], ["nan"]),
             helper.make_node("ReduceMean", ["nan"], ["out"], axes=[1], keepdims=1)]
    broken = load_estimator(str(onnx_model(tmp_path / "nan.onnx", nodes, [1, 1, 32, 48])), "onnxruntime")
    assert probe(broken) == "its output on a test image is not finite anywhere"
