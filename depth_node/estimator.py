"""One inference interface over TensorRT, ONNX Runtime and PyTorch: an HR color image in, metric depth out.

``load_estimator`` picks the backend (``auto``: TensorRT, then ONNX Runtime, then PyTorch, the first that is installed
and can run the model) and ``Estimator.infer`` does the same pre/post-processing for all of them, so every backend is
measured on the same data with the same code around it. ``Estimator.infer_with_confidence`` also returns the model's
confidence map (models exported with a ``confidence`` output, see ``depth_node.network.confidence_head``), resized the
same way; ``infer`` does not ask for it (PyTorch skips it and ONNX Runtime runs the graph cut down to the depth; a
TensorRT engine computes it anyway and only its download is saved).

Sizes and intrinsics: a model with a fixed input size (an exported ONNX/engine, or a checkpoint's configured size) sees
the image resized to that size; the predicted depth is then resized back to the image's own resolution. The depth map
is therefore pixel-aligned with the input image and the input ``camera_info`` (K, distortion) stays valid for it
unchanged: no intrinsics are scaled anywhere. Both resizes use OpenCV's pixel-centre convention, the same one that
scales K as ``fx' = fx * s``, ``cx' = (cx + 0.5) * s - 0.5``, so the round trip adds no sub-pixel shift.

Importing this module imports neither torch nor onnxruntime nor tensorrt: each backend imports its runtime when chosen.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import time
from pathlib import Path
from typing import Protocol

import numpy as np

from .model_files import ONNX_SUFFIX, cache_dir, file_sha256, model_kind, onnx_metadata
from .sensor_confidence import sensor_stage

BACKENDS = ("tensorrt", "onnxruntime", "torch")  # the order ``auto`` tries
ENCODINGS = ("rgb8", "bgr8")
log = logging.getLogger(__name__)


class Backend(Protocol):
    """What a backend module provides: one forward pass on a prepared batch."""

    name: str
    device: str  # where it runs, e.g. "cpu", "cuda:0 (NVIDIA H100)", "CUDAExecutionProvider"
    input_size: tuple[int, int] | None  # fixed (height, width) of the model, None when it takes any size
    metadata: dict[str, str]  # the export metadata (see depth_node.network.deploy_model.deployment_metadata)
    providers: list[str]  # what actually runs it, e.g. ["CUDAExecutionProvider", "CPUExecutionProvider"]
    precision: str  # what it computes in, e.g. "fp32", "fp16 (TensorRT EP trt_fp16_enable)", "int8 (Q/DQ)"

    has_confidence: bool  # the model has a calibrated ``confidence`` output (``depth-train calibrate-confidence``)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """(1,3,H,W) float32 RGB 0..255, or (1,H,W,3) uint8 RGB for uint8 exports -> (H,W) float32 metres."""
        ...

    def run_confidence(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """As ``run``, plus the (H,W) float32 confidence in [0, 1] (only when ``has_confidence``)."""
        ...


class Estimator:
    """A loaded model on one backend; ``infer`` maps an image to depth at the image's resolution."""

    def __init__(self, runner: Backend, input_size: tuple[int, int] | None) -> None:
        self.runner = runner
        self.backend = runner.name
        self.device = runner.device
        self.metadata = dict(runner.metadata)
        self.providers = list(getattr(runner, "providers", [runner.device]))
        self.precision = str(getattr(runner, "precision", "fp32"))
        self.input_size = input_size  # what images are resized to; None: run at the image's own size
        self.input_format = self.metadata.get("input_format", "float32_nchw")
        self.min_depth = float(self.metadata["min_depth"])
        self.max_depth = float(self.metadata["max_depth"])
        self.has_confidence = bool(getattr(runner, "has_confidence", False))
        # the calibrated sharpening of the confidence by a live LR depth (depth_node.sensor_confidence), if any
        self.sensor_stage = sensor_stage(self.metadata) if self.has_confidence else None

    def __repr__(self) -> str:
        size = "any size" if self.input_size is None else "{}x{}".format(*self.input_size)
        return (f"Estimator({self.backend}, providers {'+'.join(self.providers)}, precision "
                f"{self.precision}, input {size} {self.input_format}, depth {self.min_depth}..{self.max_depth} m)")

    def infer(self, image: np.ndarray, encoding: str = "rgb8") -> tuple[np.ndarray, dict[str, float]]:
        """HxWx3 uint8 image (``rgb8`` or ``bgr8``) -> (HxW float32 depth in metres, stage timings in ms).

        The timings are preprocess, inference and postprocess, plus whatever stages the backend reports inside
        inference (the TensorRT runner: ``stage_in``, ``upload``, ``execute``, ``download``).
        """
        depth, _, timings = self._infer(image, encoding, False)
        return depth, timings

    def infer_with_confidence(self, image: np.ndarray, encoding: str = "rgb8"
                              ) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
        """As ``infer``, plus the HxW float32 confidence in [0, 1] (see ``depth_node.network.confidence_head``: the
        probability that the pixel's relative depth error is below the calibration's threshold). ValueError when the
        model has no confidence output."""
        if not self.has_confidence:
            raise ValueError("this model has no confidence output: calibrate it (`depth-train calibrate-confidence`) "
                             "and re-export it (`depth-train export`)")
        return self._infer(image, encoding, True)

    def _infer(self, image: np.ndarray, encoding: str, confidence: bool
               ) -> tuple[np.ndarray, np.ndarray | None, dict[str, float]]:
        t0 = time.perf_counter()
        batch = to_network_input(image, encoding, self.input_size, self.input_format)
        t1 = time.perf_counter()
        depth, conf = self.runner.run_confidence(batch) if confidence else (self.runner.run(batch), None)
        t2 = time.perf_counter()
        depth = resize_depth(depth, image.shape[:2])
        if conf is not None:
            conf = resize_depth(conf, image.shape[:2])
        t3 = time.perf_counter()
        timings = {"preprocess": 1e3 * (t1 - t0), "inference": 1e3 * (t2 - t1), "postprocess": 1e3 * (t3 - t2)}
        timings.update(getattr(self.runner, "last_timings", {}))
        return depth, conf, timings


