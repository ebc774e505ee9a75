"""Organized point clouds from a depth image and its pinhole camera model (depth_image_proc's maths, vectorised).

A pixel (u, v) with depth z (pixel centres at integer coordinates, as in CameraInfo's K) becomes the point
((u - cx) / fx * z, (v - cy) / fy * z, z) in the camera optical frame. The per-pixel rays (u - cx) / fx and
(v - cy) / fy depend only on K, the image size and the decimation, so they are computed once and cached.
Decimation keeps every n-th row and column (pixel (j*n, i*n) becomes cloud point (i, j)), so each cloud point
re-projects exactly onto its depth pixel. Invalid depth (NaN) gives a NaN point, keeping the cloud organized.

Points are packed as float32 x, y, z (12 bytes) or x, y, z, rgb (16 bytes) where ``rgb`` is the uint32 0xAARRGGBB
reinterpreted as float32, the layout RViz and PCL expect; its little-endian bytes are B, G, R, A, i.e. a BGRA pixel,
so colour packing is a single OpenCV channel conversion.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

FLOAT32 = 7  # sensor_msgs/PointField.FLOAT32


def cloud_fields(color: bool) -> list[tuple[str, int, int, int]]:
    """(name, offset, datatype, count) of each PointField of the packed layout."""
    names = ("x", "y", "z", "rgb") if color else ("x", "y", "z")
    return [(name, 4 * i, FLOAT32, 1) for i, name in enumerate(names)]


def point_step(color: bool) -> int:
    """Bytes per point."""
    return 16 if color else 12


def decimated_size(height: int, width: int, decimation: int) -> tuple[int, int]:
    """Rows and columns of the organized cloud."""
    return -(-height // decimation), -(-width // decimation)


def pack_rgb(color: np.ndarray, order: str) -> np.ndarray:
    """HxWx3 uint8 in ``order`` ("rgb8" | "bgr8") -> HxW float32 whose bits are 0xFFRRGGBB."""
    import cv2

    code = cv2.COLOR_BGR2BGRA if order == "bgr8" else cv2.COLOR_RGB2BGRA
    bgra = cv2.cvtColor(np.ascontiguousarray(color), code)
    return bgra.view(np.float32)[..., 0]


class CloudBuilder:
    """Builds organized clouds, caching rays per (K, image size, decimation) for a changing stream of cameras."""

    def __init__(self, cache_size: int = 4) -> None:
        self._rays: OrderedDict[tuple, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._cache_size = cache_size

    def rays(self, K: np.ndarray, height: int, width: int, decimation: int) -> tuple[np.ndarray, np.ndarray]:
        """(x/z, y/z) of the kept pixels, float32, shaped like the decimated image."""
        K = np.asarray(K, dtype=np.float64)
        key = (K.tobytes(), height, width, decimation)
        if key in self._rays:
            self._rays.move_to_end(key)
            return self._rays[key]
        fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
        h, w = decimated_size(height, width, decimation)
        u = (np.arange(w) * decimation - cx) / fx
        v = (np.arange(h) * decimation - cy) / fy
        rays = (np.ascontiguousarray(np.broadcast_to(u[None, :], (h, w)), dtype=np.float32),
                np.ascontiguousarray(np.broadcast_to(v[:, None], (h, w)), dtype=np.float32))
        self._rays[key] = rays
        if len(self._rays) > self._cache_size:
            self._rays.popitem(last=False)
        return rays

    def build(self, depth: np.ndarray, K: np.ndarray, decimation: int = 1, color: np.ndarray | None = None,
              color_order: str = "bgr8", out: np.ndarray | None = None) -> np.ndarray:
        """HxW metres (NaN invalid) [+ HxWx3 colour] -> (h, w, 3|4) float32 packed points (see the module doc).

        ``out``: a C-contiguous float32 array of that shape to write into (e.g. a message's buffer).
        """
        import cv2

        if depth.ndim != 2:
            raise ValueError(f"depth must be HxW, got shape {depth.shape}")
        if color is not None and color.shape[:2] != depth.shape:
            raise ValueError(f"colour {color.shape[:2]} and depth {depth.shape} differ in size")
        rx, ry = self.rays(K, depth.shape[0], depth.shape[1], decimation)
        z = np.ascontiguousarray(depth[::decimation, ::decimation], dtype=np.float32)
        channels = [rx * z, ry * z, z]
        if color is not None:
            channels.append(pack_rgb(color[::decimation, ::decimation], color_order))
        if out is None:
            return cv2.merge(channels)
        shape = (*z.shape, len(channels))
        if out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous:
            raise ValueError(f"out must be C-contiguous float32 {shape}, got {out.dtype} {out.shape}")
        cv2.merge(channels, dst=out)
        return out
