"""Depth images as ROS publishes them (REP 118) and the camera model that goes with them.

32FC1 is metres with NaN for "no valid depth"; 16UC1 is millimetres with 0 for it. The depth is predicted at the input
image's resolution in the colour camera, so its camera model is the colour CameraInfo itself, restamped.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from .image_codec import ImageDecodeError, raw_view

MAX_16UC1_M = 65.535
NO_RETURN_16UC1 = 65535  # drivers' "no reading" besides 0


def encode_depth(depth: np.ndarray, encoding: str, min_depth: float, max_depth: float,
                 out: np.ndarray | None = None) -> np.ndarray:
    """HxW metres -> the published array: float32 metres (NaN invalid) or uint16 mm (0 invalid), into ``out`` if given.

    Non-finite values and values outside [min_depth, max_depth] are invalid; for 16UC1 so is anything beyond 65.535 m.
    """
    if encoding not in ("32FC1", "16UC1"):
        raise ValueError(f"unsupported depth encoding {encoding!r}; use 32FC1 or 16UC1")
    metres = out if encoding == "32FC1" and out is not None else np.empty(depth.shape, np.float32)
    np.copyto(metres, depth)  # the caller's array stays untouched
    metres[(metres < min_depth) | (metres > max_depth)] = np.nan  # NaN stays NaN, +-inf is out of range
    if encoding == "32FC1":
        return metres
    metres[metres > MAX_16UC1_M] = np.nan
    mm = np.rint(np.nan_to_num(metres, nan=0.0, copy=False) * 1000.0)
    if out is None:
        return mm.astype(np.uint16)
    np.copyto(out, mm, casting="unsafe")
    return out


def decode_depth(msg: Any) -> np.ndarray:
    """Depth Image (16UC1/mono16 mm or 32FC1 m) -> HxW float32 metres with NaN where invalid (0, 65535, NaN, inf)."""
    encoding = str(msg.encoding)
    if encoding in ("16UC1", "mono16"):
        mm = raw_view(msg, np.dtype(np.uint16), 1)
        return np.where((mm > 0) & (mm < NO_RETURN_16UC1), mm.astype(np.float32) / 1000.0, np.float32(np.nan))
    if encoding == "32FC1":
        m = raw_view(msg, np.dtype(np.float32), 1)
        return np.where(np.isfinite(m) & (m > 0), m, np.float32(np.nan)).astype(np.float32, copy=False)
    raise ImageDecodeError(f"unsupported depth encoding {encoding!r}; expected 16UC1 (mm) or 32FC1 (m)")


def intrinsics(info: Any) -> np.ndarray:
    """3x3 K of a CameraInfo as float64."""
    return np.asarray(info.k, dtype=np.float64).reshape(3, 3)


def size_problem(info: Any, height: int, width: int) -> str | None:
    """Why ``info`` cannot go with an image of height x width (None when it can)."""
    if (int(info.height), int(info.width)) != (height, width):
        return f"camera_info is {info.width}x{info.height} but the image is {width}x{height}"
    return None


def camera_info_problem(info: Any, height: int, width: int) -> str | None:
    """Why ``info`` cannot describe an image of height x width in 3D (None when it can): size, then intrinsics.

    An uncalibrated camera (all-zero K) still gets depth images; only the point cloud needs K.
    """
    problem = size_problem(info, height, width)
    if problem:
        return problem
    k = intrinsics(info)
    if not (k[0, 0] > 0 and k[1, 1] > 0 and np.isfinite(k).all()):
        return f"camera_info has no valid focal length (K = {k.ravel().tolist()})"
    return None


def depth_camera_info(info: Any, header: Any) -> Any:
    """The depth image's camera model: the colour camera's, stamped with the depth image's header."""
    out = copy.copy(info)
    out.header = header
    return out
