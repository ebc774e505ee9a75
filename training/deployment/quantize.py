"""``depth-train quantize``: explicit INT8 (Q/DQ) from an exported ONNX model, calibrated on training frames.

Static quantization with ONNX Runtime's tools: per-channel symmetric INT8 weights, activation scales from the ranges
seen on calibration frames, checked with ``onnx.checker``; the result runs wherever ONNX does (``model:=M.int8.onnx``).

Two activation encodings, because the two runtimes want different ones (measured, docs/benchmarks.md):

- default, asymmetric UINT8 activations: ONNX Runtime's x86 integer kernels (U8S8) run the whole network fused
  (ReLU6 clips folded into the quantization range). On this project's AVX2 CPU it is about 2x faster than fp32.
- ``--symmetric``, INT8 activations with zero point 0 and float biases: what TensorRT requires, so ``depth-engine``
  builds it into a strongly typed INT8 engine. ONNX Runtime runs it too, but on x86 no faster than fp32 (the clips
  stay in float between quantize/dequantize pairs).

What stays in float: the input stage (normalisation of 0..255 RGB and padding), and the depth head with everything
after it (its 3x3 conv, the upsampling, sigmoid and exp that map logits to metres: quantizing them adds error straight
onto the output). Depthwise convolutions are quantized: keeping them in float measured no faster and less accurate.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from depth_node.estimator import to_network_input
from depth_node.model_files import onnx_metadata

from ..learning.datasets import open_frames
from .onnx_graph import float_nodes, save_checked

CALIBRATE_METHODS = ("minmax", "percentile", "entropy")


def calibration_batches(data: str, metadata: dict[str, str], frames: int) -> Iterator[dict[str, np.ndarray]]:
    """``frames`` colour images spread evenly over ``data`` (neighbours are near-identical), as the model takes them."""
    source = open_frames(data)
    if len(source) == 0:
        raise ValueError(f"calibration data {data} holds no frames")
    size = (int(metadata["input_height"]), int(metadata["input_width"]))
    layout = metadata.get("input_format", "float32_nchw")
    for i in np.linspace(0, len(source) - 1, min(frames, len(source))).round().astype(int):
        yield {"image": to_network_input(source[int(i)].color, "rgb8", size, layout)}


def quantize(onnx_path: Path, calib: str, out: Path, frames: int = 32, method: str = "minmax",
             symmetric: bool = False, keep_depthwise: bool = False, reduce_range: bool = False) -> Path:
    """Write the Q/DQ INT8 model of ``onnx_path`` to ``out`` (checked with onnx.checker, metadata kept)."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process


    onnx_path, out = Path(onnx_path), Path(out)
    if not onnx_path.is_file():
        raise FileNotFoundError(f"ONNX model {onnx_path} does not exist (make one with `depth-train export`)")
    if method not in CALIBRATE_METHODS:
        raise ValueError(f"unknown calibration method {method!r}; choose {', '.join(CALIBRATE_METHODS)}")
    if frames <= 0:
        raise ValueError(f"--calib-frames must be positive, got {frames}")
    metadata = onnx_metadata(onnx_path)
    if metadata.get("dynamic") == "true":
        raise ValueError(f"{onnx_path} is a dynamic export: quantize a fixed-size one (calibration runs at one size)")
    model = onnx.load(str(onnx_path))
    excluded = float_nodes(model, keep_depthwise)
    batches = calibration_batches(calib, metadata, frames)

    class Reader(CalibrationDataReader):
        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(batches, None)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with tempfile.TemporaryDirectory() as work:  # calibration writes an augmented model next to its input
            source = Path(work) / "model.onnx"
            quant_pre_process(str(onnx_path), str(source))  # the recommended step: shape inference (names unchanged)
            quantize_static(str(source), str(tmp), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            reduce_range=reduce_range, weight_type=QuantType.QInt8,
                            activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
                            nodes_to_exclude=excluded, calibrate_method=getattr(CalibrationMethod, {
                                "minmax": "MinMax", "percentile": "Percentile", "entropy": "Entropy"}[method]),
                            extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True,
                                           "QuantizeBias": not symmetric})
        quantized = onnx.load(str(tmp))
        save_checked(quantized, tmp, {
            **metadata, "precision": "int8",
            "quantization": f"static Q/DQ, {'symmetric int8' if symmetric else 'asymmetric uint8'} activations, "
                            f"per-channel int8 weights, {method} calibration on {frames} frames of {calib}; "
                            f"{len(excluded)} nodes in float"})
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _run(args: argparse.Namespace) -> None:
    path = quantize(Path(args.onnx), args.calib, Path(args.out), args.calib_frames, args.method, args.symmetric)
    kind = "symmetric INT8 (TensorRT and ONNX Runtime)" if args.symmetric else "UINT8 activations (ONNX Runtime CPU)"
    print(f"wrote {path} (Q/DQ, {kind}; {args.method} calibration on {args.calib_frames} frames of {args.calib})")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("quantize", help="INT8 Q/DQ model from an exported ONNX, calibrated on frames")
    p.add_argument("--onnx", required=True, help="fixed-size fp32 model from `depth-train export`")
    p.add_argument("--calib", required=True, help="calibration data (any `depth-train` data path, e.g. "
                                                  "../shared/data/redkitchen@0:400 or a bag); use training frames")
    p.add_argument("--out", required=True, help="output .onnx (e.g. model.int8.onnx)")
    p.add_argument("--calib-frames", type=int, default=32, help="frames used for calibration, spread evenly")
    p.add_argument("--method", choices=CALIBRATE_METHODS, default="minmax", help="activation range estimate")
    p.add_argument("--symmetric", action="store_true",
                   help="symmetric INT8 activations (zero point 0): what TensorRT requires; slower on x86 CPUs")
    p.set_defaults(func=_run)
