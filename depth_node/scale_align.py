"""Optional alignment of the predicted depth's scale (and shift) to a live low-resolution depth sensor.

A monocular network's metric scale drifts with the scene and camera; a sparse LR sensor on the robot pins it down.
Each frame the prediction is reduced to the LR grid (area average, like the sensor's footprint) and a scale s (and
optionally a shift t) is fitted so that s * pred + t ~ lr over the valid LR pixels, by iteratively reweighted least
squares on *relative* residuals with Huber weights (so near and far pixels count alike and edges/outliers do not pull
the fit). The running estimate is smoothed over time (exponential average of log-scale and shift) so that one bad
frame cannot make the output jump: on top of the smoothing, the scale moves by at most ``max_step`` (a fraction)
and the shift by at most ``max_step`` metres per frame. The LR depth must be registered into the colour camera (same
view, any resolution of the same aspect ratio), as drivers' "aligned depth" or depth_image_proc/register provide.

A frame whose LR depth cannot be trusted (another aspect ratio, too few readings inside the sensor's valid range after
NaN, inf, 0 and 65535 "no return" are removed, or a poor fit) leaves the estimate as it was; ``update`` says why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

HUBER_K = 1.345  # Huber's constant for 95% efficiency under Gaussian noise
MIN_PIXELS = 50
MIN_INLIERS = 0.5


@dataclass(frozen=True)
class ScaleFit:
    """One frame's fit and how good it is."""

    scale: float
    shift: float
    pixels: int  # valid LR pixels used
    inlier_fraction: float  # pixels within 3 robust sigmas of the fit
    abs_rel: float  # mean |s*pred + t - lr| / lr over the inliers after the fit

    @property
    def ok(self) -> bool:
        return self.pixels >= MIN_PIXELS and self.inlier_fraction >= MIN_INLIERS and math.isfinite(self.scale)


def aspect_problem(image_shape: tuple[int, ...], lr_shape: tuple[int, ...]) -> str | None:
    """Why an LR depth of ``lr_shape`` cannot be registered to an image of ``image_shape`` (None: it can)."""
    (h, w), (lh, lw) = image_shape[:2], lr_shape[:2]
    if min(h, w, lh, lw) <= 0 or abs(h / w - lh / lw) > 0.02 * h / w:
        return f"LR depth {lw}x{lh} does not have the image's aspect ratio ({w}x{h}): is it registered to the camera?"
    return None


def reduce_to(pred: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Area-average an HxW prediction onto an hxw LR grid of the same aspect ratio."""
    import cv2

    problem = aspect_problem(pred.shape, shape)
    if problem:
        raise ValueError(problem)
    return cv2.resize(pred.astype(np.float32, copy=False), (shape[1], shape[0]), interpolation=cv2.INTER_AREA)


def fit_scale(pred: np.ndarray, lr: np.ndarray, with_shift: bool = False, iterations: int = 5) -> ScaleFit:
    """Robust fit of lr ~ scale * pred (+ shift) on pixels where both are finite and positive (same shape)."""
    mask = np.isfinite(pred) & np.isfinite(lr) & (pred > 0) & (lr > 0)
    p, g = pred[mask].astype(np.float64), lr[mask].astype(np.float64)
    if p.size < (2 if with_shift else 1):
        return ScaleFit(float("nan"), 0.0, int(p.size), 0.0, float("nan"))
    design = np.stack([p / g, 1.0 / g], axis=1) if with_shift else (p / g)[:, None]
    coef = np.array([np.median(g / p), 0.0][: design.shape[1]])  # robust start: plain least squares is outlier-bent
    for _ in range(iterations):
        residual = design @ coef - 1.0  # relative error of the aligned prediction
        sigma = 1.4826 * np.median(np.abs(residual - np.median(residual))) + 1e-9
        root = np.sqrt(np.minimum(1.0, HUBER_K * sigma / np.maximum(np.abs(residual), 1e-12)))[:, None]
        coef = np.linalg.lstsq(design * root, root[:, 0], rcond=None)[0]
    residual = design @ coef - 1.0
    inliers = np.abs(residual) <= 3.0 * sigma
    scale, shift = float(coef[0]), float(coef[1]) if with_shift else 0.0
    abs_rel = float(np.mean(np.abs(residual[inliers]))) if inliers.any() else float("nan")
    return ScaleFit(scale, shift, int(p.size), float(inliers.mean()), abs_rel)


class ScaleAligner:
    """Keeps the time-smoothed scale/shift; ``update`` with each LR frame, ``apply`` to each prediction."""

    def __init__(self, with_shift: bool = False, smoothing: float = 0.9,
                 valid_range: tuple[float, float] = (0.05, 20.0), max_step: float = 0.05) -> None:
        self.with_shift = with_shift
        self.smoothing = smoothing
        self.valid_range = valid_range  # metres: LR readings outside are "no reading"
        self.max_step = max_step
        self.scale = 1.0
        self.shift = 0.0
        self.last_fit: ScaleFit | None = None
        self.fits = 0

    def update(self, pred: np.ndarray, lr: np.ndarray) -> tuple[ScaleFit | None, str | None]:
        """Fit this frame: (fit, None) when it moved the estimate, else (fit or None, why the frame was skipped).

        The first good fit sets the estimate; later ones move it, smoothed and by at most ``max_step``.
        """
        problem = aspect_problem(pred.shape, lr.shape)
        if problem:
            return None, problem
        lo, hi = self.valid_range
        with np.errstate(invalid="ignore"):
            valid = np.isfinite(lr) & (lr >= lo) & (lr <= hi)
        if valid.sum() < MIN_PIXELS:
            return None, (f"only {int(valid.sum())} of {lr.size} LR readings are within {lo}..{hi} m "
                          f"(need {MIN_PIXELS})")
        fit = fit_scale(reduce_to(pred, lr.shape), np.where(valid, lr, np.nan), self.with_shift)
        self.last_fit = fit
        if not (fit.ok and fit.scale > 0 and math.isfinite(fit.shift)):
            return fit, (f"poor fit: {fit.pixels} pixels, {100 * fit.inlier_fraction:.0f}% inliers, scale "
                         f"{fit.scale:.3g}")
        if self.fits:
            a = self.smoothing
            step = math.log1p(self.max_step)
            log_scale = a * math.log(self.scale) + (1 - a) * math.log(fit.scale)
            log_scale = min(max(log_scale, math.log(self.scale) - step), math.log(self.scale) + step)
            shift = a * self.shift + (1 - a) * fit.shift
            self.scale = math.exp(log_scale)
            self.shift = min(max(shift, self.shift - self.max_step), self.shift + self.max_step)
        else:
            self.scale, self.shift = fit.scale, fit.shift
        self.fits += 1
        return fit, None

    def apply(self, depth: np.ndarray) -> np.ndarray:
        """The prediction with the running scale and shift applied."""
        if self.scale == 1.0 and self.shift == 0.0:
            return depth
        return depth * np.float32(self.scale) + np.float32(self.shift)
