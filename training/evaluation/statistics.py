"""Paired comparisons of two training recipes over seeds and frames, with bootstrap confidence intervals.

Frames of one sequence are strongly correlated in time, so frames are resampled in contiguous blocks (a moving-block
bootstrap), and seeds are resampled too: an interval then covers both the training noise (seed) and which frames
happened to be evaluated. With few seeds that bootstrap is narrower than it should be (3 seeds can only be resampled
10 ways), so the paired t-interval over the per-seed means is reported beside it (``paired_t_interval``).
"""

from __future__ import annotations

import math

import numpy as np


def t_quantile(q: float, df: int) -> float:
    """The ``q`` quantile (q > 0.5) of Student's t with ``df`` degrees of freedom: its density integrated numerically
    (trapezoids on a fine grid) and the CDF inverted, to 1e-6; no SciPy needed for one number."""
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    x = np.linspace(0.0, 200.0, 400_001)
    density = np.exp(log_c - (df + 1) / 2 * np.log1p(x * x / df))
    h = x[1] - x[0]
    pairs = (density[:-1] + density[1:]) * h / 2
    cdf = 0.5 + np.concatenate([[0.0], np.cumsum(pairs)])
    return float(np.interp(q, cdf, x))


def paired_t_interval(a: np.ndarray, b: np.ndarray, level: float = 0.95) -> dict[str, float]:
    """Mean of ``a - b`` over seeds and its t-interval; ``a`` and ``b`` are per-seed means, paired by seed."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if diff.ndim != 1 or len(diff) < 2:
        raise ValueError(f"need at least two paired seeds, got {diff.shape}")
    half = t_quantile(1 - (1 - level) / 2, len(diff) - 1) * diff.std(ddof=1) / math.sqrt(len(diff))
    mean = float(diff.mean())
    return {"mean": mean, "low": mean - half, "high": mean + half, "level": level, "seeds": len(diff),
            "excludes_zero": bool(mean - half > 0 or mean + half < 0)}


def paired_bootstrap(a: np.ndarray, b: np.ndarray, resamples: int = 2000, block: int = 10, level: float = 0.95,
                     seed: int = 0) -> dict[str, float]:
    """Mean of ``a - b`` and its ``level`` interval; ``a`` and ``b`` are (seeds, frames) of one metric, paired by
    seed (same seed, same data order) and frame. ``block`` consecutive frames are resampled together."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2 or a.size == 0:
        raise ValueError(f"need (seeds, frames) arrays of equal shape, got {a.shape} and {b.shape}")
    diff = a - b
    seeds, frames = diff.shape
    block = max(1, min(block, frames))
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, frames - block + 1, size=(resamples, -(-frames // block)))
    frame_index = (starts[:, :, None] + np.arange(block)).reshape(resamples, -1)[:, :frames]
    seed_index = rng.integers(0, seeds, size=(resamples, seeds))
    means = np.array([diff[seed_index[r]][:, frame_index[r]].mean() for r in range(resamples)])
    low, high = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return {"mean": float(diff.mean()), "low": float(low), "high": float(high), "level": level,
            "seeds": seeds, "frames": frames, "excludes_zero": bool(low > 0 or high < 0)}


def block_means(values: np.ndarray, size: int = 20) -> list[float]:
    """Means of consecutive blocks of ``size`` frames (the last block may be shorter): does error grow with distance
    from the training frames?"""
    values = np.asarray(values, dtype=np.float64)
    return [float(values[i:i + size].mean()) for i in range(0, len(values), size)]
