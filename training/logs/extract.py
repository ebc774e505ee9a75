"""Turn robot logs into a training set on disk: ``depth-train extract --bag PATH ... --out DIR``.

Extracted set layout (read back by ``extracted_set.ExtractedSet``)::

    DIR/index.csv        name, stamp_ns, depth_stamp_ns, color, depth_lr, depth_hr, pose   (paths relative to DIR;
                         depth_hr empty without ground truth; pose: 12 numbers, the colour camera's optical frame in
                         the fixed frame at stamp_ns, empty when unknown); one row per extracted pair, appended as
                         written
    DIR/color/NAME.jpg   the bag's original JPEG bytes (NAME.png, lossless RGB, for any other color format)
    DIR/depth_lr/NAME.png  uint16 millimetres, 0 invalid: LR depth registered into the color camera's LR grid
    DIR/depth_hr/NAME.png  uint16 millimetres, 0 invalid: HR ground truth in the color camera, when the bag has it
    DIR/intrinsics.json  color K + size, depth K + size, LR K + size, factor, depth-to-color extrinsic
    DIR/summary.json     options, per-bag and total counts (color frames, depth frames, pairs, skips by reason,
                         frames with a pose and why the others have none)

Poses come from /tf + /tf_static (``poses.py``) in the fixed frame ``--pose-frame`` names, else in the one root of
the tf tree that moves the camera; a bag without one is extracted without poses, said in one line.

NAME is the color frame's position in its topic (``000123``), continued across bags in the order given, so frame
numbers match the recording. Depth beyond 65.535 m cannot be stored in uint16 mm and is written invalid.

Extraction is resumable: files are written before their index row, the row is flushed at once, and a rerun with
the same options skips every row already present, so an interrupted or failing run loses nothing it wrote.
Each bag is read twice: once for header stamps, camera models and transforms (to pair by stamp), once to decode
and write the pairs as their messages stream past, so memory stays bounded by a few frames.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from rosbags.highlevel import AnyReader
from tqdm import tqdm

from ..skipped import Skipped
from .bag_reader import (
    MESSAGE_ERRORS,
    READ_ERRORS,
    TF_MESSAGE,
    BagError,
    CameraModel,
    DecodeError,
    Topics,
    TransformTree,
    camera_model,
    decode_color,
    decode_depth,
    depth_encoding,
    detect_topics,
    open_bag,
    stamp_ns,
    storage_paths,
    supported_depth,
)
from .extracted_set import INDEX_COLUMNS, pose_cell
from .pairing import default_tolerance_ns, nearest_within, pair_nearest
from .poses import TfHistory, camera_poses, edge_path, fixed_frames
from .registration import coincident, lr_grid, register_depth

log = logging.getLogger(__name__)


@dataclass
class Stream:
    """Header stamps (None for a message that could not be deserialised) of one image topic, in bag order."""

    topic: str
    stamps: list[int | None] = field(default_factory=list)

    def valid(self) -> tuple[np.ndarray, np.ndarray]:
        """(positions, stamps) of the readable messages."""
        pos = np.array([i for i, s in enumerate(self.stamps) if s is not None], dtype=np.int64)
        return pos, np.array([self.stamps[i] for i in pos], dtype=np.int64)


@dataclass
class CameraStream:
    """All CameraInfo messages of a stream: a constant model and the stamps it was published at."""

    topic: str
    model: CameraModel | None = None
    stamps: list[int] = field(default_factory=list)


@dataclass
class BagIndex:
    """What the first pass over a bag learns."""

    topics: Topics
    color: Stream
    depth: Stream
    gt: Stream | None
    color_info: CameraStream
    depth_info: CameraStream
    tf: TransformTree
    corrupt: Counter
    depth_encodings: Counter = field(default_factory=Counter)  # what the depth topic holds, for the error message
    read_error: str | None = None
    motion: TfHistory = field(default_factory=TfHistory)  # every sample of /tf, for the camera's poses


@dataclass(frozen=True)
class Geometry:
    """How the depth sensor relates to the color camera and the LR grid depth is registered onto."""

    color: CameraModel
    depth: CameraModel
    T_color_depth: np.ndarray
    factor: float
    K_lr: np.ndarray
    lr_size: tuple[int, int]

    @property
    def passthrough(self) -> bool:
        return coincident(self.depth.K, (self.depth.width, self.depth.height), self.T_color_depth, self.K_lr,
                          self.lr_size)


def _add_camera_info(stream: CameraStream, msg: object, bag: Path) -> None:
    model = camera_model(msg)
    if stream.model is None:
        stream.model = model
    elif (model.width, model.height) != (stream.model.width, stream.model.height) or not np.allclose(
            model.K, stream.model.K, rtol=1e-9, atol=1e-9):
        raise BagError(f"{bag}: {stream.topic}: intrinsics change during the bag ({stream.model.K.ravel().tolist()} "
                       f"-> {model.K.ravel().tolist()}); extract the parts separately")
    stream.stamps.append(stamp_ns(msg))


def index_bag(reader: AnyReader, bag: Path, topics: Topics, progress: bool = True) -> BagIndex:
    """First pass: header stamps of the image topics, camera models, transforms; corrupt messages counted."""
    index = BagIndex(topics=topics, color=Stream(topics.color), depth=Stream(topics.depth),
                     gt=Stream(topics.gt) if topics.gt else None, color_info=CameraStream(topics.color_info),
                     depth_info=CameraStream(topics.depth_info), tf=TransformTree(), corrupt=Counter())
    streams = {s.topic: s for s in (index.color, index.depth, index.gt) if s is not None}
    infos = {index.color_info.topic: index.color_info, index.depth_info.topic: index.depth_info}
    tf_topics = {name for name, info in reader.topics.items() if info.msgtype == TF_MESSAGE}
    connections = [c for c in reader.connections if c.topic in streams.keys() | infos.keys() | tf_topics]
    total = sum(c.msgcount for c in connections)
    messages = reader.messages(connections=connections)
    try:
        for connection, _, raw in tqdm(messages, total=total, desc=f"index {bag.name}", disable=not progress):
            try:
                msg = reader.deserialize(raw, connection.msgtype)
                stamp = stamp_ns(msg) if connection.topic not in tf_topics else None
            except MESSAGE_ERRORS:
                index.corrupt[connection.topic] += 1
                msg = stamp = None
            if msg is not None and connection.topic == topics.depth:
                index.depth_encodings[depth_encoding(msg)] += 1
            if connection.topic in streams:
                streams[connection.topic].stamps.append(stamp)
            elif msg is None:
                continue
            elif connection.topic in infos:
                try:
                    _add_camera_info(infos[connection.topic], msg, bag)
                except DecodeError as err:
                    raise BagError(f"{bag}: {connection.topic}: {err}") from err
            else:
                static = connection.topic.endswith("tf_static")
                index.tf.add(msg, static=static)
                if not static:
                    index.motion.add(msg)
    except READ_ERRORS as err:  # a bag truncated or corrupt past its index: keep what was read
        index.read_error = f"{type(err).__name__}: {err}"
        log.warning("%s: reading stopped early (%s); using the messages before it", bag, index.read_error)
    for topic, count in index.corrupt.items():
        log.warning("%s: %s: %d corrupt message(s) skipped", bag, topic, count)
    for stream in (index.color_info, index.depth_info):
        if stream.model is None:
            raise BagError(f"{bag}: {stream.topic}: no readable CameraInfo message")
    return index


def bag_geometry(index: BagIndex, bag: Path) -> Geometry:
    """Intrinsics, extrinsic and LR grid of one bag."""
    color, depth = index.color_info.model, index.depth_info.model
    if color.frame_id == depth.frame_id:
        T = np.eye(4)
    else:
        T = index.tf.lookup(color.frame_id, depth.frame_id)
        if T is None:
            raise BagError(f"{bag}: no transform between {depth.frame_id!r} ({index.topics.depth}) and "
                           f"{color.frame_id!r} ({index.topics.color}) in /tf_static or /tf; record the sensors' "
                           f"static transforms")
    factor, K_lr, lr_size = lr_grid(color.K, (color.width, color.height), depth.K)
    return Geometry(color=color, depth=depth, T_color_depth=T, factor=factor, K_lr=K_lr, lr_size=lr_size)


@dataclass
class Poses:
    """The colour camera's pose at its messages of one bag, by position in the colour topic."""

    frame: str | None  # the fixed frame; None when the bag gives no poses (``note`` says why)
    camera: str
    found: dict[int, np.ndarray] = field(default_factory=dict)
    missing: dict[int, str] = field(default_factory=dict)  # why a colour message has no pose
    note: str = ""