def _cv2():
    try:
        import cv2
    except ImportError as error:
        raise ImportError("resizing images to the model size needs OpenCV: `pip install opencv-python-headless` "
                          "(or `apt install python3-opencv` on a ROS machine)") from error
    return cv2


def to_network_input(image: np.ndarray, encoding: str, size: tuple[int, int] | None,
                     input_format: str = "float32_nchw") -> np.ndarray:
    """HxWx3 uint8 -> (1,3,h,w) float32 RGB 0..255 at ``size`` (None: unchanged); area filter when shrinking.

    ``uint8_nhwc`` models (``depth-train export --uint8-input``) get (1,h,w,3) uint8 RGB instead: a quarter of the
    bytes to upload, converted and normalised inside the graph.
    """
    if encoding not in ENCODINGS:
        raise ValueError(f"unsupported image encoding {encoding!r}; supported: {', '.join(ENCODINGS)}")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 image, got shape {image.shape} dtype {image.dtype}")
    if size is not None and tuple(size) != image.shape[:2]:
        h, w = size
        shrink = h * w < image.shape[0] * image.shape[1]
        cv2 = _cv2()
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    if input_format == "uint8_nhwc":
        return np.ascontiguousarray((image[..., ::-1] if encoding == "bgr8" else image)[None])
    planes = image.transpose(2, 0, 1)
    if encoding == "bgr8":
        planes = planes[::-1]
    return np.ascontiguousarray(planes[None], dtype=np.float32)


