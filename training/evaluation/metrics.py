"""Standard monocular depth metrics (Eigen et al. 2014) over valid ground-truth pixels, at ground-truth resolution,
and metrics of the parts of a frame an all-pixel mean hides: AbsRel in the band around depth edges (where an estimator
trained on LR supervision blurs) and in the footprints where the LR supervision was missing (where it had no target at
all), and ``texture``: relief the estimate has where the ground truth is flat (image texture copied into depth)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import cv2
import numpy as np

METRICS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "delta1", "delta2", "delta3")
PART_METRICS = ("abs_rel_edges", "abs_rel_holes", "texture")  # NaN in a frame without such pixels
EDGE_JUMP = 1.05  # neighbouring valid pixels whose depths differ by more than 5% (larger / smaller) meet at an edge
EDGE_BAND = 4  # the edge band: HR pixels within this many pixels of an edge, on each side of it
TEXTURE_SPACINGS = (1, 4, 16)  # pixels: fine grain, one x4 footprint, printed text and poster outlines
FLAT_TOLERANCE = 0.02  # ground truth is flat at a pixel when its relative second differences are under this


def valid_gt(depth: np.ndarray, min_depth: float, max_depth: float) -> np.ndarray:
    """Pixels that are scored: finite and inside [min_depth, max_depth] (0, NaN and out-of-range are not)."""
    return np.isfinite(depth) & (depth >= min_depth) & (depth <= max_depth)


def depth_metrics(pred: np.ndarray, gt: np.ndarray, min_depth: float = 0.1, max_depth: float = 10.0,
                  median_scaling: bool = False, regions: dict[str, np.ndarray] | None = None) -> dict[str, float]:
    """Metrics of ``pred`` against ``gt`` (same shape, metres) on pixels where gt is finite and in range.

    With ``median_scaling`` the prediction is first multiplied by median(gt)/median(pred) (for scale-ambiguous models);
    predictions are clipped to [min_depth, max_depth] as is customary. Each boolean HxW mask in ``regions`` adds
    ``abs_rel_<name>``: AbsRel over its valid pixels (the same scaled, clipped prediction), NaN when it has none.
    """
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in size")
    mask = valid_gt(gt, min_depth, max_depth)
    if not mask.any():
        raise ValueError("ground truth has no valid pixel in range")
    p = pred[mask].astype(np.float64)
    g = gt[mask].astype(np.float64)
    if median_scaling:
        p *= np.median(g) / np.median(p)
    p = np.clip(np.nan_to_num(p, nan=min_depth), min_depth, max_depth)
    ratio = np.maximum(p / g, g / p)
    rel = np.abs(p - g) / g
    metrics = {
        "abs_rel": float(np.mean(rel)),
        "sq_rel": float(np.mean((p - g) ** 2 / g)),
        "rmse": float(np.sqrt(np.mean((p - g) ** 2))),
        "rmse_log": float(np.sqrt(np.mean((np.log(p) - np.log(g)) ** 2))),
        "log10": float(np.mean(np.abs(np.log10(p) - np.log10(g)))),
        "delta1": float(np.mean(ratio < 1.25)),
        "delta2": float(np.mean(ratio < 1.25**2)),
        "delta3": float(np.mean(ratio < 1.25**3)),
    }
    for name, region in (regions or {}).items():
        inside = region[mask]
        metrics[f"abs_rel_{name}"] = float(rel[inside].mean()) if inside.any() else math.nan
    return metrics


def depth_edges(gt: np.ndarray, min_depth: float = 0.1, max_depth: float = 10.0, jump: float = EDGE_JUMP
                ) -> np.ndarray:
    """Both pixels of every pair of valid 4-neighbours whose depths differ by more than ``jump`` (larger / smaller);
    an invalid pixel is never part of an edge, so the border of a ground-truth hole is not one."""
    valid = valid_gt(gt, min_depth, max_depth)
    g = np.where(valid, gt, 1.0).astype(np.float64)
    edges = np.zeros(gt.shape, bool)
    everything = slice(None)
    for a, b in (((everything, slice(None, -1)), (everything, slice(1, None))),
                 ((slice(None, -1), everything), (slice(1, None), everything))):
        step = valid[a] & valid[b] & (np.maximum(g[a], g[b]) > jump * np.minimum(g[a], g[b]))
        edges[a] |= step
        edges[b] |= step
    return edges


def edge_band(gt: np.ndarray, min_depth: float = 0.1, max_depth: float = 10.0, width: int = EDGE_BAND,
              jump: float = EDGE_JUMP) -> np.ndarray:
    """Valid pixels within ``width`` pixels of a depth edge on each side (a step between columns k-1 and k gives
    columns k-width .. k+width-1): the edge pixels of ``depth_edges`` grown by a (2 width - 1)-pixel square."""
    size = 2 * width - 1
    grown = cv2.dilate(depth_edges(gt, min_depth, max_depth, jump).astype(np.uint8), np.ones((size, size), np.uint8))
    return (grown > 0) & valid_gt(gt, min_depth, max_depth)


def hole_footprints(lr: np.ndarray, hr_shape: tuple[int, int], min_depth: float = 0.1, max_depth: float = 10.0
                    ) -> np.ndarray:
    """HR pixels whose LR footprint holds no valid supervision (0, NaN or out of range in ``lr``). An HR pixel belongs
    to the footprint that holds its centre (footprints tile the frame, ``depth_node.network.reduce``), which for an
    integer factor is the footprint it lies in."""
    (h, w), (H, W) = lr.shape, hr_shape
    rows = np.minimum(((np.arange(H) + 0.5) * h / H).astype(int), h - 1)
    cols = np.minimum(((np.arange(W) + 0.5) * w / W).astype(int), w - 1)
    return ~valid_gt(lr, min_depth, max_depth)[np.ix_(rows, cols)]


def part_regions(gt: np.ndarray, lr: np.ndarray, min_depth: float = 0.1, max_depth: float = 10.0
                 ) -> dict[str, np.ndarray]:
    """The ``regions`` of ``depth_metrics`` that give PART_METRICS: the edge band of the HR ground truth and the HR
    pixels inside LR holes of the supervision ``lr`` the model was trained with (training_pairs.lr_supervision)."""
    return {"edges": edge_band(gt, min_depth, max_depth), "holes": hole_footprints(lr, gt.shape, min_depth, max_depth)}


def nan_mean(values: Iterable[float]) -> float:
    """Mean of the values that are not NaN (NaN when none is): frames without edge or hole pixels do not count."""
    v = np.asarray(list(values), dtype=np.float64)
    v = v[~np.isnan(v)]
    return float(v.mean()) if v.size else math.nan


def relative_second_differences(inverse: np.ndarray, spacing: int) -> tuple[np.ndarray, np.ndarray]:
    """Signed second differences of an inverse-depth map at ``spacing`` along x and y, over the centre value, at the
    centre pixel (NaN where one of the three pixels is NaN or outside the map). The inverse depth of a plane is linear
    in pixel coordinates, so a plane has 0 at every spacing, whatever its slant and the camera's intrinsics."""
    s = spacing
    dxx, dyy = np.full(inverse.shape, np.nan), np.full(inverse.shape, np.nan)
    dxx[:, s:-s] = (inverse[:, 2 * s:] - 2 * inverse[:, s:-s] + inverse[:, :-2 * s]) / inverse[:, s:-s]
    dyy[s:-s] = (inverse[2 * s:] - 2 * inverse[s:-s] + inverse[:-2 * s]) / inverse[s:-s]
    return dxx, dyy


