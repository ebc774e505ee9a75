"""Frames of a set written by ``depth-train extract`` (layout in ``extract.py``)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np

from ..frames import Frame
from ..skipped import FrameError, LeavesOut

INDEX_COLUMNS = ["name", "stamp_ns", "depth_stamp_ns", "color", "depth_lr", "depth_hr", "pose"]  # of index.csv
LATER_COLUMNS = {"pose"}  # added after the first sets were extracted: a set without them still reads (pose None)


def pose_cell(pose: np.ndarray | None) -> str:
    """index.csv's ``pose``: the first three rows of the 4x4 camera-to-fixed-frame transform, 12 numbers row-major."""
    return "" if pose is None else " ".join(f"{v:.12g}" for v in np.asarray(pose)[:3].ravel())


def parse_pose(cell: str | None) -> np.ndarray | None:
    """The 4x4 float64 pose of a ``pose`` cell; None for an empty cell or a set extracted without the column."""
    if not cell:
        return None
    pose = np.eye(4)
    pose[:3] = np.array(cell.split(), dtype=np.float64).reshape(3, 4)
    return pose


def is_extracted_set(path: str | Path) -> bool:
    """True for a directory written by ``depth-train extract``."""
    path = Path(path)
    return (path / "index.csv").is_file() and (path / "intrinsics.json").is_file()


def _read(path: Path, flags: int, what: str) -> np.ndarray:
    image = cv2.imread(str(path), flags)
    if image is None:
        raise FrameError(f"unreadable {what} image", path)
    return image


def _depth(path: Path) -> np.ndarray:
    return _read(path, cv2.IMREAD_UNCHANGED, "depth").astype(np.float32) / 1000.0


class ExtractedSet(LeavesOut):
    """A FrameSource over an extracted set, in time order; images are read when a frame is asked for.

    Rows whose files are missing (deleted, or a copy of the set left incomplete) are left out and counted in
    ``skipped``.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not is_extracted_set(self.path):
            raise FileNotFoundError(f"{self.path}: not an extracted set (index.csv and intrinsics.json expected)")
        try:
            intrinsics = json.loads((self.path / "intrinsics.json").read_text())
            self.K = np.array(intrinsics["color"]["K"], dtype=np.float64).reshape(3, 3)
            self.factor = float(intrinsics["factor"])
            self.lr_size = (int(intrinsics["lr"]["width"]), int(intrinsics["lr"]["height"]))
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{self.path / 'intrinsics.json'}: not as extract writes it ({err!r})") from None
        with open(self.path / "index.csv", newline="") as f:
            reader = csv.DictReader(f)
            missing = set(INDEX_COLUMNS) - LATER_COLUMNS - set(reader.fieldnames or [])
            if missing:
                raise ValueError(f"{self.path / 'index.csv'}: no column(s) {sorted(missing)}")
            rows = list(reader)
        kept = []
        self._leave_out_unextracted({int(row["name"]) for row in rows})
        for row in rows:
            if not row.get("depth_lr"):
                self.leave_out(int(row["name"]), "no LR depth", row["name"])
                continue
            missing = [c for c in ("color", "depth_lr", "depth_hr") if row[c] and not (self.path / row[c]).is_file()]
            if missing:
                self.leave_out(int(row["name"]), f"missing {missing[0]} file", row[missing[0]])
            else:
                kept.append(row)
        if not kept:
            raise FileNotFoundError(f"{self.path}: no usable frame in index.csv ({'; '.join(self.skipped.lines())})"
                                    if self.skipped else f"{self.path}: index.csv lists no frame")
        self.rows = sorted(kept, key=lambda row: int(row["stamp_ns"]))
        self.color_numbers = [int(row["name"]) for row in self.rows]  # position in the color stream
        try:
            self.poses = [parse_pose(row.get("pose")) for row in self.rows]  # for picking neighbours without images
        except ValueError as err:
            raise ValueError(f"{self.path / 'index.csv'}: a pose is not 12 numbers ({err})") from None

    def _leave_out_unextracted(self, listed: set[int]) -> None:
        """Count the color frames extraction did not write (no depth within tolerance, decode errors: its
        summary.json says how many for what reason), so a cached set reports them as the extraction did."""
        try:
            summary = json.loads((self.path / "summary.json").read_text())
            total, reasons = int(summary["color_frames"]), dict(summary["skipped"])
        except (OSError, ValueError, KeyError, TypeError):
            return  # a set copied without its summary: nothing to compare with
        reason = next(iter(reasons)) if len(reasons) == 1 else (
            "not extracted (" + ", ".join(f"{n} {r}" for r, n in reasons.items()) + " in summary.json)")
        for number in sorted(set(range(total)) - listed):
            self.leave_out(number, reason, f"{number:06d}")

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> Frame:
        row = self.rows[index]
        color = cv2.cvtColor(_read(self.path / row["color"], cv2.IMREAD_COLOR, "color"), cv2.COLOR_BGR2RGB)
        return Frame(
            name=row["name"],
            color=color,
            K=self.K.copy(),
            depth_lr=_depth(self.path / row["depth_lr"]),
            depth_hr=_depth(self.path / row["depth_hr"]) if row["depth_hr"] else None,
            stamp_ns=int(row["stamp_ns"]),
            pose=None if self.poses[index] is None else self.poses[index].copy(),
        )
