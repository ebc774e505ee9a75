"""Pair each color frame with the nearest depth frame by header stamp.

Robot sensors are not triggered together: depth stamps lag or lead color by a few milliseconds and frames get dropped.
Pairing by header stamp (not by bag receive time, which includes transport latency) within a tolerance keeps only
pairs that saw the same instant; the default tolerance is half the color frame period, so every color frame can match
at most its own depth frame, never a neighbour's.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

DEFAULT_FRACTION = 0.5
FALLBACK_PERIOD_NS = 33_333_333  # 30 Hz, used when a stream has a single frame


@dataclass
class Pairing:
    """The outcome of pairing: matched index pairs and why the other color frames were skipped."""

    pairs: list[tuple[int, int]]  # (color index, depth index), in the order of the color stamps given
    tolerance_ns: int
    skipped: Counter = field(default_factory=Counter)  # reason -> count


def frame_period_ns(stamps_ns: np.ndarray | list[int]) -> int:
    """Median spacing of the stamps: robust to dropped frames and jitter."""
    stamps = np.unique(np.asarray(stamps_ns, dtype=np.int64))
    if len(stamps) < 2:
        return FALLBACK_PERIOD_NS
    return int(np.median(np.diff(stamps)))


def default_tolerance_ns(color_stamps_ns: np.ndarray | list[int], fraction: float = DEFAULT_FRACTION) -> int:
    """A fraction of the color frame period."""
    return int(fraction * frame_period_ns(color_stamps_ns))


def nearest_within(sorted_stamps: np.ndarray, queries: np.ndarray, tolerance_ns: int) -> np.ndarray:
    """For each query, the index into ``sorted_stamps`` of the nearest stamp, or -1 when none is within tolerance."""
    sorted_stamps = np.asarray(sorted_stamps, dtype=np.int64)
    queries = np.asarray(queries, dtype=np.int64)
    if len(sorted_stamps) == 0:
        return np.full(len(queries), -1, dtype=np.int64)
    right = np.clip(np.searchsorted(sorted_stamps, queries), 1, len(sorted_stamps) - 1)
    left = right - 1
    if len(sorted_stamps) == 1:
        left = right = np.zeros_like(queries)
    pick = np.where(np.abs(sorted_stamps[left] - queries) <= np.abs(sorted_stamps[right] - queries), left, right)
    return np.where(np.abs(sorted_stamps[pick] - queries) <= tolerance_ns, pick, -1)


def pair_nearest(
    color_stamps_ns: np.ndarray | list[int],
    depth_stamps_ns: np.ndarray | list[int],
    tolerance_ns: int | None = None,
) -> Pairing:
    """Pair every color stamp with the nearest depth stamp within ``tolerance_ns`` (default: half a color period).

    Indices refer to the inputs as given (they need not be sorted).
    """
    color = np.asarray(color_stamps_ns, dtype=np.int64)
    depth = np.asarray(depth_stamps_ns, dtype=np.int64)
    if tolerance_ns is None:
        tolerance_ns = default_tolerance_ns(color)
    order = np.argsort(depth, kind="stable")
    hit = nearest_within(depth[order], color, tolerance_ns)
    pairs = [(int(c), int(order[d])) for c, d in enumerate(hit) if d >= 0]
    skipped = Counter({"no depth within tolerance": int(np.sum(hit < 0))}) if np.any(hit < 0) else Counter()
    return Pairing(pairs=pairs, tolerance_ns=int(tolerance_ns), skipped=skipped)
