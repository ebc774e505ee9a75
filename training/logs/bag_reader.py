"""Read what a robot recorded: rosbag2 bags (MCAP or SQLite3), their topics, images, camera models and transforms.

Everything goes through ``rosbags`` so no ROS install is needed; message types come from the definitions embedded in
the bag (any ROS 2 distro), falling back to the latest typestore for old bags that carry none. Pixel format
conversion uses ``rosbags-image``; the ``compressedDepth`` transport is decoded here from its published format
(a 12-byte header ``int32 format, float32 depthQuantA, float32 depthQuantB`` followed by a 16-bit PNG holding
millimetres for 16UC1, or quantised inverse depth ``q = A / z + B`` for 32FC1, 0 meaning invalid).
"""

from __future__ import annotations

import logging
import re
import sqlite3
import struct
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.image import ImageError
from rosbags.image.image import convert_color, to_cvtype
from rosbags.rosbag2 import ReaderError
from rosbags.typesys import Stores, get_typestore

from .damaged_logs import Damage, SalvageReader, salvage_sqlite

log = logging.getLogger(__name__)
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
TF_MESSAGE = "tf2_msgs/msg/TFMessage"
DEPTH_ENCODINGS = {"16UC1", "mono16", "32FC1"}  # mono16 is millimetres, like 16UC1
COLOR_3CH = {"rgb8", "bgr8", "rgba8", "bgra8", "yuv422", "uyvy", "yuyv", "yuv422_yuy2"}
GT_TOKENS = {"gt", "groundtruth", "ground", "truth"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
STORAGE_SUFFIXES = (".mcap", ".db3")
# What a corrupt message can raise when deserialised or decoded, and what a damaged bag file can raise when read.
MESSAGE_ERRORS = (AnyReaderError, ValueError, cv2.error)
READ_ERRORS = (AnyReaderError, ReaderError, sqlite3.Error, OSError)


class BagError(RuntimeError):
    """A bag cannot be used as asked; the message names the bag, the topic and the reason."""


class DecodeError(ValueError):
    """One message cannot be decoded; extraction skips it and counts it."""


@dataclass(frozen=True)
class CameraModel:
    """Pinhole intrinsics of one image stream, from its CameraInfo."""

    K: np.ndarray  # 3x3 float64
    width: int
    height: int
    frame_id: str


@dataclass(frozen=True)
class Topics:
    """The streams extraction reads from one bag."""

    color: str
    depth: str
    color_info: str
    depth_info: str
    gt: str | None = None  # HR ground-truth depth in the color camera, for evaluation


def storage_paths(path: str | Path) -> list[Path]:
    """What to hand to rosbags for one user-given bag path.

    A bag directory with ``metadata.yaml`` is read whole; a ``.mcap``/``.db3`` file alone; a directory whose
    recording was interrupted before ``metadata.yaml`` was written falls back to its storage files.
    """
    path = Path(path)
    if not path.exists():
        raise BagError(f"{path}: no such bag")
    if path.is_file() or (path / "metadata.yaml").is_file():
        return [path]
    files = sorted(p for p in path.iterdir() if p.suffix in STORAGE_SUFFIXES)
    if not files:
        raise BagError(f"{path}: not a rosbag2 bag (no metadata.yaml, .mcap or .db3 file)")
    return files


class LogReader(AnyReader):
    """rosbags' AnyReader plus ``damage``: where each file of a log cut short stopped being readable (empty for an
    intact log)."""

    def __init__(self, paths: list[Path]) -> None:
        super().__init__(paths, default_typestore=get_typestore(Stores.LATEST))
        self.damage: list[Damage] = []


def _open_damaged(files: list[Path], stack: ExitStack) -> LogReader:
    """A reader over what the storage files of a damaged log still hold (see ``damaged_logs``)."""
    damage, readable = [], []
    for file in files:
        if file.suffix == ".db3":
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="depth_node_db3_")))
            file, cut = salvage_sqlite(file, tmp / file.name)
            damage += [cut] if cut else []
        readable.append(file)
    reader = LogReader(readable)
    reader.readers = [SalvageReader(file) for file in readable]
    reader.open()
    stack.callback(reader.close)
    reader.damage = damage + [r.storage.damage for r in reader.readers if getattr(r.storage, "damage", None)]
    return reader