def resize_depth(depth: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Depth (h,w) back to the image's (H,W) by bilinear interpolation (the network's output is smooth)."""
    depth = np.asarray(depth, dtype=np.float32)
    if depth.shape == tuple(size):
        return depth
    cv2 = _cv2()
    return cv2.resize(depth, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


def _backend_module(name: str):
    return importlib.import_module(f"depth_node.backends.{name}_backend")


def unavailable_reason(backend: str) -> str | None:
    """Why ``backend`` cannot run here (what to install), or None when it can."""
    if backend == "tensorrt":
        return _backend_module("tensorrt").unavailable_reason()
    package = {"onnxruntime": "onnxruntime", "torch": "torch"}[backend]
    if importlib.util.find_spec(package) is None:
        hint = {"onnxruntime": "`pip install onnxruntime` (CPU) or `pip install onnxruntime-gpu` (CUDA)",
                "torch": "`pip install torch`"}[backend]
        return f"{package} is not installed: {hint}"
    return None


def _candidates(kind: str, backend: str) -> list[str]:
    allowed = {"checkpoint": BACKENDS, "onnx": ("tensorrt", "onnxruntime"), "engine": ("tensorrt",)}[kind]
    if backend == "auto":
        return list(allowed)
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose auto, {', '.join(BACKENDS)}")
    if backend not in allowed:
        need = {"torch": "a PyTorch checkpoint (.pt)", "onnxruntime": "an ONNX model or a checkpoint",
                "tensorrt": "an engine, an ONNX model or a checkpoint"}[backend]
        raise ValueError(f"backend {backend} cannot run {kind} files; it needs {need}")
    return [backend]


def onnx_for_checkpoint(checkpoint: Path, input_size: tuple[int, int] | None) -> Path:
    """The checkpoint's ONNX export shipped beside it (``model.onnx`` next to ``model.pt``, recording the checkpoint's
    hash, at the size asked for). Without one, RuntimeError with the command that writes it: exporting needs the
    training package, which the runtime never imports (``auto`` then runs the checkpoint on PyTorch)."""
    sibling = checkpoint.with_suffix(ONNX_SUFFIX)
    if sibling.exists():
        meta = onnx_metadata(sibling)
        size = (int(meta.get("input_height", 0)), int(meta.get("input_width", 0)))
        if meta.get("source_sha256") == file_sha256(checkpoint) and input_size in (None, size):
            return sibling
        why = f"{sibling} was exported from another checkpoint or at another size"
    else:
        why = f"no {sibling.name} beside it"
    size_args = "" if input_size is None else " --height {} --width {}".format(*input_size)
    raise RuntimeError(f"model {checkpoint} is a PyTorch checkpoint and {why}: export it with `depth-train export "
                       f"--model {checkpoint} --onnx {sibling}{size_args}`, or run it on backend torch")


def _open(backend: str, kind: str, path: Path, cache: Path, input_size: tuple[int, int] | None) -> Backend:
    if backend == "torch":
        return _backend_module("torch").TorchBackend(path)
    if kind == "checkpoint":
        path, kind = onnx_for_checkpoint(path, input_size), "onnx"
    if backend == "onnxruntime":
        return _backend_module("onnxruntime").OnnxRuntimeBackend(path, cache)
    if kind == "onnx":
        from depth_node.engine_build import cached_engine

        path = cached_engine(path, cache)
    return _backend_module("tensorrt").TensorRTBackend(path)


def _run_size(runner: Backend, kind: str, input_size: tuple[int, int] | None) -> tuple[int, int] | None:
    fixed = runner.input_size
    if input_size is not None:
        input_size = (int(input_size[0]), int(input_size[1]))
        if min(input_size) <= 0:
            raise ValueError(f"input_size must be positive (height, width), got {input_size}")
        if fixed is not None and fixed != input_size:
            raise ValueError(f"the model has a fixed input size {fixed[0]}x{fixed[1]}; it cannot run at "
                             f"{input_size[0]}x{input_size[1]} (export it at that size or with --dynamic)")
        return input_size
    if fixed is None and kind == "checkpoint":  # PyTorch takes any size: use the size the checkpoint is deployed at
        meta = runner.metadata
        return int(meta["input_height"]), int(meta["input_width"])
    return fixed


def load_estimator(model: str | None = None, backend: str = "auto", engine_cache_dir: str | None = None,
                   input_size: tuple[int, int] | None = None) -> Estimator:
    """Load ``model`` (.pt checkpoint, .onnx, or TensorRT .engine; None: the package's default model) on ``backend``.

    ``auto`` tries TensorRT, ONNX Runtime, then PyTorch, skipping those not installed or unable to run this file
    (and, with a warning, one that fails to load). A checkpoint on ONNX Runtime or TensorRT runs through the ONNX
    export shipped beside it (``onnx_for_checkpoint``), and an ONNX model on TensorRT is built into an engine in the
    cache dir (``depth_node.engine_build``), keyed by
    the ONNX file's hash, the GPU, the TensorRT version, precision, profile and workspace, so a stale engine is rebuilt
    and never used. ``input_size`` (height, width) sets what images are resized to (checkpoints and dynamic models
    only; default: the model's own size). The estimator's ``providers`` and ``precision`` say what actually runs.
    """
    if model:
        path = Path(model).expanduser()
    else:
        from depth_node.default_model import default_model_path

        path = Path(default_model_path())
    kind = model_kind(path)
    if not path.exists():
        raise FileNotFoundError(f"model file {path} does not exist")
    candidates = _candidates(kind, backend)
    cache = cache_dir(engine_cache_dir)
    reasons = []
    for name in candidates:
        reason = unavailable_reason(name)
        if reason is None:
            try:
                runner = _open(name, kind, path, cache, input_size)
                return Estimator(runner, _run_size(runner, kind, input_size))
            except (ImportError, RuntimeError, OSError) as error:
                if backend != "auto":
                    raise
                reason = f"failed to load: {error}"
                log.warning("backend %s: %s; trying the next one", name, reason)
        elif backend != "auto":
            raise ImportError(f"backend {name} is unavailable: {reason}")
        reasons.append(f"{name}: {reason}")
    raise ImportError(f"no backend can run {path}:\n  " + "\n  ".join(reasons))
