"""ONNX Runtime backend: TensorRT and CUDA execution providers when this onnxruntime build has them, else the CPU."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnxruntime as ort


def providers(cache: Path) -> list:
    """Fastest first. The TensorRT EP is only offered when TensorRT itself is installed (onnxruntime-gpu lists it
    regardless and would log an error per session); its engines go to the same cache dir as ours."""
    available = ort.get_available_providers()
    chosen: list = []
    if "TensorrtExecutionProvider" in available and importlib.util.find_spec("tensorrt") is not None:
        trt_cache = str(cache / "onnxruntime-trt")
        chosen.append(("TensorrtExecutionProvider", {"trt_fp16_enable": True, "trt_engine_cache_enable": True,
                                                     "trt_engine_cache_path": trt_cache}))
    if "CUDAExecutionProvider" in available:
        chosen.append("CUDAExecutionProvider")
    chosen.append("CPUExecutionProvider")
    return chosen


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(self, onnx_path: str | Path, cache: Path, threads: int = 0) -> None:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads  # 0: one per physical core
        # Idle worker threads sleep instead of spinning: a robot's CPU is shared with the rest of its stack, and on a
        # busy 2-core machine spinning made 640x480 inference 1.5x slower (310 vs 213 ms median).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(onnx_path), options, providers=providers(Path(cache)))
        except Exception as error:  # onnxruntime raises its own exception types for unreadable or invalid models
            raise RuntimeError(f"ONNX Runtime cannot load {onnx_path}: {error}") from error
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        for key in ("min_depth", "max_depth"):
            if key not in self.metadata:
                raise RuntimeError(f"{onnx_path} has no {key!r} metadata: export it with `depth-train export`")
        image = self.session.get_inputs()[0]
        self.input_name = image.name
        self.output_name = self.session.get_outputs()[0].name
        h, w = image.shape[2:]
        self.input_size = (h, w) if isinstance(h, int) and isinstance(w, int) else None
        self.device = ",".join(self.session.get_providers())

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: batch})[0][0, 0]