def texture_error(pred: np.ndarray, gt: np.ndarray, min_depth: float = 0.1, max_depth: float = 10.0,
                  spacings: tuple[int, ...] = TEXTURE_SPACINGS, tolerance: float = FLAT_TOLERANCE) -> float:
    """Relief of the estimate where the ground truth is flat: the mean |r(pred) - r(gt)| of the relative second
    differences r of inverse depth (``relative_second_differences``), over the pixels where the ground truth's own |r|
    is under ``tolerance`` along both axes, averaged over ``spacings``. Texture painted on a wall, a table or a poster
    scores; a true depth edge or a curved surface is not flat in the ground truth and is not scored; a wrong scale
    costs nothing (r is relative), so this sees what AbsRel mixes with scale. NaN without a flat pixel."""
    valid = valid_gt(gt, min_depth, max_depth)
    inverse_gt = np.where(valid, 1.0 / np.where(valid, gt, 1.0), np.nan)
    inverse = 1.0 / np.clip(np.nan_to_num(pred.astype(np.float64), nan=min_depth), min_depth, max_depth)
    per_spacing = []
    for s in spacings:
        gx, gy = relative_second_differences(inverse_gt, s)
        px, py = relative_second_differences(inverse, s)
        flat = (np.abs(gx) < tolerance) & (np.abs(gy) < tolerance)
        if flat.any():
            per_spacing.append(float(np.mean((np.abs(px - gx) + np.abs(py - gy))[flat]) / 2))
    return float(np.mean(per_spacing)) if per_spacing else math.nan