def bag_poses(index: BagIndex, camera: str, bag: Path, pose_frame: str | None) -> Poses:
    """Poses in ``pose_frame``, else in the one fixed frame the camera moves in; none (with a note) without one."""
    if pose_frame is None:
        candidates = fixed_frames(index.tf, camera)
        if len(candidates) != 1:
            why = (f"{camera} moves in several fixed frames ({', '.join(candidates)}); choose one with --pose-frame"
                   if candidates else f"no /tf transform moves {camera} in a fixed frame")
            return Poses(None, camera, note=f"no poses: {bag}: {why}; training uses LR depth only")
        pose_frame = candidates[0]
    elif edge_path(index.tf.edges, pose_frame, camera) is None:
        frames = sorted({f for edge in index.tf.edges for f in edge})
        raise BagError(f"{bag}: --pose-frame {pose_frame}: not connected to {camera} by /tf or /tf_static (frames: "
                       f"{', '.join(frames) or 'none'})")
    positions, stamps = index.color.valid()
    poses, why = camera_poses(index.tf, index.motion, pose_frame, camera, stamps)
    return Poses(pose_frame, camera, found={int(p): T for p, T in zip(positions, poses) if T is not None},
                 missing={int(p): w for p, w in zip(positions, why) if w})


def pose_summary(poses: Poses, rows: list[dict[str, str]], offset: int, bag: Path) -> dict:
    """How many of a bag's frames in the set have a pose, and why the others have none (warned once per reason)."""
    if poses.frame is None:
        return {"frame": None, "camera": poses.camera, "frames": 0, "without": {}, "note": poses.note}
    without = Skipped()
    for row in rows:
        if not row.get("pose"):
            without.add(poses.missing.get(int(row["name"]) - offset, "no pose"), row["name"])
    for line in without.lines():
        log.warning("%s: %s", bag, line.replace("skipped", "kept without pose", 1))
    return {"frame": poses.frame, "camera": poses.camera, "frames": len(rows) - without.total(),
            "without": without.as_dict(), "note": ""}


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _png(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image)
    assert ok
    return buf.tobytes()


