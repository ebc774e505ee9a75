"""Data readers (7-Scenes, TUM RGB-D, extracted robot logs, rosbag2): every one yields Frames in time order.

Readers return a FrameSource (frames in time order). Frames whose files are missing are left out when the reader
opens and counted in its ``skipped`` (one warning per reason); a file that exists but cannot be decoded raises
``FrameError`` when the frame is read, which evaluation counts and training reports as a one-line error.

A path may end in ``@START:STOP`` to keep the frames whose color-frame number (position in the color stream,
counting color frames that had no depth) is in [START, STOP), e.g. ``redkitchen@0:500``: sequences are highly
correlated in time, so splits are by block, never random.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import cv2
import numpy as np

from ..config import Config
from ..frames import Frame, FrameSource, Subset
from ..skipped import FrameError, LeavesOut, Skipped, skipped_of

log = logging.getLogger(__name__)

SEVEN_SCENES_K = np.array([[585.0, 0, 320.0], [0, 585.0, 240.0], [0, 0, 1]])


def read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FrameError("unreadable color image", path)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_depth_png(path: Path, units_per_metre: float) -> np.ndarray:
    """16-bit depth PNG to float32 metres, 0 and 65535 (saturated / no return) marked invalid as 0."""
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None or raw.dtype != np.uint16:
        raise FrameError("unreadable depth image (not a 16-bit PNG)", path)
    depth = raw.astype(np.float32) / units_per_metre
    depth[(raw == 0) | (raw == 65535)] = 0.0
    return depth


def read_pose_txt(path: Path) -> np.ndarray:
    """A 4x4 camera-to-world matrix written as 16 numbers (7-Scenes ``frame-XXXXXX.pose.txt``)."""
    try:
        values = np.array(path.read_text().split(), dtype=np.float64)
    except FileNotFoundError:
        raise FrameError("missing pose file", path) from None
    except (OSError, ValueError):
        raise FrameError("unreadable pose file", path) from None
    if values.size != 16 or not np.all(np.isfinite(values)):
        raise FrameError("unreadable pose file", path)
    return values.reshape(4, 4)


class SevenScenes(LeavesOut):
    """7-Scenes layout: frame-XXXXXX.color.jpg + frame-XXXXXX.depth.png (mm), optional camera-intrinsics.txt and
    frame-XXXXXX.pose.txt (camera-to-world).

    Poses are read when the reader opens (small files, and ``poses`` lets training pick neighbour frames without
    decoding images); a frame whose pose file is missing or unreadable is kept with ``pose`` None, counted in
    ``without_pose`` and warned about once per reason.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        colors = sorted(self.root.glob("frame-*.color.*"))
        if not colors:
            raise FileNotFoundError(f"{root}: no frame-XXXXXX.color.* files (7-Scenes layout)")
        self.colors, self.color_numbers = [], []
        for i, path in enumerate(colors):
            number = int(re.sub(r"\D", "", path.name.split(".")[0]) or i)
            if self._depth_path(path).is_file():
                self.colors.append(path)
                self.color_numbers.append(number)
            else:
                self.leave_out(number, "missing depth file", self._depth_path(path).name)
        intrinsics = self.root / "camera-intrinsics.txt"
        try:
            self.K = np.loadtxt(intrinsics).reshape(3, 3) if intrinsics.exists() else SEVEN_SCENES_K
        except ValueError as err:
            raise ValueError(f"{intrinsics}: expected a 3x3 matrix ({err})") from None
        if not self.colors:
            raise FileNotFoundError(f"{root}: no usable frame ({'; '.join(self.skipped.lines())})")
        self.poses: list[np.ndarray | None] = []
        self.without_pose = Skipped()
        for path in self.colors:
            try:
                self.poses.append(read_pose_txt(self._sibling(path, "pose.txt")))
            except FrameError as err:
                self.poses.append(None)
                self.without_pose.add(err.reason, err.path.name)
        for line in self.without_pose.lines():
            log.warning("%s: %s", root, line.replace("skipped", "kept without pose", 1))

    def __len__(self) -> int:
        return len(self.colors)

    @staticmethod
    def _sibling(color_path: Path, suffix: str) -> Path:
        return color_path.with_name(f"{color_path.name.split('.')[0]}.{suffix}")

    @classmethod
    def _depth_path(cls, color_path: Path) -> Path:
        return cls._sibling(color_path, "depth.png")

    def __getitem__(self, index: int) -> Frame:
        color_path = self.colors[index]
        return Frame(name=color_path.name.split(".")[0], color=read_rgb(color_path), K=self.K.copy(),
                     depth_hr=read_depth_png(self._depth_path(color_path), 1000.0),
                     stamp_ns=int(self.color_numbers[index] * 1e9 / 30),
                     pose=None if self.poses[index] is None else self.poses[index].copy())


def _read_list(path: Path) -> list[tuple[float, str]]:
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip() and not line.startswith("#"):
            try:
                stamp, name = line.split()[:2]
                rows.append((float(stamp), name))
            except ValueError:
                raise ValueError(f"{path}:{number}: expected 'timestamp path', got {line.strip()!r}") from None
    return rows


