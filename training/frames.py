"""The one record every data reader yields, so training and evaluation never care where frames came from."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass
class Frame:
    """One training/evaluation sample.

    Depth arrays are float32 metres with 0 marking invalid pixels. ``depth_lr`` is the LR sensor depth registered
    into the color camera (None when the reader has only HR ground truth: training then makes it with ``down``).
    ``depth_hr`` is HR ground truth, used only for evaluation. ``pose`` is the 4x4 float64 camera-to-world transform
    (optical axes: x right, y down, z forward; metres) in the recording's fixed frame, None when unknown: relative poses
    of nearby frames let a photometric loss supervise detail the LR sensor cannot resolve.
    """

    name: str
    color: np.ndarray  # HxWx3 uint8, RGB
    K: np.ndarray  # 3x3 float64 color intrinsics at the color resolution
    depth_lr: np.ndarray | None = None
    depth_hr: np.ndarray | None = None
    stamp_ns: int = 0
    pose: np.ndarray | None = None


class FrameSource(Protocol):
    """A random-access sequence of frames in time order."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Frame: ...


class Subset:
    """Some frames of another source, in its (time) order."""

    def __init__(self, source: FrameSource, indices: Sequence[int]) -> None:
        self.source = source
        self.indices = indices
        self.skipped = getattr(source, "skipped", None)  # what the source left out when it opened

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Frame:
        return self.source[self.indices[index]]


def split_by_time(source: FrameSource, val: float) -> tuple[Subset, Subset]:
    """(train, validation): the validation part is the last ``val`` frames (int) or fraction (float in (0, 1)).

    Consecutive frames of a log are nearly identical, so a random split would validate on the training data.
    """
    n = len(source)
    if isinstance(val, float):
        if not 0.0 < val < 1.0:
            raise ValueError(f"validation fraction must be in (0, 1), got {val}")
        count = round(n * val)
    else:
        count = val
    if not 0 <= count <= n:
        raise ValueError(f"cannot hold out {count} of {n} frames for validation")
    return Subset(source, range(n - count)), Subset(source, range(n - count, n))