@contextmanager
def open_bag(path: str | Path) -> Iterator[LogReader]:
    """An open reader on one bag, with any failure to open turned into a BagError naming the bag.

    A log that rosbags cannot open (cut short by a power loss: no MCAP summary, a SQLite file shorter than its
    header) is read up to the damage instead, with one warning naming the bag and where reading stopped.
    """
    path = Path(path)
    paths = storage_paths(path)
    with ExitStack() as stack:
        try:
            reader = LogReader(paths)
            reader.open()
            stack.callback(reader.close)
        except (*READ_ERRORS, ValueError, KeyError) as err:  # rosbags raises several types for unreadable files
            files = [f for p in paths for f in (sorted(p.iterdir()) if p.is_dir() else [p]) if f.suffix in
                     STORAGE_SUFFIXES]
            try:
                reader = _open_damaged(files, stack)
            except (*READ_ERRORS, ValueError, KeyError, struct.error):
                raise BagError(f"{path}: cannot open bag ({type(err).__name__}: {err}); not a rosbag2 log or "
                               f"damaged before its first message") from err
            if reader.message_count == 0:
                raise BagError(f"{path}: no complete message in the log ({'; '.join(map(str, reader.damage))})"
                               ) from err
            if reader.damage:
                log.warning("%s: log cut short, reading the %d complete messages before the damage: %s", path,
                            reader.message_count, "; ".join(map(str, reader.damage)))
            else:
                log.warning("%s: %s: %s; its storage files are intact and read directly", path,
                            type(err).__name__, err)
        yield reader


def list_topics(path: str | Path) -> dict[str, tuple[str, int]]:
    """Topic name -> (message type, message count) of one bag."""
    with open_bag(path) as reader:
        return {name: (info.msgtype or "mixed", info.msgcount) for name, info in reader.topics.items()}


def first_message(reader: AnyReader, topic: str) -> object | None:
    """The first decodable message of a topic (None when it has none)."""
    connections = [c for c in reader.connections if c.topic == topic]
    if not connections:  # an empty filter would read every topic
        return None
    for connection, _, raw in reader.messages(connections=connections):
        try:
            return reader.deserialize(raw, connection.msgtype)
        except MESSAGE_ERRORS:  # a corrupt first message: try the next
            pass
    return None


def stamp_ns(msg: object) -> int:
    """Header stamp in nanoseconds: when the sensor saw the scene, unlike the bag's receive time."""
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


def _tokens(topic: str) -> set[str]:
    return {t.lower() for t in re.split(r"[/_\-]", topic) if t}


def _base_topic(topic: str, msgtype: str) -> str:
    """The raw image topic an image_transport topic was published from."""
    return topic.rsplit("/", 1)[0] if msgtype == COMPRESSED else topic


def classify_image_topic(topic: str, msgtype: str, msg: object) -> str | None:
    """'color', 'depth' or 'gt' from what the first message holds, or None for streams training cannot use."""
    if msgtype == COMPRESSED:
        kind = "depth" if "compresseddepth" in msg.format.lower() else "color"
    elif msg.encoding in DEPTH_ENCODINGS:
        kind = "depth"
    else:
        try:
            bits = to_cvtype(msg.encoding)[0]
        except ImageError:
            return None
        kind = "color" if bits == 8 else None
    if kind == "depth" and _tokens(topic) & GT_TOKENS:
        return "gt"
    return kind


def classify_color_channels(reader: AnyReader, topic: str) -> int:
    """3 for a color stream, 1 for a mono one (JPEG/PNG streams say so in their format string)."""
    msg = first_message(reader, topic)
    if msg is None:
        return 0
    text = msg.format.split(";")[0].strip() if hasattr(msg, "format") else msg.encoding
    return 3 if text in COLOR_3CH or text in ("jpeg", "png", "") else 1


def _one(kind: str, candidates: list[str], bag: Path, flag: str) -> str:
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise BagError(f"{bag}: no {kind} topic found; name it with {flag}")
    raise BagError(f"{bag}: several {kind} topics: {', '.join(candidates)}; choose one with {flag}")


def _prefer_raw(candidates: list[tuple[str, str]]) -> list[str]:
    """Drop an image_transport topic when its raw topic is also a candidate: they are one camera."""
    raw = {name for name, msgtype in candidates if msgtype == IMAGE}
    return [name for name, msgtype in candidates if msgtype == IMAGE or _base_topic(name, msgtype) not in raw]