class TumRgbd(LeavesOut):
    """TUM RGB-D layout: rgb.txt / depth.txt (timestamp path), depth PNG at 5000 units per metre.

    Color and depth are associated by nearest timestamp within ``max_dt`` seconds (TUM's associate.py convention).
    Intrinsics come from ``camera.json`` ({"fx", "fy", "cx", "cy"}) in the folder or the ``intrinsics`` argument.
    """

    def __init__(self, root: Path, intrinsics: tuple[float, float, float, float] | None = None,
                 max_dt: float = 0.02) -> None:
        self.root = Path(root)
        colors, depths = _read_list(self.root / "rgb.txt"), _read_list(self.root / "depth.txt")
        if not depths:
            raise FileNotFoundError(f"{root}/depth.txt lists no depth images")
        depth_stamps = np.array([s for s, _ in depths])
        self.pairs, self.color_numbers = [], []
        for number, (stamp, name) in enumerate(colors):
            j = int(np.argmin(np.abs(depth_stamps - stamp)))
            if abs(depth_stamps[j] - stamp) > max_dt:
                self.leave_out(number, f"no depth within {max_dt * 1000:g} ms", name)
            elif not (self.root / name).is_file():
                self.leave_out(number, "missing color file", name)
            elif not (self.root / depths[j][1]).is_file():
                self.leave_out(number, "missing depth file", depths[j][1])
            else:
                self.pairs.append((stamp, name, depths[j][1]))
                self.color_numbers.append(number)
        if not self.pairs:
            raise FileNotFoundError(f"{root}: no usable frame in rgb.txt ({'; '.join(self.skipped.lines())})")
        camera = self.root / "camera.json"
        if intrinsics is None and camera.exists():
            try:
                c = json.loads(camera.read_text())
                intrinsics = (float(c["fx"]), float(c["fy"]), float(c["cx"]), float(c["cy"]))
            except (ValueError, KeyError, TypeError) as err:
                raise ValueError(f"{camera}: expected {{\"fx\", \"fy\", \"cx\", \"cy\"}} numbers ({err!r})") from None
        if intrinsics is None:
            raise ValueError(f"{root}: no camera.json; pass the intrinsics (fx, fy, cx, cy)")
        fx, fy, cx, cy = intrinsics
        self.K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=np.float64)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> Frame:
        stamp, color, depth = self.pairs[index]
        return Frame(name=Path(color).stem, color=read_rgb(self.root / color), K=self.K.copy(),
                     depth_hr=read_depth_png(self.root / depth, 5000.0), stamp_ns=int(stamp * 1e9))


class Concat:
    """Several sources one after another (several recordings in one training run)."""

    def __init__(self, sources: list[FrameSource]) -> None:
        self.sources = sources
        self.offsets = np.cumsum([0] + [len(s) for s in sources])
        self.skipped = Skipped()
        for source in sources:
            self.skipped.update(skipped_of(source))

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, index: int) -> Frame:
        k = int(np.searchsorted(self.offsets, index, side="right") - 1)
        return self.sources[k][index - int(self.offsets[k])]


def is_bag(path: Path) -> bool:
    """A rosbag2 directory, its storage file, or a directory a recorder left without metadata.yaml (power loss)."""
    if path.is_dir():
        return (path / "metadata.yaml").exists() or any(p.suffix in (".mcap", ".db3") for p in path.iterdir())
    return path.suffix in (".mcap", ".db3")


def open_frames(spec: str, cfg: Config | None = None, intrinsics: tuple[float, float, float, float] | None = None,
                cache_root: Path | None = None) -> FrameSource:
    """Open ``PATH[@START:STOP]`` by what it holds: a rosbag2 log, an extracted log, a 7-Scenes or a TUM folder."""
    match = re.fullmatch(r"(.+?)@(\d*):(\d*)", spec)
    path = Path(match.group(1) if match else spec)
    if not path.exists():
        raise FileNotFoundError(f"data path {path} does not exist")
    from ..logs.extracted_set import ExtractedSet

    if is_bag(path):
        from ..logs.extract import extract_cached

        source = ExtractedSet(extract_cached([str(path)], cache_root or Path.home() / ".cache" / "depth_node"))
    elif (path / "index.csv").exists():
        source = ExtractedSet(path)
    elif (path / "rgb.txt").exists():
        source = TumRgbd(path, intrinsics)
    else:
        source = SevenScenes(path)
    if match:
        start, stop = (int(v) if v else None for v in match.groups()[1:])
        numbers = getattr(source, "color_numbers", range(len(source)))
        def within(n: int) -> bool:
            return (start is None or n >= start) and (stop is None or n < stop)

        skipped = source.skipped_where(within) if isinstance(source, LeavesOut) else skipped_of(source)
        source = Subset(source, [i for i, n in enumerate(numbers) if within(n)])
        source.skipped = skipped
    skipped_of(source).warn(log, str(path))
    return source
