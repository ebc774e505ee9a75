"""The estimator interface: backend parity on real frames, resizing, encodings, caching, the torch-free import, errors.

Tolerances: ONNX Runtime vs PyTorch (both fp32 on the CPU) within 1e-4 relative depth per pixel; TensorRT vs PyTorch
within 1e-2 relative per pixel (median 1e-3) in fp32 (TF32 off; kernels still differ in summation order) and 5e-2
(median 1e-2) for an fp16 export (strongly typed; fp32 head).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from depth_node_training.deployment.export import export_onnx

from depth_node.estimator import load_estimator, resize_depth, to_network_input, unavailable_reason

SIZE = (240, 320)  # model size for most tests: real 640x480 frames are resized down, depth resized back up
FRAMES = (0, 300, 599)
TENSORRT_MISSING = unavailable_reason("tensorrt")


@pytest.fixture(scope="session")
def onnx_model(checkpoint, tmp_path_factory) -> Path:
    return export_onnx(str(checkpoint), tmp_path_factory.mktemp("onnx") / "model.onnx", *SIZE)


@pytest.fixture(scope="session")
def frames(redkitchen) -> list[np.ndarray]:
    return [cv2.cvtColor(cv2.imread(str(redkitchen / f"frame-{i:06d}.color.jpg")), cv2.COLOR_BGR2RGB) for i in FRAMES]


@pytest.fixture(scope="session")
def reference(checkpoint):
    return load_estimator(str(checkpoint), "torch", input_size=SIZE)


def relative_error(depth: np.ndarray, ref: np.ndarray) -> np.ndarray:
    return np.abs(depth - ref) / ref


def test_onnxruntime_matches_pytorch_on_real_frames(onnx_model, reference, frames):
    estimator = load_estimator(str(onnx_model), "onnxruntime")
    assert (estimator.backend, estimator.input_size) == ("onnxruntime", SIZE)
    for image in frames:
        depth, timings = estimator.infer(image)
        ref, _ = reference.infer(image)
        assert depth.shape == ref.shape == image.shape[:2] and depth.dtype == np.float32
        assert relative_error(depth, ref).max() < 1e-4
        assert estimator.min_depth <= depth.min() and depth.max() <= estimator.max_depth
        assert set(timings) == {"preprocess", "inference", "postprocess"} and min(timings.values()) >= 0


def test_depth_comes_back_at_the_input_resolution_and_encoding_is_honoured(onnx_model, frames):
    """BGR input stated as bgr8 gives the same depth as RGB; any image size maps to depth of that size."""
    estimator = load_estimator(str(onnx_model), "onnxruntime")
    rgb = frames[0]
    depth, _ = estimator.infer(rgb, "rgb8")
    np.testing.assert_array_equal(estimator.infer(np.ascontiguousarray(rgb[..., ::-1]), "bgr8")[0], depth)
    assert not np.array_equal(estimator.infer(rgb, "bgr8")[0], depth)  # the encoding matters
    small = cv2.resize(rgb, (200, 150), interpolation=cv2.INTER_AREA)
    assert estimator.infer(small)[0].shape == (150, 200)
    at_model_size = cv2.resize(rgb, SIZE[::-1], interpolation=cv2.INTER_AREA)
    np.testing.assert_allclose(resize_depth(estimator.infer(at_model_size)[0], rgb.shape[:2]), depth, rtol=1e-6)


def test_dynamic_model_runs_at_the_image_size(checkpoint, tmp_path, frames):
    dynamic = load_estimator(str(export_onnx(str(checkpoint), tmp_path / "dyn.onnx", dynamic=True)), "onnxruntime")
    assert dynamic.input_size is None
    small = cv2.resize(frames[2], (160, 120), interpolation=cv2.INTER_AREA)
    ref, _ = load_estimator(str(checkpoint), "torch", input_size=(120, 160)).infer(small)
    assert relative_error(dynamic.infer(small)[0], ref).max() < 1e-4


def test_preprocessing_is_rgb_planes_in_0_255():
    image = np.zeros((4, 6, 3), np.uint8)
    image[..., 0], image[..., 2] = 10, 200
    batch = to_network_input(image, "rgb8", None)
    assert batch.shape == (1, 3, 4, 6) and batch.dtype == np.float32 and batch.flags.c_contiguous
    assert (batch[0, 0] == 10).all() and (batch[0, 2] == 200).all()
    assert (to_network_input(image, "bgr8", None)[0, 0] == 200).all()
    assert to_network_input(image, "rgb8", (8, 12)).shape == (1, 3, 8, 12)


def test_checkpoint_on_onnxruntime_runs_its_export_or_is_refused_with_the_command(checkpoint, tmp_path, frames):
    """The runtime never imports training: a checkpoint runs on ONNX Runtime through the export beside it; without
    one it is refused with the command that writes it, and ``auto`` runs it on PyTorch instead."""
    model = tmp_path / "model.pt"
    shutil.copyfile(checkpoint, model)
    with pytest.raises(RuntimeError, match=f"no model.onnx beside it: export it with `depth-train export --model "
                                           f"{model} --onnx {tmp_path / 'model.onnx'} --height 240 --width 320`"):
        load_estimator(str(model), "onnxruntime", engine_cache_dir=str(tmp_path), input_size=SIZE)
    assert load_estimator(str(model), engine_cache_dir=str(tmp_path), input_size=SIZE).backend == "torch"
    assert not list(tmp_path.rglob("*.onnx"))  # nothing was exported behind the user's back
    export_onnx(str(model), tmp_path / "model.onnx", *SIZE)
    estimator = load_estimator(str(model), "onnxruntime", engine_cache_dir=str(tmp_path), input_size=SIZE)
    reference = load_estimator(str(tmp_path / "model.onnx"), "onnxruntime")
    assert estimator.input_size == SIZE
    np.testing.assert_array_equal(estimator.infer(frames[1])[0], reference.infer(frames[1])[0])
    with pytest.raises(RuntimeError, match="was exported from another checkpoint or at another size"):
        load_estimator(str(model), "onnxruntime", input_size=(96, 128))


@pytest.mark.skipif(TENSORRT_MISSING is None, reason="TensorRT and a GPU are present: auto picks TensorRT here")
def test_auto_picks_onnxruntime_without_tensorrt_and_checkpoint_defaults_to_its_size(checkpoint, onnx_model):
    assert load_estimator(str(onnx_model)).backend == "onnxruntime"
    torch_estimator = load_estimator(str(checkpoint), "torch")
    meta = torch_estimator.metadata
    assert torch_estimator.input_size == (int(meta["input_height"]), int(meta["input_width"]))


def test_importing_and_running_onnx_does_not_import_torch(onnx_model, checkpoint, tmp_path):
    """Robots without torch: an .onnx file, or a checkpoint shipped with its export beside it, runs torch-free."""
    shipped = tmp_path / "shipped.pt"
    shutil.copyfile(checkpoint, shipped)
    export_onnx(str(shipped), tmp_path / "shipped.onnx", *SIZE)
    code = (
        "import sys, numpy as np\n"
        "from depth_node.estimator import load_estimator\n"
        f"for model in ({str(onnx_model)!r}, {str(shipped)!r}):\n"
        f"    e = load_estimator(model, 'onnxruntime', engine_cache_dir={str(tmp_path / 'cache')!r})\n"
        "    depth, _ = e.infer(np.zeros((48, 64, 3), np.uint8))\n"
        "    assert depth.shape == (48, 64), depth.shape\n"
        "print(sorted(m for m in ('torch', 'tensorrt', 'depth_node_training') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())  # nothing was exported


def test_errors_name_the_problem(onnx_model, checkpoint, tmp_path):
    estimator = load_estimator(str(onnx_model), "onnxruntime")
    with pytest.raises(ValueError, match="encoding 'mono8'"):
        estimator.infer(np.zeros((4, 4, 3), np.uint8), "mono8")
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        estimator.infer(np.zeros((4, 4), np.float32))
    with pytest.raises(FileNotFoundError, match="nothing.onnx"):
        load_estimator(str(tmp_path / "nothing.onnx"))
    with pytest.raises(ValueError, match="unknown file type '.bin'"):
        load_estimator(str(tmp_path / "model.bin"))
    with pytest.raises(ValueError, match="unknown backend 'cuda'"):
        load_estimator(str(onnx_model), "cuda")
    with pytest.raises(ValueError, match="torch cannot run onnx files"):
        load_estimator(str(onnx_model), "torch")
    with pytest.raises(ValueError, match="fixed input size 240x320"):
        load_estimator(str(onnx_model), "onnxruntime", input_size=(480, 640))
    (tmp_path / "model.engine").write_bytes(b"x")
    with pytest.raises(ValueError, match="onnxruntime cannot run engine files"):
        load_estimator(str(tmp_path / "model.engine"), "onnxruntime")


@pytest.mark.skipif(TENSORRT_MISSING is None, reason="TensorRT and a GPU are present")
def test_missing_tensorrt_says_what_to_install(onnx_model):
    with pytest.raises(ImportError, match="tensorrt"):
        load_estimator(str(onnx_model), "tensorrt")
    from depth_node_training.cli import main as depth_train

    with pytest.raises(SystemExit):
        depth_train(["build-engine", "--onnx", str(onnx_model), "--engine", "/tmp/never-built.engine"])


def test_requested_gpu_provider_that_does_not_load_is_reported_not_hidden(onnx_model, tmp_path, caplog):
    """This onnxruntime build has no CUDA provider: asked for it, the session runs on the CPU, and says so."""
    import onnxruntime as ort

    from depth_node.backends.onnxruntime_backend import OnnxRuntimeBackend

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider: the fallback cannot be provoked here")
    runner = OnnxRuntimeBackend(onnx_model, tmp_path, requested=["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert runner.providers == ["CPUExecutionProvider"] and runner.missing == ["CUDAExecutionProvider"]
    assert "could not load CUDAExecutionProvider" in caplog.text
    estimator = load_estimator(str(onnx_model), "onnxruntime")
    assert estimator.providers == ["CPUExecutionProvider"] and estimator.precision == "fp32"
    assert "providers CPUExecutionProvider, precision fp32" in repr(estimator)


def test_provider_choice_and_reported_precision():
    from depth_node.backends.onnxruntime_backend import missing_providers, providers, session_precision

    gpu = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    names = [p[0] if isinstance(p, tuple) else p for p in providers(Path("/c"), gpu, tensorrt_installed=True)]
    assert names == gpu
    assert providers(Path("/c"), gpu, tensorrt_installed=False) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert providers(Path("/c"), ["CPUExecutionProvider"], tensorrt_installed=True) == ["CPUExecutionProvider"]
    trt = {"TensorrtExecutionProvider": {"trt_fp16_enable": "1", "trt_int8_enable": "0"}}
    assert session_precision("fp32", gpu, trt) == "fp16 (TensorRT EP trt_fp16_enable)"  # said, not silent
    assert session_precision("fp32", gpu[1:], trt) == "fp32"
    assert session_precision("int8", ["CPUExecutionProvider"], {}) == "int8 (Q/DQ)"
    assert missing_providers(providers(Path("/c"), gpu, True), ["CPUExecutionProvider"]) == gpu[:2]


def test_uint8_input_model_takes_camera_bytes_and_matches_float_input(checkpoint, onnx_model, tmp_path, frames):
    """--uint8-input: (1,H,W,3) uint8 in, layout change and normalisation inside the graph, same depth."""
    uint8 = load_estimator(str(export_onnx(str(checkpoint), tmp_path / "u8.onnx", *SIZE, uint8_input=True)),
                           "onnxruntime")
    assert uint8.input_format == "uint8_nhwc" and uint8.input_size == SIZE
    batch = to_network_input(frames[0], "bgr8", SIZE, "uint8_nhwc")
    assert batch.shape == (1, *SIZE, 3) and batch.dtype == np.uint8 and batch.flags.c_contiguous
    reference = load_estimator(str(onnx_model), "onnxruntime")
    for image in frames[:2]:
        np.testing.assert_allclose(uint8.infer(image)[0], reference.infer(image)[0], rtol=1e-5, atol=1e-6)
        bgr = np.ascontiguousarray(image[..., ::-1])
        np.testing.assert_array_equal(uint8.infer(bgr, "bgr8")[0], uint8.infer(image)[0])


@pytest.mark.skipif(TENSORRT_MISSING is not None, reason=f"TensorRT unavailable: {TENSORRT_MISSING}")
@pytest.mark.parametrize("precision, uint8_input, tol, median_tol", [("fp32", False, 1e-2, 1e-3),
                                                                     ("fp16", False, 5e-2, 1e-2),
                                                                     ("fp32", True, 1e-2, 1e-3)])
def test_tensorrt_matches_pytorch_on_real_frames(checkpoint, reference, frames, tmp_path, precision, uint8_input, tol,
                                                 median_tol):
    from depth_node.backends.tensorrt_backend import TensorRTBackend
    from depth_node.engine_build import cached_engine, read_record

    model = export_onnx(str(checkpoint), tmp_path / "m.onnx", *SIZE, precision=precision, uint8_input=uint8_input)
    engine = cached_engine(model, tmp_path)
    record = read_record(engine)
    assert (record["precision"], record["typing"]) == (precision, "strong")
    estimator = load_estimator(str(engine), "tensorrt")
    assert (estimator.backend, estimator.input_size) == ("tensorrt", SIZE)
    for image in frames:
        depth, timings = estimator.infer(image)
        err = relative_error(depth, reference.infer(image)[0])
        assert err.max() < tol and np.median(err) < median_tol
        assert {"upload", "execute", "download"} <= set(timings)
    assert estimator.has_confidence == reference.has_confidence  # the shipped model's engine has both outputs
    if estimator.has_confidence:
        _, confidence, _ = estimator.infer_with_confidence(frames[0])
        assert np.abs(confidence - reference.infer_with_confidence(frames[0])[1]).mean() < 0.02
    with pytest.raises(ValueError, match="C-contiguous|shape|dtype|float32|uint8"):
        estimator.runner.run(np.zeros((1, 3, 5, 5), np.float64))
    assert cached_engine(model, tmp_path) == engine  # reused, not rebuilt
    Path(f"{engine}.json").write_text(json.dumps({**record, "tensorrt": "0.0.0"}))
    with pytest.raises(RuntimeError, match="cannot be used"):
        TensorRTBackend(engine)
