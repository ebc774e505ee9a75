"""The one record every data reader yields, so training and evaluation never care where frames came from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass
class Frame:
    """One training/evaluation sample.

    Depth arrays are float32 metres with 0 marking invalid pixels. ``depth_lr`` is the LR sensor depth registered
    into the color camera (None when the reader has only HR ground truth: training then makes it with ``down``).
    ``depth_hr`` is HR ground truth, used only for evaluation.
    """

    name: str
    color: np.ndarray  # HxWx3 uint8, RGB
    K: np.ndarray  # 3x3 float64 color intrinsics at the color resolution
    depth_lr: np.ndarray | None = None
    depth_hr: np.ndarray | None = None
    stamp_ns: int = 0


class FrameSource(Protocol):
    """A random-access sequence of frames in time order."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Frame: ...
