"""Scale alignment to a live LR depth: robust to outliers, smoothed over time, honest about bad fits."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from depth_node.scale_align import ScaleAligner, fit_scale, reduce_to

DATA = Path(os.environ.get("DEPTH_NODE_DATA", Path(__file__).parents[2] / "shared" / "data"))
RNG = np.random.default_rng(0)


def prediction(h: int = 120, w: int = 160) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return (1.0 + 3.0 * x / w + 0.5 * np.sin(y / 7.0)).astype(np.float32)


def sensor(pred: np.ndarray, scale: float, shift: float = 0.0, outliers: float = 0.0, holes: float = 0.1,
           factor: int = 4) -> np.ndarray:
    lr = scale * reduce_to(pred, (pred.shape[0] // factor, pred.shape[1] // factor)) + shift
    lr = lr * (1 + 0.01 * RNG.standard_normal(lr.shape))
    bad = RNG.random(lr.shape) < outliers
    lr[bad] = RNG.uniform(0.2, 9.0, bad.sum())
    lr[RNG.random(lr.shape) < holes] = 0.0  # no return
    return lr.astype(np.float32)


def test_scale_is_recovered_despite_outliers_and_holes() -> None:
    pred = prediction()
    fit = fit_scale(reduce_to(pred, (30, 40)), sensor(pred, 1.7, outliers=0.2))
    assert fit.ok
    assert fit.scale == pytest.approx(1.7, rel=0.01)
    assert fit.shift == 0.0
    assert 0.7 < fit.inlier_fraction < 0.9  # the 20% outliers are recognised as such
    assert fit.abs_rel < 0.02


def test_scale_and_shift_are_recovered() -> None:
    pred = prediction()
    fit = fit_scale(reduce_to(pred, (30, 40)), sensor(pred, 1.3, shift=0.4, outliers=0.1), with_shift=True)
    assert fit.scale == pytest.approx(1.3, rel=0.02)
    assert fit.shift == pytest.approx(0.4, abs=0.05)


def test_too_few_pixels_is_not_ok_and_does_not_move_the_estimate() -> None:
    pred = prediction()
    aligner = ScaleAligner(smoothing=0.5)
    assert aligner.update(pred, sensor(pred, 2.0))[1] is None
    assert aligner.scale == pytest.approx(2.0, rel=0.01)  # the first good fit sets the estimate
    empty = np.zeros((30, 40), np.float32)
    empty[0, :5] = 1.0
    fit, skipped = aligner.update(pred, empty)
    assert fit is None and "only 5 of 1200 LR readings are within 0.05..20.0 m" in skipped
    assert aligner.scale == pytest.approx(2.0, rel=0.01)


def test_running_scale_is_smoothed_over_time() -> None:
    pred = prediction()
    aligner = ScaleAligner(smoothing=0.8, max_step=1.0)
    aligner.update(pred, sensor(pred, 1.0))
    aligner.update(pred, sensor(pred, 2.0))
    assert 1.0 < aligner.scale < 1.3  # one frame moves it by (1 - 0.8) in log-scale
    for _ in range(40):
        aligner.update(pred, sensor(pred, 2.0))
    assert aligner.scale == pytest.approx(2.0, rel=0.02)
    np.testing.assert_allclose(aligner.apply(pred), pred * aligner.scale, rtol=1e-6)


def test_aspect_ratio_mismatch_is_refused() -> None:
    with pytest.raises(ValueError, match="aspect ratio"):
        reduce_to(prediction(), (40, 40))


def test_real_kinect_depth_against_its_own_lr_version() -> None:
    path = DATA / "redkitchen" / "frame-000000.depth.png"
    if not path.exists():
        pytest.skip(f"real data not found at {path} (set DEPTH_NODE_DATA)")
    mm = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    gt = np.where((mm > 0) & (mm < 65535), mm / 1000.0, np.nan).astype(np.float32)
    lr = cv2.resize(np.nan_to_num(gt), (160, 120), interpolation=cv2.INTER_NEAREST)
    pred = np.where(np.isfinite(gt), 0.8 * gt, 2.0).astype(np.float32)  # a prediction 20% too near, filled holes
    aligner = ScaleAligner()
    fit, skipped = aligner.update(pred, lr)
    assert skipped is None
    assert fit.ok and fit.pixels > 0.8 * 120 * 160
    assert fit.scale == pytest.approx(1.25, rel=0.02)


def test_impossible_lr_readings_are_skipped_and_cannot_throw_the_scale_off() -> None:
    pred = prediction()
    aligner = ScaleAligner(smoothing=0.5, max_step=0.05)
    good = sensor(pred, 2.0)
    assert aligner.update(pred, good)[1] is None
    before = aligner.scale
    for bad, why in ((np.full_like(good, 65.535), "within 0.05..20.0 m"),  # 16UC1 65535 "no return" if decoded raw
                     (np.full_like(good, 1e30), "within 0.05..20.0 m"),
                     (np.full_like(good, np.inf), "within 0.05..20.0 m"),
                     (np.full_like(good, np.nan), "within 0.05..20.0 m"),
                     (sensor(pred, 2.0)[:, :30], "aspect ratio")):  # an unregistered sensor of another shape
        fit, skipped = aligner.update(pred, bad)
        assert skipped is not None and why in skipped
        assert aligner.scale == before and np.isfinite(aligner.apply(pred)).all()
    spiked = good.copy()
    spiked[:, :] = 20.0  # a valid but wildly wrong frame (everything at the far limit): bounded to 5%
    assert aligner.update(pred, spiked)[1] is None
    assert aligner.scale == pytest.approx(before * 1.05, rel=1e-6)
    for _ in range(3):
        aligner.update(pred, good)
    assert aligner.scale == pytest.approx(2.0, rel=0.03)  # back within a few frames
