"""Register LR depth from a separate sensor into the color camera, at the LR resolution (pure numpy).

Training compares the network's HR prediction, reduced to an LR grid, with the sensor depth; that only makes sense
when both describe the same rays. The LR grid is the color camera with its intrinsics scaled by ``1 / factor``:

* ``factor`` = color focal length / depth focal length (the ratio of angular resolutions), snapped to the nearest
  integer when within 0.1 %, and at least 1. The grid is ``round(W / factor) x round(H / factor)`` and its
  intrinsics follow the pixel-centre convention (pixel ``i`` covers ``[i - 0.5, i + 0.5]``):
  ``fx' = fx * sx``, ``cx' = (cx + 0.5) * sx - 0.5`` with ``sx = w / W`` (same for y).
* LR pixel ``(i, j)`` therefore covers the HR rectangle ``[j W/w, (j+1) W/w) x [i H/h, (i+1) H/h)``. For an integer
  factor that is an exact ``factor x factor`` block and the matching downsampling operator is the block mean. For a
  non-integer factor the rectangles straddle HR pixels; training's ``reduce.down`` then averages over
  ``adaptive_avg_pool2d`` bins of the same ``(h, w)`` grid, which include straddled HR pixels whole: the footprints
  agree to within one HR pixel at their borders.

Registration back-projects every valid depth pixel with the depth intrinsics, moves it with the depth-to-color
extrinsic and projects it with the LR intrinsics. A coarser or wider-angle depth grid projected by centres alone
leaves a lattice of empty LR pixels, so each depth pixel's footprint (its four corners at its own depth, as
depth_image_proc's register does with fill_upsampling_holes) is splatted: every LR pixel whose centre lies inside the
projected footprint's bounding box receives the depth of the footprint's centre, and a z-buffer keeps the nearest
surface. LR pixels no footprint reaches (occluded from the depth sensor, no return, outside its field of view) stay 0.
When the two cameras coincide (identity extrinsic, depth intrinsics equal to the LR intrinsics) the depth passes
through untouched.
"""

from __future__ import annotations

import numpy as np

# Footprints are grown by this many LR pixels so that neighbours at slightly different depths (a slanted surface
# seen from a translated sensor) leave no sub-pixel cracks between them; far below half a pixel, so an identical
# grid still maps one-to-one.
FOOTPRINT_MARGIN = 0.01
CORNERS = np.array([[0.0, 0.0], [-0.5, -0.5], [0.5, -0.5], [-0.5, 0.5], [0.5, 0.5]])  # centre first


def scale_intrinsics(K: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """Intrinsics of the same camera resampled by (sx, sy), with the pixel-centre convention."""
    S = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])
    return S @ np.asarray(K, dtype=np.float64)


def lr_grid(
    K_color: np.ndarray, color_size: tuple[int, int], K_depth: np.ndarray
) -> tuple[float, np.ndarray, tuple[int, int]]:
    """The LR grid in the color camera matching the depth sensor's angular resolution.

    ``color_size`` is (width, height). Returns (factor, LR intrinsics, (width, height)); factor is ``W / w``.
    """
    width, height = color_size
    ratio = 0.5 * (K_color[0, 0] / K_depth[0, 0] + K_color[1, 1] / K_depth[1, 1])
    if abs(ratio - round(ratio)) <= 1e-3 * ratio:
        ratio = float(round(ratio))
    ratio = max(ratio, 1.0)
    w, h = max(1, round(width / ratio)), max(1, round(height / ratio))
    return width / w, scale_intrinsics(K_color, w / width, h / height), (w, h)


def coincident(
    K_depth: np.ndarray,
    depth_size: tuple[int, int],
    T_color_depth: np.ndarray,
    K_lr: np.ndarray,
    lr_size: tuple[int, int],
    atol: float = 1e-6,
) -> bool:
    """True when the depth image already is the LR image of the color camera (same rays, same grid)."""
    return (
        tuple(depth_size) == tuple(lr_size)
        and np.allclose(K_depth, K_lr, rtol=0.0, atol=atol)
        and np.allclose(T_color_depth, np.eye(4), rtol=0.0, atol=atol)
    )


def splat_depth(
    depth: np.ndarray,
    K_depth: np.ndarray,
    T_color_depth: np.ndarray,
    K_target: np.ndarray,
    target_size: tuple[int, int],
) -> np.ndarray:
    """Forward-warp depth (metres, 0 invalid) into a target camera by footprint splatting with a z-buffer.

    ``T_color_depth`` maps points from the depth optical frame to the target optical frame. Returns float32 metres in
    the target camera, 0 where no footprint lands.
    """
    width, height = target_size
    depth = np.asarray(depth)
    valid = np.isfinite(depth) & (depth > 0)
    v, u = np.nonzero(valid)
    z = depth[v, u].astype(np.float64)

    pix = np.stack([u[:, None] + CORNERS[:, 0], v[:, None] + CORNERS[:, 1], np.ones((len(u), len(CORNERS)))], -1)
    rays = pix @ np.linalg.inv(K_depth).T  # (N, 5, 3) rays with z = 1
    points = rays * z[:, None, None] @ T_color_depth[:3, :3].T + T_color_depth[:3, 3]
    zc = points[..., 2]
    front = np.all(zc > 0, axis=1)
    points, zc = points[front], zc[front]
    proj = points @ np.asarray(K_target, dtype=np.float64).T
    x, y = proj[..., 0] / zc, proj[..., 1] / zc

    x0 = np.ceil(x[:, 1:].min(1) - FOOTPRINT_MARGIN).astype(np.int64)
    x1 = np.ceil(x[:, 1:].max(1) + FOOTPRINT_MARGIN).astype(np.int64) - 1
    y0 = np.ceil(y[:, 1:].min(1) - FOOTPRINT_MARGIN).astype(np.int64)
    y1 = np.ceil(y[:, 1:].max(1) + FOOTPRINT_MARGIN).astype(np.int64) - 1
    x1, y1 = np.maximum(x1, x0), np.maximum(y1, y0)  # a footprint smaller than a pixel still lands somewhere
    inside = (x1 >= 0) & (x0 < width) & (y1 >= 0) & (y0 < height)
    x0, x1 = np.clip(x0[inside], 0, width - 1), np.clip(x1[inside], 0, width - 1)
    y0, y1 = np.clip(y0[inside], 0, height - 1), np.clip(y1[inside], 0, height - 1)
    zc0 = zc[inside, 0]

    zbuf = np.full(width * height, np.inf)
    if len(zc0):
        for dy in range(int((y1 - y0).max()) + 1):
            for dx in range(int((x1 - x0).max()) + 1):
                m = (x0 + dx <= x1) & (y0 + dy <= y1)
                np.minimum.at(zbuf, (y0[m] + dy) * width + x0[m] + dx, zc0[m])
    zbuf[np.isinf(zbuf)] = 0.0
    return zbuf.reshape(height, width).astype(np.float32)


def register_depth(
    depth: np.ndarray,
    K_depth: np.ndarray,
    T_color_depth: np.ndarray,
    K_lr: np.ndarray,
    lr_size: tuple[int, int],
) -> np.ndarray:
    """LR depth (metres, 0 invalid) seen from the color camera on its LR grid; a pass-through when they coincide."""
    depth = np.asarray(depth, dtype=np.float32)
    if coincident(K_depth, depth.shape[::-1], T_color_depth, K_lr, lr_size):
        return np.where(np.isfinite(depth) & (depth > 0), depth, 0.0).astype(np.float32)
    return splat_depth(depth, K_depth, T_color_depth, K_lr, lr_size)
