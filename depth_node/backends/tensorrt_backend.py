"""TensorRT backend: engine build and inference with the TensorRT 10 Python API, device buffers via cuda-python.

No torch: robots often deploy TensorRT without it. Every engine has a JSON build record beside it
(``model.engine.json``) holding the ONNX file's hash, the GPU, the TensorRT version, the precision and the model's
export metadata. The cache names engines by that key, and an engine whose record does not match this machine (another
GPU or TensorRT version, or a changed ONNX file) is refused with the command that rebuilds it: never silently used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from depth_node.estimator import file_sha256, onnx_metadata

INSTALL_HINT = ("install TensorRT 10 and the CUDA Python bindings of the driver's CUDA major version, e.g. "
                "`pip install 'tensorrt-cu12>=10,<11' 'cuda-python>=12,<13'` (Jetson: JetPack's python3-libnvinfer "
                "and `pip install 'cuda-python>=12,<13'`)")
WORKSPACE_GIB = 2.0

log = logging.getLogger(__name__)


def tensorrt():
    try:
        import tensorrt as trt
    except ImportError as error:
        raise ImportError(f"the tensorrt backend needs the tensorrt Python package: {INSTALL_HINT}") from error
    return trt


def cuda_runtime():
    """cuda-python's runtime API module (``cuda.bindings.runtime`` since 12.6, ``cuda.cudart`` before)."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        try:
            from cuda import cudart as runtime
        except ImportError as error:
            raise ImportError(f"the tensorrt backend needs cuda-python for GPU buffers: {INSTALL_HINT}") from error
    return runtime


def cuda_check(result: tuple) -> Any:
    """cuda-python calls return ``(error, *values)``: raise on an error, else return the value(s)."""
    error, *values = result
    if error != cuda_runtime().cudaError_t.cudaSuccess:
        raise RuntimeError(f"CUDA call failed: {error!r}")
    return values[0] if len(values) == 1 else tuple(values) or None


def unavailable_reason() -> str | None:
    """Why TensorRT cannot run here (naming what to install), or None."""
    try:
        tensorrt()
        cudart = cuda_runtime()
    except ImportError as error:
        return str(error)
    error, count = cudart.cudaGetDeviceCount()
    if error != cudart.cudaError_t.cudaSuccess or count == 0:
        return f"no CUDA GPU is usable ({error!r}): TensorRT needs an NVIDIA GPU with its driver"
    return None


def require_gpu() -> None:
    reason = unavailable_reason()
    if reason is not None:
        raise RuntimeError(reason)


def machine_key() -> dict[str, str]:
    """What makes an engine valid on this machine: the GPU model and compute capability, the TensorRT version."""
    props = cuda_check(cuda_runtime().cudaGetDeviceProperties(0))
    name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
    return {"gpu": name.rstrip("\x00").strip(), "compute_capability": f"{props.major}.{props.minor}",
            "tensorrt": tensorrt().__version__}


def record_path(engine_path: Path) -> Path:
    return engine_path.with_name(engine_path.name + ".json")


def read_record(engine_path: Path) -> dict[str, Any]:
    path = record_path(engine_path)
    if not path.exists():
        raise RuntimeError(f"engine {engine_path} has no build record {path.name}; build engines with "
                           "`depth-train build-engine` so their GPU, TensorRT version and model can be checked")
    return json.loads(path.read_text())


def stale_reason(engine_path: Path, onnx_sha256: str | None = None, precision: str | None = None) -> str | None:
    """Why the engine must not be used on this machine (or for this ONNX file / precision), or None."""
    if not engine_path.exists():
        return "it does not exist"
    try:
        record = read_record(engine_path)
    except (RuntimeError, ValueError) as error:
        return str(error)
    for key, value in machine_key().items():
        if record.get(key) != value:
            return f"it was built for {key} {record.get(key)!r}, this machine has {value!r}"
    source = Path(record.get("onnx", ""))
    expected = onnx_sha256 or (file_sha256(source) if source.is_file() else record.get("onnx_sha256"))
    if record.get("onnx_sha256") != expected:
        return f"the ONNX model {source} changed since the engine was built"
    if precision is not None and record.get("precision") != precision:
        return f"it is {record.get('precision')}, {precision} was asked for"
    return None


