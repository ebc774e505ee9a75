"""Frames of a set written by ``depth-train extract`` (layout in ``extract.py``)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np

from ..frames import Frame


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
        self.color_numbers = [int(row["name"]) for row in self.rows]  # position in the color stream

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
