"""Frames of a set written by ``depth-train extract`` (layout in ``extract.py``), and a split by time."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from .frames import Frame, FrameSource


def is_extracted_set(path: str | Path) -> bool:
    """True for a directory written by ``depth-train extract``."""
    path = Path(path)
    return (path / "index.csv").is_file() and (path / "intrinsics.json").is_file()


def _read(path: Path, flags: int) -> np.ndarray:
    image = cv2.imread(str(path), flags)
    if image is None:
        raise OSError(f"{path}: missing or unreadable image")
    return image


def _depth(path: Path) -> np.ndarray:
    return _read(path, cv2.IMREAD_UNCHANGED).astype(np.float32) / 1000.0


class ExtractedSet:
    """A FrameSource over an extracted set, in time order; images are read when a frame is asked for."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not is_extracted_set(self.path):
            raise FileNotFoundError(f"{self.path}: not an extracted set (index.csv and intrinsics.json expected)")
        intrinsics = json.loads((self.path / "intrinsics.json").read_text())
        self.K = np.array(intrinsics["color"]["K"], dtype=np.float64)
        self.factor = float(intrinsics["factor"])
        self.lr_size = (intrinsics["lr"]["width"], intrinsics["lr"]["height"])
        with open(self.path / "index.csv", newline="") as f:
            rows = [row for row in csv.DictReader(f) if row.get("depth_lr")]
        self.rows = sorted(rows, key=lambda row: int(row["stamp_ns"]))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> Frame:
        row = self.rows[index]
        color = cv2.cvtColor(_read(self.path / row["color"], cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        return Frame(
            name=row["name"],
            color=color,
            K=self.K.copy(),
            depth_lr=_depth(self.path / row["depth_lr"]),
            depth_hr=_depth(self.path / row["depth_hr"]) if row["depth_hr"] else None,
            stamp_ns=int(row["stamp_ns"]),
        )


class Subset:
    """A contiguous, time-ordered slice of a FrameSource."""

    def __init__(self, source: FrameSource, indices: Sequence[int]) -> None:
        self.source = source
        self.indices = indices

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