def resolve_precision(builder: Any, fp16: bool | None) -> str:
    """fp16 where the GPU has fast fp16 (the default), fp32 otherwise or when asked."""
    trt = tensorrt()
    has_flag = hasattr(trt.BuilderFlag, "FP16")  # TensorRT 11 removed it (strongly typed networks only)
    fast = has_flag and bool(getattr(builder, "platform_has_fast_fp16", False))
    if fp16 is None:
        return "fp16" if fast else "fp32"
    if fp16 and not has_flag:
        raise RuntimeError(f"TensorRT {trt.__version__} has no BuilderFlag.FP16 (removed in TensorRT 11): install "
                           "`tensorrt-cu12>=10,<11` for fp16 engines, or build fp32 with --no-fp16")
    if fp16 and not fast:
        log.warning("this GPU has no fast fp16; building an fp16 engine anyway as asked")
    return "fp16" if fp16 else "fp32"


def precision_for(fp16: bool | None) -> str:
    """The precision a build with this ``fp16`` choice gets on this GPU ("fp16" or "fp32")."""
    trt = tensorrt()
    return resolve_precision(trt.Builder(trt.Logger(trt.Logger.WARNING)), fp16)


def default_profile(metadata: dict[str, str]) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """(min, opt, max) (height, width) for a dynamic model: opt at the trained size, from a quarter to twice it."""
    h, w = int(metadata["input_height"]), int(metadata["input_width"])
    return (max(32, h // 4), max(32, w // 4)), (h, w), (2 * h, 2 * w)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def build_engine(onnx_path: Path, engine_path: Path, fp16: bool | None = None, calibrator: Any = None,
                 timing_cache: Path | None = None,
                 profile: tuple[tuple[int, int], tuple[int, int], tuple[int, int]] | None = None,
                 workspace_gib: float = WORKSPACE_GIB) -> Path:
    """Parse ``onnx_path`` and build a serialized engine plus its build record; returns ``engine_path``.

    A dynamic model gets one optimisation profile (``profile`` or ``default_profile``); ``calibrator`` (an
    ``IInt8EntropyCalibrator2``) adds INT8 on top of fp16/fp32. ``timing_cache`` is loaded if present and updated,
    which makes rebuilds of the same layers on the same GPU much faster.
    """
    trt = tensorrt()
    require_gpu()
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    metadata = onnx_metadata(onnx_path)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "\n".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT cannot parse {onnx_path}:\n{errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    precision = resolve_precision(builder, fp16)
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    image = network.get_input(0)
    shapes = None
    if any(d < 0 for d in image.shape):
        (h0, w0), (h1, w1), (h2, w2) = profile or default_profile(metadata)
        shapes = [(1, 3, h0, w0), (1, 3, h1, w1), (1, 3, h2, w2)]
        opt_profile = builder.create_optimization_profile()
        opt_profile.set_shape(image.name, *shapes)
        config.add_optimization_profile(opt_profile)
        if calibrator is not None:
            config.set_calibration_profile(opt_profile)
    if calibrator is not None:
        if not hasattr(trt.BuilderFlag, "INT8"):
            raise RuntimeError(f"TensorRT {trt.__version__} has no implicit INT8 calibration (removed in TensorRT 11): "
                               "install `tensorrt-cu12>=10,<11`")
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = calibrator
        precision = f"int8+{precision}"
    if timing_cache is not None:
        cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.exists() else b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
    log.info("building a %s TensorRT engine from %s (minutes on a small GPU)", precision, onnx_path)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path} (see its log above)")
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    if timing_cache is not None:
        timing_cache.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(timing_cache, bytes(config.get_timing_cache().serialize()))
    _atomic_write(engine_path, bytes(serialized))
    record = {**machine_key(), "precision": precision, "onnx": str(onnx_path.resolve()),
              "onnx_sha256": file_sha256(onnx_path), "profile": shapes, "metadata": metadata}
    _atomic_write(record_path(engine_path), json.dumps(record, indent=2).encode())
    return engine_path


def timing_cache_path(cache: Path) -> Path:
    key = machine_key()
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", f"{key['gpu']}-sm{key['compute_capability']}-trt{key['tensorrt']}")
    return cache / f"timing-{slug}.cache"


def cached_engine(onnx_path: Path, cache: Path, fp16: bool | None = None) -> Path:
    """The engine for ``onnx_path`` in ``cache``, built when no engine with the same key is there."""
    require_gpu()
    precision = precision_for(fp16)
    onnx_sha = file_sha256(onnx_path)
    key = {**machine_key(), "precision": precision, "onnx_sha256": onnx_sha}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    engine_path = Path(cache) / f"{Path(onnx_path).stem}-{digest}.engine"
    reason = stale_reason(engine_path, onnx_sha, precision)
    if reason is not None:
        log.info("building TensorRT engine %s: %s", engine_path, reason)
        build_engine(Path(onnx_path), engine_path, precision == "fp16", timing_cache=timing_cache_path(Path(cache)))
    return engine_path


class TensorRTBackend:
    name = "tensorrt"

    def __init__(self, engine_path: str | Path) -> None:
        trt = tensorrt()
        self.cudart = cuda_runtime()
        require_gpu()
        engine_path = Path(engine_path)
        reason = stale_reason(engine_path)
        if reason is not None:
            onnx = read_record(engine_path).get("onnx", "M.onnx") if record_path(engine_path).exists() else "M.onnx"
            raise RuntimeError(f"engine {engine_path} cannot be used: {reason}; rebuild it with "
                               f"`depth-train build-engine --onnx {onnx} --engine {engine_path}`")
        record = read_record(engine_path)
        self.metadata = dict(record["metadata"])
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self.runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self.engine is None:
            raise RuntimeError(f"TensorRT {trt.__version__} could not deserialize {engine_path} (see its log above)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise RuntimeError(f"engine {engine_path} has inputs {inputs} and outputs {outputs}; expected one each")
        self.input_name, self.output_name = inputs[0], outputs[0]
        if self.engine.get_tensor_dtype(self.input_name) != trt.float32:
            raise RuntimeError(f"engine {engine_path} input is not float32; export with `depth-train export`")
        shape = tuple(self.engine.get_tensor_shape(self.input_name))
        self.dynamic = any(d < 0 for d in shape)
        self.input_size = None if self.dynamic else (shape[2], shape[3])
        self.profile = self.engine.get_tensor_profile_shape(self.input_name, 0) if self.dynamic else None
        self.output_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.output_name)))
        self.stream = cuda_check(self.cudart.cudaStreamCreate())
        self.device = f"cuda:0 {record['gpu']} TensorRT {trt.__version__} {record['precision']}"
        self.shape: tuple[int, ...] | None = None
        self.device_buffers: list[int] = []

    def _bind(self, shape: tuple[int, ...]) -> None:
        """Set the input shape and (re)allocate device buffers when the image size changes."""
        if self.dynamic:
            low, high = tuple(self.profile[0]), tuple(self.profile[2])
            if any(s < lo or s > hi for s, lo, hi in zip(shape, low, high)):
                raise ValueError(f"input {shape[2]}x{shape[3]} is outside the engine's profile {low[2]}x{low[3]} .. "
                                 f"{high[2]}x{high[3]}; pass input_size or rebuild with other --min/--max sizes")
            self.context.set_input_shape(self.input_name, shape)
        self._free()
        out_shape = tuple(self.context.get_tensor_shape(self.output_name))
        self.host_output = np.empty(out_shape, self.output_dtype)
        nbytes_in = int(np.prod(shape)) * 4
        self.device_buffers = [cuda_check(self.cudart.cudaMalloc(nbytes_in)),
                               cuda_check(self.cudart.cudaMalloc(self.host_output.nbytes))]
        self.context.set_tensor_address(self.input_name, int(self.device_buffers[0]))
        self.context.set_tensor_address(self.output_name, int(self.device_buffers[1]))
        self.shape = shape

    def run(self, batch: np.ndarray) -> np.ndarray:
        if batch.shape != self.shape:
            self._bind(tuple(batch.shape))
        cudart, stream = self.cudart, self.stream
        d_in, d_out = self.device_buffers
        cuda_check(cudart.cudaMemcpyAsync(d_in, batch.ctypes.data, batch.nbytes,
                                          cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, stream))
        if not self.context.execute_async_v3(int(stream)):
            raise RuntimeError("TensorRT inference failed (see its log above)")
        cuda_check(cudart.cudaMemcpyAsync(self.host_output.ctypes.data, d_out, self.host_output.nbytes,
                                          cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream))
        cuda_check(cudart.cudaStreamSynchronize(stream))
        return self.host_output[0, 0].astype(np.float32)  # a copy: the host buffer is reused by the next call

    def _free(self) -> None:
        for pointer in getattr(self, "device_buffers", []):
            self.cudart.cudaFree(pointer)
        self.device_buffers = []

    def __del__(self) -> None:
        if getattr(self, "cudart", None) is not None:
            self._free()
            if getattr(self, "stream", None) is not None:
                self.cudart.cudaStreamDestroy(self.stream)
