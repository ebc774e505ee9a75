"""Which camera_info describes an image, when DDS delivers camera_info late (seconds, under load) or not at all.

Policy, so that no frame is lost needlessly and none waits behind a late message:

1. the camera_info whose stamp matches the image's (within a tolerance): ``matched``. It usually arrives within
   milliseconds of its image (another DDS writer), so it is waited for ``REUSE_AFTER_S`` first;
2. else the latest one of the image's size, if the camera model has not changed since (the latest two received
   agree, or only one was ever received): ``reused``. The model of a steady camera is the same in every message, so
   its late copy would carry nothing new;
3. else (none of that size yet, or the model just changed) the frame waits for its own, up to ``wait_s``, and gives
   up at once when a newer frame is waiting: ``None``, the frame is dropped as ``no_camera_info``.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

POLL_S = 0.005  # how often a waiting frame looks for a newer one
REUSE_AFTER_S = 0.03  # how long the matching camera_info is waited for before an earlier one stands in


def camera_model(info: Any) -> tuple:
    """What makes two CameraInfo messages describe the same camera (everything but the header)."""
    return (int(info.height), int(info.width), str(info.distortion_model), tuple(info.d), tuple(info.k),
            tuple(info.r), tuple(info.p), int(info.binning_x), int(info.binning_y), int(info.roi.x_offset),
            int(info.roi.y_offset), int(info.roi.height), int(info.roi.width))


class CameraInfoCache:
    """Recent camera_info messages by stamp (ns) and the policy above (thread-safe: filled by the executor)."""

    def __init__(self, size: int = 60) -> None:
        self._items: OrderedDict[int, Any] = OrderedDict()
        self._cond = threading.Condition()
        self._latest: Any = None
        self._steady = False  # the latest two messages describe the same camera
        self.size = size

    def add(self, stamp_ns: int, info: Any) -> None:
        with self._cond:
            self._steady = self._latest is None or camera_model(self._latest) == camera_model(info)
            self._latest = info
            self._items[stamp_ns] = info
            self._items.move_to_end(stamp_ns)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
            self._cond.notify_all()

    def latest(self) -> Any:
        with self._cond:
            return self._latest

    def _matched(self, stamp_ns: int, tolerance_ns: int) -> Any:
        if not self._items:
            return None
        best = min(self._items, key=lambda s: abs(s - stamp_ns))
        return self._items[best] if abs(best - stamp_ns) <= tolerance_ns else None

    def _reusable(self, height: int, width: int) -> Any:
        info = self._latest
        if info is not None and self._steady and (int(info.height), int(info.width)) == (height, width):
            return info
        return None

    def lookup(self, stamp_ns: int, height: int, width: int, tolerance_ns: int, wait_s: float,
               newer_waiting: Callable[[], bool]) -> tuple[Any, str]:
        """(camera_info, "matched" | "reused") for an image, or (None, why not) after the wait described above."""
        start = time.monotonic()
        with self._cond:
            while True:
                info = self._matched(stamp_ns, tolerance_ns)
                if info is not None:
                    return info, "matched"
                newer = newer_waiting()
                waited = time.monotonic() - start
                info = self._reusable(height, width)
                if info is not None and (newer or waited >= min(REUSE_AFTER_S, wait_s)):
                    return info, "reused"
                if waited >= wait_s:
                    return None, f"none arrived within {wait_s:.2f} s"
                if newer:
                    return None, "a newer frame arrived first"
                self._cond.wait(POLL_S)