def _sibling_info(reader: AnyReader, image_topic: str) -> str | None:
    """The CameraInfo beside an image topic, by image_transport naming (``.../image_raw`` -> ``.../camera_info``)."""
    topics = reader.topics
    if image_topic not in topics:
        return None
    sibling = _base_topic(image_topic, topics[image_topic].msgtype).rsplit("/", 1)[0] + "/camera_info"
    return sibling if sibling in topics and topics[sibling].msgtype == CAMERA_INFO else None


def _info_by_frame(reader: AnyReader, bag: Path, image_topic: str, flag: str, taken: str | None) -> str:
    """The only CameraInfo topic sharing the image's frame_id and not already the other stream's."""
    infos = [name for name, info in reader.topics.items() if info.msgtype == CAMERA_INFO]
    image = first_message(reader, image_topic)
    frame = image.header.frame_id if image is not None else None
    same = [name for name in infos if name != taken and (m := first_message(reader, name)) is not None
            and m.header.frame_id == frame]
    if len(same) == 1:
        return same[0]
    listing = ", ".join(infos) if infos else "none in the bag"
    raise BagError(f"{bag}: no CameraInfo topic for {image_topic} (candidates: {listing}); name it with {flag}")


def _check_topic(reader: AnyReader, bag: Path, topic: str, types: tuple[str, ...]) -> str:
    topics = reader.topics
    if topic not in topics:
        raise BagError(f"{bag}: topic {topic} not in the bag (topics: {', '.join(sorted(topics)) or 'none'})")
    if topics[topic].msgtype not in types:
        raise BagError(f"{bag}: topic {topic} has type {topics[topic].msgtype}, expected {' or '.join(types)}")
    if topics[topic].msgcount == 0:
        raise BagError(f"{bag}: topic {topic} has no messages")
    return topic


def detect_topics(
    reader: AnyReader,
    bag: Path,
    color: str | None = None,
    depth: str | None = None,
    color_info: str | None = None,
    depth_info: str | None = None,
    gt: str | None = None,
) -> Topics:
    """Topics to extract: the ones given, else the one obvious candidate of each kind; ambiguity is an error."""
    if not reader.topics or reader.message_count == 0:
        raise BagError(f"{bag}: the bag is empty")
    if color is None or depth is None or gt is None:
        kinds: dict[str, list[tuple[str, str]]] = {"color": [], "depth": [], "gt": []}
        for name, info in sorted(reader.topics.items()):
            msg = first_message(reader, name) if info.msgtype in (IMAGE, COMPRESSED) else None
            if msg is not None and (kind := classify_image_topic(name, info.msgtype, msg)):
                kinds[kind].append((name, info.msgtype))
        colors = _prefer_raw(kinds["color"])
        if len(colors) > 1:  # an HR color camera next to mono IR imagers: the color one is the obvious choice
            rich = [n for n in colors if classify_color_channels(reader, n) == 3]
            colors = rich or colors
        color = color or _one("color image", colors, bag, "--color-topic")
        if depth is None and not kinds["depth"]:
            images = [f"{n} ({depth_encoding(m)})" for n, info in sorted(reader.topics.items())
                      if info.msgtype in (IMAGE, COMPRESSED) and (m := first_message(reader, n)) is not None]
            raise BagError(f"{bag}: no depth image topic with a supported encoding (16UC1, mono16, 32FC1, "
                           f"compressedDepth); image topics: {', '.join(images) or 'none'}; use --depth-topic")
        depth = depth or _one("depth image", _prefer_raw(kinds["depth"]), bag, "--depth-topic")
        truths = _prefer_raw(kinds["gt"])
        if gt is None and len(truths) > 1:  # ground truth is optional: do without rather than stop
            log.warning("%s: several ground-truth depth topics (%s); using none, choose one with --gt-topic", bag,
                        ", ".join(truths))
        gt = gt or (truths[0] if len(truths) == 1 else None)
    color = _check_topic(reader, bag, color, (IMAGE, COMPRESSED))
    depth = _check_topic(reader, bag, depth, (IMAGE, COMPRESSED))
    if gt is not None:
        gt = _check_topic(reader, bag, gt, (IMAGE, COMPRESSED))
    color_info = color_info or _sibling_info(reader, color)
    depth_info = depth_info or _sibling_info(reader, depth)
    color_info = color_info or _info_by_frame(reader, bag, color, "--color-info-topic", depth_info)
    depth_info = depth_info or _info_by_frame(reader, bag, depth, "--depth-info-topic", color_info)
    color_info = _check_topic(reader, bag, color_info, (CAMERA_INFO,))
    depth_info = _check_topic(reader, bag, depth_info, (CAMERA_INFO,))
    return Topics(color=color, depth=depth, color_info=color_info, depth_info=depth_info, gt=gt)


