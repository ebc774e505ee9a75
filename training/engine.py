"""``depth-train build-engine``: a TensorRT engine from an exported ONNX model, optionally INT8-calibrated on frames.

The build itself lives in the runtime (``depth_node.backends.tensorrt_backend``) because a robot given an .onnx file
builds its engine on first start; this adds the command line and the INT8 entropy calibrator, which reads training
frames and so belongs to the training side.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import numpy as np


def parse_size(text: str) -> tuple[int, int]:
    """``HxW`` (e.g. 480x640) -> (height, width)."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"size {text!r} is not HEIGHTxWIDTH, e.g. 480x640")
    return int(match.group(1)), int(match.group(2))


def entropy_calibrator(data: str, size: tuple[int, int], cache_file: Path, frames: int = 200) -> Any:
    """An ``IInt8EntropyCalibrator2`` feeding ``frames`` color images spread evenly over ``data`` at ``size``.

    Spread over the whole sequence (not the first N) because neighbouring frames are nearly identical. The
    calibration cache is reused when present, so a rebuild needs no data.
    """
    from depth_node.backends.tensorrt_backend import cuda_check, cuda_runtime, tensorrt
    from depth_node.estimator import to_network_input

    from .datasets import open_frames

    trt = tensorrt()
    cudart = cuda_runtime()
    source = open_frames(data) if not cache_file.exists() else None
    picks = np.linspace(0, len(source) - 1, min(frames, len(source))).round().astype(int) if source else []

    class FrameCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            super().__init__()
            self.next = 0
            self.buffer = cuda_check(cudart.cudaMalloc(3 * size[0] * size[1] * 4))

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self.next >= len(picks):
                return None
            batch = to_network_input(source[int(picks[self.next])].color, "rgb8", size)
            self.next += 1
            cuda_check(cudart.cudaMemcpy(self.buffer, batch.ctypes.data, batch.nbytes,
                                         cudart.cudaMemcpyKind.cudaMemcpyHostToDevice))
            return [int(self.buffer)]

        def read_calibration_cache(self) -> bytes | None:
            return cache_file.read_bytes() if cache_file.exists() else None

        def write_calibration_cache(self, cache: Any) -> None:
            cache_file.write_bytes(bytes(cache))

    return FrameCalibrator()


def run(args: argparse.Namespace) -> None:
    from depth_node.backends.tensorrt_backend import (
        build_engine,
        default_profile,
        precision_for,
        require_gpu,
        stale_reason,
        timing_cache_path,
    )
    from depth_node.estimator import cache_dir, file_sha256, onnx_metadata

    onnx_path, engine_path = Path(args.onnx), Path(args.engine)
    if not onnx_path.exists():
        raise FileNotFoundError(f"ONNX model {onnx_path} does not exist (make one with `depth-train export`)")
    if args.int8 and not (args.calib or args.calib_cache):
        raise ValueError("--int8 needs --calib DATA (frames to calibrate on) or an existing --calib-cache")
    require_gpu()
    metadata = onnx_metadata(onnx_path)
    if not args.force and not args.int8:
        reason = stale_reason(engine_path, file_sha256(onnx_path), precision_for(args.fp16))
        if reason is None:
            print(f"{engine_path} is up to date for {onnx_path} on this GPU (use --force to rebuild)")
            return
    profile = None
    if metadata.get("dynamic") == "true":
        low, opt, high = default_profile(metadata)
        profile = (args.min_size or low, args.opt_size or opt, args.max_size or high)
    calibrator = None
    if args.int8:
        size = profile[1] if profile else (int(metadata["input_height"]), int(metadata["input_width"]))
        cache = Path(args.calib_cache or engine_path.with_name(engine_path.name + ".calib"))
        calibrator = entropy_calibrator(args.calib, size, cache, args.calib_frames)
    timing = Path(args.timing_cache) if args.timing_cache else timing_cache_path(cache_dir())
    build_engine(onnx_path, engine_path, args.fp16, calibrator, timing, profile, args.workspace_gib)
    print(f"wrote {engine_path} (+ build record {engine_path.name}.json); timing cache {timing}")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("build-engine", help="build a TensorRT engine from an exported ONNX model")
    p.add_argument("--onnx", required=True, help="ONNX model from `depth-train export`")
    p.add_argument("--engine", required=True, help="output engine file (a .json build record is written beside it)")
    p.add_argument("--fp16", action=argparse.BooleanOptionalAction, default=None,
                   help="fp16 kernels (default: on where the GPU has fast fp16)")
    p.add_argument("--int8", action="store_true", help="INT8 with entropy calibration on --calib frames")
    p.add_argument("--calib", help="calibration data (any `depth-train` data path, e.g. a 7-Scenes folder or a bag)")
    p.add_argument("--calib-frames", type=int, default=200, help="frames used for calibration, spread evenly")
    p.add_argument("--calib-cache", help="calibration cache file (default: ENGINE.calib; reused when present)")
    p.add_argument("--min-size", type=parse_size, help="dynamic models: smallest HxW of the optimisation profile")
    p.add_argument("--opt-size", type=parse_size, help="dynamic models: HxW tuned for (default: the export size)")
    p.add_argument("--max-size", type=parse_size, help="dynamic models: largest HxW of the optimisation profile")
    p.add_argument("--workspace-gib", type=float, default=2.0, help="builder scratch memory limit")
    p.add_argument("--timing-cache", help="timing cache file (default: per GPU and TensorRT version in the cache dir)")
    p.add_argument("--force", action="store_true", help="rebuild even when the engine is up to date")
    p.set_defaults(func=run)
