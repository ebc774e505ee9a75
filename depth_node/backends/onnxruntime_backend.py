"""ONNX Runtime backend: TensorRT and CUDA execution providers when this onnxruntime build has them, else the CPU.

What it asked for and what it got can differ: a GPU provider whose libraries (CUDA, cuDNN, TensorRT) do not load makes
ONNX Runtime fall back to the CPU with only a log line. So pip-installed NVIDIA libraries are preloaded first
(``onnxruntime.preload_dlls``, ONNX Runtime >= 1.21), and after the session is made the providers it actually uses are
read back, reported (``providers``, ``precision``, ``device``) and any requested GPU provider that did not load is
warned about.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")

log = logging.getLogger(__name__)


def providers(cache: Path, available: list[str] | None = None, tensorrt_installed: bool | None = None,
              model_precision: str = "fp32") -> list:
    """Fastest first. The TensorRT EP is only offered when TensorRT itself is installed (onnxruntime-gpu lists it
    regardless and would log an error per session); its engines go to the same cache dir as ours. On an fp32 model it
    runs fp16 (reported as the session's precision); fp16 and Q/DQ models get no precision flag, so the EP builds them
    strongly typed in their own precision."""
    available = ort.get_available_providers() if available is None else available
    if tensorrt_installed is None:
        tensorrt_installed = importlib.util.find_spec("tensorrt") is not None
    chosen: list = []
    if "TensorrtExecutionProvider" in available and tensorrt_installed:
        chosen.append(("TensorrtExecutionProvider", {"trt_fp16_enable": model_precision == "fp32",
                                                     "trt_engine_cache_enable": True,
                                                     "trt_engine_cache_path": str(cache / "onnxruntime-trt")}))
    if "CUDAExecutionProvider" in available:
        chosen.append("CUDAExecutionProvider")
    chosen.append("CPUExecutionProvider")
    return chosen


def preload_gpu_libraries(requested: list) -> None:
    """Put pip-installed CUDA/cuDNN (nvidia-* wheels) and TensorRT (tensorrt-cu1x-libs) libraries in the process."""
    names = [p[0] if isinstance(p, tuple) else p for p in requested]
    if not set(names) & set(GPU_PROVIDERS):
        return
    if hasattr(ort, "preload_dlls"):
        try:
            ort.preload_dlls()
        except Exception as error:  # noqa: BLE001 -- a failed preload only means the system loader path is used
            log.warning("onnxruntime.preload_dlls() failed (%s); relying on the system library path", error)
    if "TensorrtExecutionProvider" in names:
        try:
            import tensorrt  # noqa: F401 -- importing it loads libnvinfer from its wheel for the TensorRT EP
        except ImportError as error:
            log.warning("TensorRT EP requested but `import tensorrt` failed: %s", error)


def session_precision(model_precision: str, used: list[str], options: dict[str, dict]) -> str:
    """What the session computes in: the model's own precision unless the TensorRT EP lowers it."""
    if used and used[0] == "TensorrtExecutionProvider":
        trt = options.get("TensorrtExecutionProvider", {})
        if str(trt.get("trt_int8_enable", "0")) in ("1", "True", "true"):
            return "int8 (TensorRT EP trt_int8_enable)"
        if model_precision == "fp32" and str(trt.get("trt_fp16_enable", "0")) in ("1", "True", "true"):
            return "fp16 (TensorRT EP trt_fp16_enable)"
    return f"{model_precision} (Q/DQ)" if model_precision == "int8" else model_precision


def missing_providers(requested: list, used: list[str]) -> list[str]:
    """Requested GPU providers the session does not use (their libraries did not load)."""
    names = [p[0] if isinstance(p, tuple) else p for p in requested]
    return [n for n in names if n in GPU_PROVIDERS and n not in used]


def model_precision(onnx_path: Path) -> str:
    """int8 for Q/DQ models, fp16 for fp16 exports, else fp32 (read from the graph, as the engine builder does)."""
    from depth_node.engine_build import onnx_precision
    from depth_node.model_files import onnx_metadata

    try:
        return onnx_precision(onnx_path)
    except ImportError:  # no `onnx` package: the precision the export declared
        return onnx_metadata(onnx_path).get("precision", "fp32")
    except Exception as error:  # an unreadable file: ONNX Runtime reports it when it loads the model
        raise RuntimeError(f"ONNX Runtime cannot load {onnx_path}: {error}") from error


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(self, onnx_path: str | Path, cache: Path, threads: int = 0, requested: list | None = None) -> None:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads  # 0: one per physical core
        # Idle worker threads sleep instead of spinning: a robot's CPU is shared with the rest of its stack, and on a
        # busy 2-core machine spinning made 640x480 inference 1.5x slower (310 vs 213 ms median).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        precision = model_precision(Path(onnx_path))
        requested = providers(Path(cache), model_precision=precision) if requested is None else requested
        preload_gpu_libraries(requested)
        self._open = lambda model: self._session(model, onnx_path, options, requested)
        pruned = depth_only(Path(onnx_path))
        self.session = self._open(pruned or str(onnx_path))
        self._full_session = None if pruned else self.session  # with both outputs; made when first asked for
        self._full_model = str(onnx_path)
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        for key in ("min_depth", "max_depth"):
            if key not in self.metadata:
                raise RuntimeError(f"{onnx_path} has no {key!r} metadata: export it with `depth-train export`")
        image = self.session.get_inputs()[0]
        self.input_name = image.name
        self.output_name = self.session.get_outputs()[0].name
        self.has_confidence = pruned is not None or "confidence" in [o.name for o in self.session.get_outputs()]
        nhwc = self.metadata.get("input_format") == "uint8_nhwc"
        h, w = image.shape[1:3] if nhwc else image.shape[2:]
        self.input_size = (h, w) if isinstance(h, int) and isinstance(w, int) else None
        self.providers = self.session.get_providers()
        self.precision = session_precision(precision, self.providers, self.session.get_provider_options())
        self.missing = missing_providers(requested, self.providers)
        if self.missing:
            log.warning("ONNX Runtime could not load %s (see its error above: CUDA/cuDNN/TensorRT libraries missing or "
                        "of another major version); running on %s", ", ".join(self.missing), ", ".join(self.providers))
        self.device = f"{self.providers[0]} {self.precision}"

    @staticmethod
    def _session(model: str | bytes, onnx_path: str | Path, options: ort.SessionOptions, requested: list
                 ) -> ort.InferenceSession:
        try:
            return ort.InferenceSession(model, options, providers=requested)
        except Exception as error:  # onnxruntime raises its own exception types for unreadable or invalid models
            raise RuntimeError(f"ONNX Runtime cannot load {onnx_path}: {error}") from error

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: batch})[0][0, 0]

    def run_confidence(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._full_session is None:
            self._full_session = self._open(self._full_model)
        depth, confidence = self._full_session.run([self.output_name, "confidence"], {self.input_name: batch})
        return depth[0, 0], confidence[0, 0]


def depth_only(onnx_path: Path) -> bytes | None:
    """A model with a ``confidence`` output cut down to the nodes its depth needs (serialized), else None.

    ONNX Runtime runs every node of a graph whatever outputs a call asks for, so without this a node that publishes
    no confidence would still pay for the LR pass. Needs the ``onnx`` package; without it (None) the full graph runs.
    """
    try:
        import onnx
    except ImportError:
        return None
    model = onnx.load(str(onnx_path))
    graph = model.graph
    if [o.name for o in graph.output][1:] != ["confidence"]:
        return None
    needed, kept = {graph.output[0].name}, []
    for node in reversed(graph.node):
        if needed.intersection(node.output):
            kept.append(node)
            needed.update(node.input)
    initializers = [i for i in graph.initializer if i.name in needed]
    output = graph.output[0]
    del graph.node[:], graph.initializer[:], graph.output[:]
    graph.node.extend(reversed(kept))
    graph.initializer.extend(initializers)
    graph.output.append(output)
    return model.SerializeToString()