def image_array(msg: object) -> np.ndarray:
    """The pixels of a sensor_msgs/Image in native byte order, honouring row padding (step)."""
    try:
        _, _, typestr, channels = to_cvtype(msg.encoding)
    except ImageError as err:
        raise DecodeError(f"unknown image encoding {msg.encoding!r}") from err
    dtype = np.dtype(typestr).newbyteorder(">" if msg.is_bigendian else "<")
    row = msg.width * channels * dtype.itemsize
    if msg.step < row or len(msg.data) < msg.step * msg.height:
        raise DecodeError(f"{msg.width}x{msg.height} {msg.encoding} needs {row}-byte rows; got step {msg.step} "
                          f"and {len(msg.data)} bytes")
    rows = np.frombuffer(memoryview(msg.data), np.uint8, count=msg.step * msg.height).reshape(msg.height, msg.step)
    img = np.ascontiguousarray(rows[:, :row]).view(dtype).reshape(msg.height, msg.width, channels)
    img = img.astype(dtype.newbyteorder("="))
    return img[..., 0] if channels == 1 else img


def _imdecode(data: bytes, flags: int, what: str) -> np.ndarray:
    buf = np.frombuffer(memoryview(data), np.uint8)
    if buf[:2].tobytes() == b"\xff\xd8" and b"\xff\xd9" not in buf[-16:].tobytes():
        raise DecodeError(f"{what}: JPEG data truncated (no end-of-image marker)")
    img = cv2.imdecode(buf, flags)
    if img is None:
        raise DecodeError(f"{what}: not a decodable JPEG/PNG ({len(buf)} bytes)")
    return img


def decode_color(msg: object) -> np.ndarray:
    """HxWx3 uint8 RGB from an Image (any 8-bit encoding rosbags-image converts) or a JPEG/PNG CompressedImage."""
    if hasattr(msg, "format"):
        bgr = _imdecode(msg.data, cv2.IMREAD_COLOR, f"color {msg.format!r}")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    img = image_array(msg)
    try:
        rgb = convert_color(img, msg.encoding, "rgb8")
    except (ImageError, cv2.error) as err:
        raise DecodeError(f"cannot convert color encoding {msg.encoding!r} to rgb8: {err}") from err
    return np.ascontiguousarray(rgb, dtype=np.uint8)


def decode_compressed_depth(data: bytes, fmt: str) -> np.ndarray:
    """Metres (float32, 0 invalid) from a ``compressedDepth`` CompressedImage payload."""
    encoding = fmt.split(";")[0].strip()
    codec = fmt.split("compressedDepth")[-1].strip() or "png"
    if codec != "png":
        raise DecodeError(f"compressedDepth codec {codec!r} is not supported (only png)")
    data = bytes(data)
    if data[12:20] == PNG_MAGIC:
        _, quant_a, quant_b = struct.unpack("<iff", data[:12])
        png = data[12:]
    elif data[:8] == PNG_MAGIC:  # header-less payloads written by some tools
        quant_a = quant_b = 0.0
        png = data
    else:
        raise DecodeError(f"compressedDepth {fmt!r}: no PNG after the 12-byte header")
    raw = _imdecode(png, cv2.IMREAD_UNCHANGED, f"compressedDepth {fmt!r}")
    if raw.dtype != np.uint16 or raw.ndim != 2:
        raise DecodeError(f"compressedDepth {fmt!r}: expected a 16-bit single-channel PNG, got {raw.dtype} {raw.shape}")
    if encoding == "16UC1":
        return raw.astype(np.float32) / 1000.0
    if encoding == "32FC1":
        if quant_a == 0.0:
            raise DecodeError(f"compressedDepth {fmt!r}: 32FC1 payload without quantisation header")
        q = raw.astype(np.float64)
        with np.errstate(divide="ignore"):
            depth = np.where(raw > 0, quant_a / (q - quant_b), 0.0)
        return np.where(np.isfinite(depth) & (depth > 0), depth, 0.0).astype(np.float32)
    raise DecodeError(f"compressedDepth encoding {encoding!r} is not a depth encoding (16UC1 or 32FC1)")


