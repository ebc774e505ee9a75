"""Standard monocular depth metrics (Eigen et al. 2014) over valid ground-truth pixels, at ground-truth resolution."""

from __future__ import annotations

import numpy as np

METRICS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "delta1", "delta2", "delta3")


def depth_metrics(pred: np.ndarray, gt: np.ndarray, min_depth: float = 0.1, max_depth: float = 10.0,
                  median_scaling: bool = False) -> dict[str, float]:
    """Metrics of ``pred`` against ``gt`` (same shape, metres) on pixels where gt is finite and in range.

    With ``median_scaling`` the prediction is first multiplied by median(gt)/median(pred) (for scale-ambiguous models);
    predictions are clipped to [min_depth, max_depth] as is customary.
    """
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in size")
    mask = np.isfinite(gt) & (gt >= min_depth) & (gt <= max_depth)
    if not mask.any():
        raise ValueError("ground truth has no valid pixel in range")
    p = pred[mask].astype(np.float64)
    g = gt[mask].astype(np.float64)
    if median_scaling:
        p *= np.median(g) / np.median(p)
    p = np.clip(np.nan_to_num(p, nan=min_depth), min_depth, max_depth)
    ratio = np.maximum(p / g, g / p)
    return {
        "abs_rel": float(np.mean(np.abs(p - g) / g)),
        "sq_rel": float(np.mean((p - g) ** 2 / g)),
        "rmse": float(np.sqrt(np.mean((p - g) ** 2))),
        "rmse_log": float(np.sqrt(np.mean((np.log(p) - np.log(g)) ** 2))),
        "log10": float(np.mean(np.abs(np.log10(p) - np.log10(g)))),
        "delta1": float(np.mean(ratio < 1.25)),
        "delta2": float(np.mean(ratio < 1.25**2)),
        "delta3": float(np.mean(ratio < 1.25**3)),
    }