def metres_to_mm(depth: np.ndarray) -> np.ndarray:
    """uint16 millimetres, 0 for invalid or beyond what uint16 holds."""
    mm = np.round(np.nan_to_num(depth, nan=0.0, posinf=0.0) * 1000.0)
    return np.where((mm > 0) & (mm <= 65535), mm, 0).astype(np.uint16)


def read_index(out_dir: Path) -> list[dict[str, str]]:
    """Rows of DIR/index.csv; a last row cut short by an interruption is dropped from the file."""
    path = out_dir / "index.csv"
    if not path.exists():
        return []
    text = path.read_text()
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
        path.write_text(text)
    return list(csv.DictReader(text.splitlines()))


class SetWriter:
    """Appends frames to an extracted set, one flushed index row per frame."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        for sub in ("color", "depth_lr", "depth_hr"):
            (out_dir / sub).mkdir(parents=True, exist_ok=True)
        self.done = {row["name"]: row for row in read_index(out_dir)}
        # Without rows (new, or only a header, perhaps an older one): start the file with today's columns.
        self.file = open(out_dir / "index.csv", "a" if self.done else "w", newline="")  # noqa: SIM115 - see close()
        self.csv = csv.DictWriter(self.file, fieldnames=INDEX_COLUMNS)
        if not self.done:
            self.csv.writeheader()

    def write(self, name: str, stamp: int, depth_stamp: int, color: bytes, color_ext: str, depth_lr: np.ndarray,
              depth_hr: np.ndarray | None, pose: np.ndarray | None = None) -> None:
        row = {"name": name, "stamp_ns": stamp, "depth_stamp_ns": depth_stamp, "color": f"color/{name}{color_ext}",
               "depth_lr": f"depth_lr/{name}.png", "depth_hr": f"depth_hr/{name}.png" if depth_hr is not None else "",
               "pose": pose_cell(pose)}
        _write_atomic(self.out_dir / row["color"], color)
        _write_atomic(self.out_dir / row["depth_lr"], _png(metres_to_mm(depth_lr)))
        if depth_hr is not None:
            _write_atomic(self.out_dir / row["depth_hr"], _png(metres_to_mm(depth_hr)))
        self.csv.writerow(row)
        self.file.flush()
        self.done[name] = row

    def close(self) -> None:
        self.file.close()


def _color_bytes(msg: object, rgb: np.ndarray) -> tuple[bytes, str]:
    """The original JPEG when the bag holds one (no re-encoding loss), else a lossless PNG."""
    if hasattr(msg, "format") and bytes(msg.data[:2]) == b"\xff\xd8":
        return bytes(msg.data), ".jpg"
    return _png(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)), ".png"


def _check_size(image: np.ndarray, model: CameraModel, bag: Path, topic: str, info_topic: str) -> None:
    if image.shape[:2] != (model.height, model.width):
        raise BagError(f"{bag}: {topic}: images are {image.shape[1]}x{image.shape[0]} but {info_topic} says "
                       f"{model.width}x{model.height}")


@dataclass
class Plan:
    """Which messages of the second pass make which frames."""

    jobs: dict[int, tuple[int, int | None]]  # color position -> (depth position, gt position)
    names: dict[int, str]
    skipped: Skipped
    tolerance_ns: int
    pairs_done: int
    poses: dict[int, np.ndarray] = field(default_factory=dict)  # color position -> camera pose, where known


def plan_bag(index: BagIndex, offset: int, done: dict, tolerance_ns: int | None) -> Plan:
    """Pair by stamp, require CameraInfo for both streams, and leave out frames extracted before."""
    color_pos, color_stamps = index.color.valid()
    depth_pos, depth_stamps = index.depth.valid()
    skipped = Skipped()
    for position in sorted(set(range(len(index.color.stamps))) - set(color_pos.tolist())):
        skipped.add("color decode error", f"{offset + position:06d}: corrupt message")
    if tolerance_ns is None:
        tolerance_ns = default_tolerance_ns(color_stamps)
    pairing = pair_nearest(color_stamps, depth_stamps, tolerance_ns)
    for reason, count in pairing.skipped.items():
        skipped.add(reason, count=count)
    color_info = nearest_within(np.sort(index.color_info.stamps), color_stamps, tolerance_ns)
    depth_info = nearest_within(np.sort(index.depth_info.stamps), depth_stamps, tolerance_ns)
    gt_hit = np.full(len(color_stamps), -1)
    if index.gt is not None:
        gt_pos, gt_stamps = index.gt.valid()
        order = np.argsort(gt_stamps, kind="stable")
        hit = nearest_within(gt_stamps[order], color_stamps, tolerance_ns)
        gt_hit[hit >= 0] = gt_pos[order][hit[hit >= 0]]
    jobs, names, pairs_done = {}, {}, 0
    for c, d in pairing.pairs:
        name = f"{offset + int(color_pos[c]):06d}"
        if color_info[c] < 0:
            skipped.add("no color camera_info", name)
        elif depth_info[d] < 0:
            skipped.add("no depth camera_info", name)
        else:
            if name in done:
                pairs_done += 1
            else:
                jobs[int(color_pos[c])] = (int(depth_pos[d]), int(gt_hit[c]) if gt_hit[c] >= 0 else None)
                names[int(color_pos[c])] = name
    return Plan(jobs=jobs, names=names, skipped=skipped, tolerance_ns=int(tolerance_ns), pairs_done=pairs_done)


def extract_bag(reader: AnyReader, bag: Path, index: BagIndex, geometry: Geometry, plan: Plan, writer: SetWriter,
                progress: bool = True) -> tuple[int, int, Skipped]:
    """Second pass: decode, register and write each planned pair as soon as its messages have streamed past.

    Returns (frames written, frames with ground truth, skips by reason).
    """
    topics = index.topics
    wanted = {topics.color: set(plan.jobs), topics.depth: {d for d, _ in plan.jobs.values()},
              topics.gt: {g for _, g in plan.jobs.values() if g is not None}}
    waiting: dict[tuple[str, int], list[int]] = {}
    for c, (d, g) in plan.jobs.items():
        waiting.setdefault((topics.color, c), []).append(c)
        waiting.setdefault((topics.depth, d), []).append(c)
        if g is not None:
            waiting.setdefault((topics.gt, g), []).append(c)
    users = Counter(key for key, cs in waiting.items() for _ in cs)
    pending: dict[tuple[str, int], tuple[str, bytes]] = {}
    position = Counter()
    written, with_gt, skipped, no_gt = 0, 0, Skipped(), Skipped()
    connections = [c for c in reader.connections if c.topic in {topics.color, topics.depth, topics.gt}]
    total = sum(c.msgcount for c in connections)
    bar = tqdm(total=total, desc=f"extract {bag.name}", disable=not progress)

    def release(key: tuple[str, int]) -> None:
        users[key] -= 1
        if users[key] <= 0:
            pending.pop(key, None)

    def decode(key: tuple[str, int]) -> object:
        msgtype, raw = pending[key]
        return reader.deserialize(raw, msgtype)

    def make(c: int) -> None:
        nonlocal written, with_gt
        d, g = plan.jobs[c]
        stage = "color"
        try:
            color_msg = decode((topics.color, c))
            rgb = decode_color(color_msg)
            _check_size(rgb, geometry.color, bag, topics.color, topics.color_info)
            stage = "depth"
            depth_msg = decode((topics.depth, d))
            depth = decode_depth(depth_msg)
            _check_size(depth, geometry.depth, bag, topics.depth, topics.depth_info)
        except MESSAGE_ERRORS as err:
            skipped.add(f"{stage} decode error", f"{plan.names[c]}: {err}")
            return
        depth_hr = None
        if g is not None:
            try:
                depth_hr = decode_depth(decode((topics.gt, g)))
                _check_size(depth_hr, geometry.color, bag, topics.gt, topics.color_info)
            except MESSAGE_ERRORS as err:
                no_gt.add("ground truth decode error", f"{plan.names[c]}: {err}")
                depth_hr = None
        registered = register_depth(depth, geometry.depth.K, geometry.T_color_depth, geometry.K_lr, geometry.lr_size)
        data, ext = _color_bytes(color_msg, rgb)
        writer.write(plan.names[c], stamp_ns(color_msg), stamp_ns(depth_msg), data, ext, registered, depth_hr,
                     plan.poses.get(c))
        written += 1
        with_gt += depth_hr is not None

    read_error = ""
    try:
        for connection, _, raw in reader.messages(connections=connections):
            bar.update()
            key = (connection.topic, position[connection.topic])
            position[connection.topic] += 1
            if key[1] not in wanted.get(connection.topic, ()):
                continue
            pending[key] = (connection.msgtype, raw)
            for c in waiting.get(key, []):
                d, g = plan.jobs[c]
                needed = [(topics.color, c), (topics.depth, d)] + ([(topics.gt, g)] if g is not None else [])
                if all(k in pending for k in needed):
                    make(c)
                    for k in needed:
                        release(k)
    except READ_ERRORS as err:
        read_error = f"{type(err).__name__}: {err}"
        log.warning("%s: reading stopped early (%s); frames written so far are kept", bag, read_error)
    finally:
        bar.close()
    missing = len(plan.jobs) - written - skipped.total()
    if missing > 0:
        skipped.add("bag read error", read_error, missing)
    for line in no_gt.lines():
        log.warning("%s: %s", bag, line.replace("skipped", "kept without ground truth", 1))
    return written, with_gt, skipped


def _check_depth_encodings(index: BagIndex, bag: Path) -> None:
    """Stop before writing anything when the depth topic holds no encoding extraction can read; say so once for
    mono16, which is read as millimetres (as the drivers that publish it mean)."""
    seen = index.depth_encodings
    if seen and not any(supported_depth(e) for e in seen):
        listing = ", ".join(f"{e!r} x{n}" for e, n in seen.most_common())
        raise BagError(f"{bag}: {index.topics.depth}: no supported depth encoding (saw {listing}; supported: 16UC1, "
                       f"mono16, 32FC1, compressedDepth png)")
    if "mono16" in seen:
        log.warning("%s: %s: mono16 depth read as millimetres", bag, index.topics.depth)


def _camera_json(model: CameraModel, topic: str) -> dict:
    return {"topic": topic, "frame_id": model.frame_id, "width": model.width, "height": model.height,
            "K": model.K.tolist()}


def _write_intrinsics(out_dir: Path, geometry: Geometry, topics: Topics, bag: Path) -> None:
    """intrinsics.json, written by the first bag; later bags must share the color camera and LR grid."""
    w, h = geometry.lr_size
    info = {"color": _camera_json(geometry.color, topics.color), "depth": _camera_json(geometry.depth, topics.depth),
            "lr": {"width": w, "height": h, "K": geometry.K_lr.tolist()}, "factor": geometry.factor,
            "T_color_depth": geometry.T_color_depth.tolist(),
            "registration": "pass-through" if geometry.passthrough else "footprint splatting"}
    path = out_dir / "intrinsics.json"
    if path.exists():
        old = json.loads(path.read_text())
        same = (old["color"]["width"], old["color"]["height"], old["lr"]["width"], old["lr"]["height"]) == (
            geometry.color.width, geometry.color.height, w, h) and np.allclose(old["color"]["K"], geometry.color.K)
        if not same:
            raise BagError(f"{bag}: its color camera or LR grid differs from the one already in {out_dir}; "
                           f"extract it to another directory")
        return
    _write_atomic(path, json.dumps(info, indent=2).encode())


def extract(
    bags: list[str | Path],
    out_dir: str | Path,
    *,
    color_topic: str | None = None,
    depth_topic: str | None = None,
    color_info_topic: str | None = None,
    depth_info_topic: str | None = None,
    gt_topic: str | None = None,
    tolerance: float | None = None,
    pose_frame: str | None = None,
    progress: bool = True,
) -> dict:
    """Extract paired, registered frames from one or several bags into ``out_dir``; returns the summary.

    ``tolerance`` is in seconds (default: half the color frame period of each bag). ``pose_frame`` is the fixed
    frame of the camera poses (default: detected per bag). Rerunning with the same options resumes; other options on
    an existing directory are an error.
    """
    out_dir = Path(out_dir)
    if not bags:
        raise BagError("no bag given")
    options = {"bags": [str(Path(b).resolve()) for b in bags], "color_topic": color_topic, "depth_topic": depth_topic,
               "color_info_topic": color_info_topic, "depth_info_topic": depth_info_topic, "gt_topic": gt_topic,
               "tolerance": tolerance, "pose_frame": pose_frame}
    summary_path = out_dir / "summary.json"
    if summary_path.exists():
        old = json.loads(summary_path.read_text()).get("options")
        if old != options and read_index(out_dir):  # a run that wrote nothing may be retried with other options
            raise BagError(f"{out_dir} holds an extraction made with other options ({old}); use another --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = {"complete": False, "options": options, "bags": []}
    _write_atomic(summary_path, json.dumps(summary, indent=2).encode())

    writer = SetWriter(out_dir)
    offset = 0
    every_skip = Skipped()  # with example frames and causes, for the error when nothing is extracted
    try:
        for bag in map(Path, bags):
            with open_bag(bag) as reader:
                topics = detect_topics(reader, bag, color_topic, depth_topic, color_info_topic, depth_info_topic,
                                       gt_topic)
                index = index_bag(reader, bag, topics, progress)
                _check_depth_encodings(index, bag)
                geometry = bag_geometry(index, bag)
                _write_intrinsics(out_dir, geometry, topics, bag)
                tol = None if tolerance is None else round(tolerance * 1e9)
                plan = plan_bag(index, offset, writer.done, tol)
                poses = bag_poses(index, geometry.color.frame_id, bag, pose_frame)
                if poses.note:
                    log.warning("%s", poses.note)
                plan.poses = poses.found
                written, with_gt, skipped = extract_bag(reader, bag, index, geometry, plan, writer, progress)
                messages_read, damage = reader.message_count, reader.damage
            skipped.update(plan.skipped)
            rows = [row for name, row in writer.done.items() if offset <= int(name) < offset + len(index.color.stamps)]
            every_skip.update(skipped)
            skipped.warn(log, str(bag))
            summary["bags"].append({
                "path": str(bag), "topics": vars(topics), "color_frames": len(index.color.stamps),
                "depth_frames": len(index.depth.stamps), "pairs": plan.pairs_done + written,
                "ground_truth_frames": with_gt, "skipped": skipped.as_dict(),
                "corrupt_messages": dict(index.corrupt), "tolerance_ns": plan.tolerance_ns,
                "registration": "pass-through" if geometry.passthrough else "footprint splatting",
                "factor": geometry.factor, "read_error": index.read_error,
                "depth_encodings": dict(index.depth_encodings), "messages_read": messages_read,
                "truncated": [str(d) for d in damage] or None, "poses": pose_summary(poses, rows, offset, bag)})
            offset += len(index.color.stamps)
    finally:
        writer.close()

    totals: Counter = Counter()
    for entry in summary["bags"]:
        totals.update(entry["skipped"])
    summary.update({
        "complete": True,
        "truncated": any(b["truncated"] for b in summary["bags"]),
        "color_frames": sum(b["color_frames"] for b in summary["bags"]),
        "depth_frames": sum(b["depth_frames"] for b in summary["bags"]),
        "pairs": sum(b["pairs"] for b in summary["bags"]),
        "skipped": dict(sorted(totals.items())),
        "frames_in_set": len(writer.done),
    })
    _write_atomic(summary_path, json.dumps(summary, indent=2).encode())
    if not writer.done:
        why = "; ".join(every_skip.lines()) or "no color frame had a pair"
        raise BagError(f"no pair extracted from {', '.join(map(str, bags))} ({why}; {summary_path} has the details)")
    return summary


def bag_identity(bag: str | Path) -> list[tuple[str, int, int]]:
    """(path, size, mtime) of every file of a bag: a re-recorded or edited bag gets a new cache entry."""
    files = []
    for path in storage_paths(bag):
        files += sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in files]


def extract_cached(bags: list[str], cache_root: Path, **options: object) -> Path:
    """The extracted set of ``bags`` under ``cache_root``, extracting (or finishing an interrupted run) if needed."""
    keyed = {name: value for name, value in options.items() if name != "progress"}
    key = json.dumps({"bags": [bag_identity(b) for b in bags], "options": keyed, "columns": INDEX_COLUMNS},
                     sort_keys=True, default=str)  # a set cached before a column existed is extracted again
    out_dir = Path(cache_root) / f"{Path(bags[0]).name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
    summary = out_dir / "summary.json"
    if not (summary.exists() and json.loads(summary.read_text()).get("complete")):
        extract(bags, out_dir, **options)
    return out_dir


def format_summary(summary: dict) -> str:
    """A few human lines for the terminal."""
    skipped = ", ".join(f"{n} {reason}" for reason, n in summary["skipped"].items()) or "none"
    lines = [(f"color frames {summary['color_frames']}, depth frames {summary['depth_frames']}, "
              f"pairs {summary['pairs']}, skipped: {skipped}")]
    for bag in summary["bags"]:
        lines.append(f"  {bag['path']}: {bag['topics']['color']} + {bag['topics']['depth']} -> {bag['pairs']} pairs "
                     f"({bag['registration']}, factor {bag['factor']:g}, tolerance {bag['tolerance_ns'] / 1e6:g} ms)")
        if bag["truncated"]:
            lines.append(f"    log truncated: {bag['messages_read']} complete messages recovered; "
                         f"{'; '.join(bag['truncated'])}")
        poses = bag["poses"]
        if poses["frame"]:
            without = ", ".join(f"{n} {reason}" for reason, n in poses["without"].items())
            lines.append(f"    poses of {poses['camera']} in {poses['frame']}: {poses['frames']} frames"
                         + (f" (without: {without})" if without else ""))
        if bag["corrupt_messages"] or bag["read_error"]:
            lines.append(f"    corrupt messages {bag['corrupt_messages']}, read error {bag['read_error']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> None:
    """``depth-train extract``."""
    try:
        summary = extract(args.bag, args.out, color_topic=args.color_topic, depth_topic=args.depth_topic,
                          color_info_topic=args.color_info_topic, depth_info_topic=args.depth_info_topic,
                          gt_topic=args.gt_topic, tolerance=args.tolerance, pose_frame=args.pose_frame)
    except BagError as err:
        print(f"depth-train extract: error: {err}", file=sys.stderr)
        raise SystemExit(2) from err
    print(format_summary(summary))
    print(f"wrote {summary['frames_in_set']} frames to {args.out} (summary.json has the details)")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``extract`` subcommand."""
    p = subparsers.add_parser("extract", help="extract paired, registered frames from rosbag2 logs",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--bag", nargs="+", action="extend", required=True, metavar="PATH",
                   help="bag directory, .mcap or .db3 file (repeatable; several bags go into one set)")
    p.add_argument("--out", required=True, type=Path, help="output directory (rerun to resume)")
    p.add_argument("--color-topic", help="color Image or CompressedImage topic (default: detected)")
    p.add_argument("--depth-topic", help="depth Image (16UC1/32FC1) or compressedDepth topic (default: detected)")
    p.add_argument("--color-info-topic", help="color CameraInfo (default: beside the color topic)")
    p.add_argument("--depth-info-topic", help="depth CameraInfo (default: beside the depth topic)")
    p.add_argument("--gt-topic", help="HR ground-truth depth in the color camera (default: detected if present)")
    p.add_argument("--tolerance", type=float, metavar="SECONDS",
                   help="max color-depth stamp difference (default: half the color frame period)")
    p.add_argument("--pose-frame", metavar="NAME",
                   help="fixed frame of the camera poses, e.g. odom (default: the one tf root the camera moves in; "
                        "none: no poses, training uses LR depth only)")
    p.set_defaults(func=run)
