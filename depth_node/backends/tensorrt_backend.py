"""TensorRT backend: runs a built engine (TensorRT 10 or 11 Python API) with pinned host buffers via cuda-python.

No torch: robots often deploy TensorRT without it. Engines come from ``depth_node.engine_build`` with a JSON build
record beside them; an engine whose record does not match this machine (another GPU or TensorRT version, or a changed
ONNX file) is refused with the command that rebuilds it, never silently used. Each call reports the time of its
stages measured on the GPU stream (upload, execute, download) in ``last_timings``.
"""

from __future__ import annotations

import ctypes
import time
from pathlib import Path

import numpy as np

from depth_node.backends.nvidia import cuda_check, cuda_runtime, machine_key, require_gpu, tensorrt
from depth_node.backends.nvidia import unavailable_reason as unavailable_reason  # re-exported for the estimator
from depth_node.engine_build import engine_stale_reason, input_layout, read_record, record_path
from depth_node.model_files import file_sha256


def check_batch(batch: np.ndarray, dtype: np.dtype, layout: str) -> None:
    """Raise ValueError naming the problem unless ``batch`` is one C-contiguous image of the engine's dtype/layout."""
    want = "(1,H,W,3)" if layout == "uint8_nhwc" else "(1,3,H,W)"
    if not isinstance(batch, np.ndarray):
        raise ValueError(f"TensorRT input must be a numpy array {want} {np.dtype(dtype)}, got {type(batch).__name__}")
    if batch.ndim != 4 or batch.shape[0] != 1 or batch.shape[3 if layout == "uint8_nhwc" else 1] != 3:
        raise ValueError(f"TensorRT input must have shape {want}, got {batch.shape}")
    if batch.dtype != dtype:
        raise ValueError(f"TensorRT input must be {np.dtype(dtype)} {want}, got {batch.dtype}")
    if not batch.flags.c_contiguous:
        raise ValueError("TensorRT input must be C-contiguous (np.ascontiguousarray); got a strided view")


