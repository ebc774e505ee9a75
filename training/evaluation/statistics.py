"""Paired comparisons of two training recipes over seeds and frames, with bootstrap confidence intervals.

Frames of one sequence are strongly correlated in time, so frames are resampled in contiguous blocks (a moving-block
bootstrap), and seeds are resampled too: an interval then covers both the training noise (seed) and which frames
happened to be evaluated.
"""

from __future__ import annotations

import numpy as np


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