def depth_encoding(msg: object) -> str:
    """The encoding of a depth Image, or the format string of a CompressedImage."""
    return msg.format if hasattr(msg, "format") else msg.encoding


def supported_depth(encoding: str) -> bool:
    """Whether ``decode_depth`` reads this encoding (or compressedDepth format string)."""
    return encoding in DEPTH_ENCODINGS or "compresseddepth" in encoding.lower()


def decode_depth(msg: object) -> np.ndarray:
    """Metres (float32, 0 invalid) from 16UC1/mono16 millimetres, 32FC1 metres (NaN/inf/<=0 invalid) or
    compressedDepth."""
    if hasattr(msg, "format"):
        if "compresseddepth" not in msg.format.lower():
            raise DecodeError(f"depth CompressedImage format {msg.format!r} is not compressedDepth")
        return decode_compressed_depth(msg.data, msg.format)
    if msg.encoding not in DEPTH_ENCODINGS:
        raise DecodeError(f"depth encoding {msg.encoding!r} is not supported (16UC1/mono16 mm or 32FC1 m)")
    img = image_array(msg)
    depth = img.astype(np.float32) / 1000.0 if msg.encoding != "32FC1" else img.astype(np.float32)
    return np.where(np.isfinite(depth) & (depth > 0), depth, 0.0).astype(np.float32)


def camera_model(msg: object) -> CameraModel:
    """Intrinsics from a CameraInfo; an uncalibrated one (K all zero) is an error."""
    K = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise DecodeError(f"CameraInfo of {msg.header.frame_id!r} is uncalibrated (K = {K.ravel().tolist()})")
    return CameraModel(K=K, width=int(msg.width), height=int(msg.height), frame_id=msg.header.frame_id.lstrip("/"))


def quaternion_matrix(x: float, y: float, z: float, w: float) -> np.ndarray:
    n = np.sqrt(x * x + y * y + z * z + w * w)
    x, y, z, w = x / n, y / n, z / n, w / n
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


class TransformTree:
    """The rigid transforms a bag's /tf_static and /tf describe, looked up between any two connected frames.

    The sensor rig is assumed rigid: a static transform wins over a dynamic one, and a dynamic edge keeps its first
    value (an edge that moves, like odom -> base_link, never lies between two sensors of one rig).
    """

    def __init__(self) -> None:
        self.edges: dict[tuple[str, str], np.ndarray] = {}  # (parent, child) -> T_parent_child
        self.static: set[tuple[str, str]] = set()

    def add(self, tf_message: object, static: bool) -> None:
        for t in tf_message.transforms:
            key = (t.header.frame_id.lstrip("/"), t.child_frame_id.lstrip("/"))
            if key in self.static or (not static and key in self.edges):
                continue
            T = np.eye(4)
            r, p = t.transform.rotation, t.transform.translation
            T[:3, :3] = quaternion_matrix(r.x, r.y, r.z, r.w)
            T[:3, 3] = (p.x, p.y, p.z)
            self.edges[key] = T
            if static:
                self.static.add(key)

    def lookup(self, target: str, source: str) -> np.ndarray | None:
        """T_target_source (maps points in ``source`` to ``target``), or None when the frames are not connected."""
        neighbours: dict[str, list[tuple[str, np.ndarray]]] = {}
        for (parent, child), T in self.edges.items():
            neighbours.setdefault(parent, []).append((child, T))
            neighbours.setdefault(child, []).append((parent, np.linalg.inv(T)))
        found = {target: np.eye(4)}
        queue = [target]
        while queue:
            frame = queue.pop(0)
            if frame == source:
                return found[frame]
            for other, T in neighbours.get(frame, []):
                if other not in found:
                    found[other] = found[frame] @ T
                    queue.append(other)
        return found.get(source)