class PinnedArray:
    """A numpy array in page-locked host memory, so copies to and from the GPU are true asynchronous DMA."""

    def __init__(self, cudart, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.cudart = cudart
        nbytes = max(1, int(np.prod(shape)) * np.dtype(dtype).itemsize)
        self.pointer = int(cuda_check(cudart.cudaMallocHost(nbytes)))
        raw = (ctypes.c_byte * nbytes).from_address(self.pointer)
        self.array = np.frombuffer(raw, dtype=dtype, count=int(np.prod(shape))).reshape(shape)

    def free(self) -> None:
        if self.pointer:
            self.cudart.cudaFreeHost(self.pointer)
            self.pointer = 0


class TensorRTBackend:
    name = "tensorrt"

    def __init__(self, engine_path: str | Path) -> None:
        trt = tensorrt()
        self.cudart = cuda_runtime()
        require_gpu()
        engine_path = Path(engine_path)
        wanted = machine_key()
        if record_path(engine_path).exists():
            source = Path(read_record(engine_path).get("onnx", ""))
            if source.is_file():
                wanted["onnx_sha256"] = file_sha256(source)
        reason = engine_stale_reason(engine_path, wanted)
        if reason is not None:
            raise RuntimeError(f"engine {engine_path} cannot be used: {reason}; rebuild it with "
                               f"`depth-engine --onnx MODEL.onnx --engine {engine_path}`")
        record = read_record(engine_path)
        self.metadata = dict(record["metadata"])
        typing = record.get("typing", "weak")  # records from before strong typing have no such field
        self.precision = f"{record['precision']} ({typing}ly typed)"
        self.providers = ["TensorRT"]
        self.layout = input_layout(self.metadata)
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self.runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self.engine is None:
            raise RuntimeError(f"TensorRT {trt.__version__} could not deserialize {engine_path} (see its log above)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        depth = [n for n in outputs if n != "confidence"]
        if len(inputs) != 1 or len(depth) != 1:
            raise RuntimeError(f"engine {engine_path} has inputs {inputs} and outputs {outputs}; expected one input "
                               "and one depth output (and optionally `confidence`)")
        self.input_name, self.output_name = inputs[0], depth[0]
        self.output_names = [self.output_name, *(n for n in outputs if n == "confidence")]  # depth first
        self.has_confidence = len(self.output_names) == 2
        self.input_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.input_name)))
        expected = np.uint8 if self.layout == "uint8_nhwc" else np.float32
        if self.input_dtype != expected:
            raise RuntimeError(f"engine {engine_path} takes {self.input_dtype} input but its metadata says "
                               f"{self.layout}; rebuild it from a `depth-train export` model")
        shape = tuple(self.engine.get_tensor_shape(self.input_name))
        self.dynamic = any(d < 0 for d in shape)
        hw = (1, 2) if self.layout == "uint8_nhwc" else (2, 3)
        self.input_size = None if self.dynamic else (shape[hw[0]], shape[hw[1]])
        self.hw_axes = hw
        self.profile = self.engine.get_tensor_profile_shape(self.input_name, 0) if self.dynamic else None
        self.stream = cuda_check(self.cudart.cudaStreamCreate())
        self.events = [cuda_check(self.cudart.cudaEventCreate()) for _ in range(4)]
        self.device = f"cuda:0 {record['gpu']} TensorRT {trt.__version__} {self.precision}"
        self.shape: tuple[int, ...] | None = None
        self.device_buffers: list[int] = []
        self.host: list[PinnedArray] = []
        self.last_timings: dict[str, float] = {}

    def _bind(self, shape: tuple[int, ...]) -> None:
        """Set the input shape and (re)allocate device and pinned host buffers when the image size changes."""
        if self.dynamic:
            low, high = tuple(self.profile[0]), tuple(self.profile[2])
            if any(s < lo or s > hi for s, lo, hi in zip(shape, low, high)):
                a, b = self.hw_axes
                raise ValueError(f"input {shape[a]}x{shape[b]} is outside the engine's profile {low[a]}x{low[b]} .. "
                                 f"{high[a]}x{high[b]}; pass input_size or rebuild with other --min/--max sizes")
            self.context.set_input_shape(self.input_name, shape)
        elif shape != tuple(self.engine.get_tensor_shape(self.input_name)):
            raise ValueError(f"TensorRT input shape {shape} differs from the engine's fixed "
                             f"{tuple(self.engine.get_tensor_shape(self.input_name))}")
        self._free()
        self.host = [PinnedArray(self.cudart, shape, self.input_dtype)]
        self.host += [PinnedArray(self.cudart, tuple(self.context.get_tensor_shape(name)),
                                  np.dtype(tensorrt().nptype(self.engine.get_tensor_dtype(name))))
                      for name in self.output_names]
        self.device_buffers = [int(cuda_check(self.cudart.cudaMalloc(h.array.nbytes))) for h in self.host]
        for name, pointer in zip([self.input_name, *self.output_names], self.device_buffers):
            self.context.set_tensor_address(name, pointer)
        self.shape = shape

    def run(self, batch: np.ndarray) -> np.ndarray:
        """One image, (1,3,H,W) float32 or (1,H,W,3) uint8 as the engine takes it -> (H,W) float32 metres."""
        return self._execute(batch, 1)[0]

    def run_confidence(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """As ``run``, plus the confidence map (an engine computes it always; only its download is saved by ``run``)."""
        depth, confidence = self._execute(batch, 2)
        return depth, confidence

    def _execute(self, batch: np.ndarray, outputs: int) -> list[np.ndarray]:
        check_batch(batch, self.input_dtype, self.layout)
        if batch.shape != self.shape:
            self._bind(tuple(batch.shape))
        cudart, stream, events = self.cudart, self.stream, self.events
        h_in, h_outs = self.host[0], self.host[1:1 + outputs]
        d_in, d_outs = self.device_buffers[0], self.device_buffers[1:1 + outputs]
        t0 = time.perf_counter()
        np.copyto(h_in.array, batch)
        t1 = time.perf_counter()
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        cuda_check(cudart.cudaEventRecord(events[0], stream))
        cuda_check(cudart.cudaMemcpyAsync(d_in, h_in.pointer, h_in.array.nbytes, h2d, stream))
        cuda_check(cudart.cudaEventRecord(events[1], stream))
        if not self.context.execute_async_v3(int(stream)):
            raise RuntimeError("TensorRT inference failed (see its log above)")
        cuda_check(cudart.cudaEventRecord(events[2], stream))
        for h_out, d_out in zip(h_outs, d_outs):
            cuda_check(cudart.cudaMemcpyAsync(h_out.pointer, d_out, h_out.array.nbytes, d2h, stream))
        cuda_check(cudart.cudaEventRecord(events[3], stream))
        cuda_check(cudart.cudaStreamSynchronize(stream))
        gpu = [cuda_check(cudart.cudaEventElapsedTime(a, b)) for a, b in zip(events, events[1:])]
        self.last_timings = {"stage_in": 1e3 * (t1 - t0), "upload": gpu[0], "execute": gpu[1], "download": gpu[2]}
        return [h.array[0, 0].astype(np.float32) for h in h_outs]  # copies: pinned buffers are reused

    def _free(self) -> None:
        for pointer in getattr(self, "device_buffers", []):
            self.cudart.cudaFree(pointer)
        for host in getattr(self, "host", []):
            host.free()
        self.device_buffers, self.host = [], []

    def __del__(self) -> None:
        if getattr(self, "cudart", None) is not None:
            self._free()
            for event in getattr(self, "events", []):
                self.cudart.cudaEventDestroy(event)
            if getattr(self, "stream", None) is not None:
                self.cudart.cudaStreamDestroy(self.stream)
