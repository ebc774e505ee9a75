"""Tiny rosbag2 logs written with rosbags for the bag tests: a color camera and a depth sensor, with knobs for the
encodings, storage, geometry and the faults real logs have (dropped, late and corrupt messages)."""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from depth_node_training.logs import sample_bag
from depth_node_training.logs.registration import scale_intrinsics
from depth_node_training.logs.sample_bag import Messages
from rosbags.typesys import Stores, get_typestore

# Written with an older distro's definitions than the reader's fallback (Kilted): the bag's own definitions must win.
STORE = get_typestore(Stores.ROS2_HUMBLE)
BUILD = Messages(STORE)
COLOR_SIZE, DEPTH_SIZE = (64, 48), (16, 12)
COLOR_K = np.array([[40.0, 0.0, 31.5], [0.0, 40.0, 23.5], [0.0, 0.0, 1.0]])
DEPTH_K = scale_intrinsics(COLOR_K, 0.25, 0.25)  # the same rays on a 4x coarser grid
PERIOD_NS = 33_333_333
START_NS = 1_700_000_000_000_000_000
DATA = Path(os.environ.get("DEPTH_NODE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
REAL_BAG = DATA / "bags" / "redkitchen_tof_x4"


def color_image(k: int) -> np.ndarray:
    """A distinct RGB pattern per frame."""
    u, v = np.meshgrid(np.arange(COLOR_SIZE[0]), np.arange(COLOR_SIZE[1]))
    return np.stack([(u * 4 + k * 10) % 256, (v * 5) % 256, ((u + v) * 3 + k) % 256], -1).astype(np.uint8)


def depth_image(k: int) -> np.ndarray:
    """Metres on the depth grid: a slanted plane, with two invalid pixels."""
    u, v = np.meshgrid(np.arange(DEPTH_SIZE[0]), np.arange(DEPTH_SIZE[1]))
    depth = 1.0 + 0.1 * k + 0.013 * u + 0.021 * v
    depth[2, 3] = depth[7, 11] = 0.0
    return depth


def compressed_depth(depth_m: np.ndarray, encoding: str) -> bytes:
    """compressedDepth payload as image_transport writes it: int32 format, float32 quantA, quantB, then PNG."""
    if encoding == "16UC1":
        header = struct.pack("<iff", 0, 0.0, 0.0)
        raw = np.round(depth_m * 1000).astype(np.uint16)
    else:  # 32FC1: inverse depth quantised with the plugin's defaults (depth_quantization 100, depth_max 10)
        quant_a = 100.0 * 101.0
        quant_b = 1.0 - quant_a / 10.0
        header = struct.pack("<iff", 0, quant_a, quant_b)
        with np.errstate(divide="ignore"):
            raw = np.where((depth_m > 0) & (depth_m < 10.0), quant_a / depth_m + quant_b, 0).astype(np.uint16)
    ok, png = cv2.imencode(".png", raw)
    assert ok
    return header + png.tobytes()


def color_message(kind: str, stamp: int, frame: str, rgb: np.ndarray) -> tuple[str, str, object]:
    """(topic, type, message) of a color frame: 'jpeg', 'png' or a raw Image encoding."""
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if kind in ("jpeg", "png"):
        ok, data = cv2.imencode(f".{'jpg' if kind == 'jpeg' else 'png'}", bgr)
        assert ok
        return "/cam/image_raw/compressed", "sensor_msgs/msg/CompressedImage", BUILD.compressed(
            stamp, frame, f"bgr8; {kind} compressed bgr8", data.tobytes())
    array = {"rgb8": rgb, "bgr8": bgr, "mono8": rgb[..., 0]}[kind]
    return "/cam/image_raw", "sensor_msgs/msg/Image", BUILD.image(stamp, frame, kind, array)


def depth_message(kind: str, stamp: int, frame: str, depth_m: np.ndarray) -> tuple[str, str, object]:
    """(topic, type, message) of a depth frame: '16UC1', 'mono16' (mm), '32FC1', 'cd16' or 'cd32' (compressedDepth),
    or 'mono8' (no depth encoding: what a misconfigured driver publishes)."""
    if kind in ("16UC1", "mono16"):
        return "/depth/image_raw", "sensor_msgs/msg/Image", BUILD.image(
            stamp, frame, kind, np.round(depth_m * 1000).astype(np.uint16))
    if kind == "mono8":
        return "/depth/image_raw", "sensor_msgs/msg/Image", BUILD.image(
            stamp, frame, kind, np.clip(depth_m * 50, 0, 255).astype(np.uint8))
    if kind == "32FC1":
        depth = depth_m.astype(np.float32)
        depth[depth == 0] = np.nan
        return "/depth/image_raw", "sensor_msgs/msg/Image", BUILD.image(stamp, frame, "32FC1", depth)
    encoding = "16UC1" if kind == "cd16" else "32FC1"
    return "/depth/image_raw/compressedDepth", "sensor_msgs/msg/CompressedImage", BUILD.compressed(
        stamp, frame, f"{encoding}; compressedDepth png", compressed_depth(depth_m, encoding))


@dataclass
class Rig:
    """A log of ``frames`` color frames at 30 Hz and depth 4 ms late; the knobs add what real robots do."""

    frames: int = 6
    color: str = "jpeg"
    depth: str = "16UC1"
    color_frame: str = "cam_optical"
    depth_frame: str = "cam_optical"
    T_color_depth: np.ndarray | None = None  # written to /tf_static when the frames differ
    drop_depth: set[int] = field(default_factory=set)
    late_depth: set[int] = field(default_factory=set)  # logged 200 ms after their stamp
    bad_jpeg: set[int] = field(default_factory=set)  # undecodable color payload
    bad_cdr: set[int] = field(default_factory=set)  # color messages truncated mid-serialisation
    no_color_info: set[int] = field(default_factory=set)
    color_info_size: tuple[int, int] = COLOR_SIZE

    def log(self) -> list[tuple[int, str, str, object]]:
        """(log time, topic, type, message or raw CDR bytes), in no particular order."""
        items = []
        if self.depth_frame != self.color_frame:
            T = np.eye(4) if self.T_color_depth is None else self.T_color_depth
            tf = BUILD.tf(START_NS, [("base_link", self.color_frame, np.eye(4)),
                                     ("base_link", self.depth_frame, T)])
            items.append((START_NS, "/tf_static", "tf2_msgs/msg/TFMessage", tf))
        for k in range(self.frames):
            stamp = START_NS + k * PERIOD_NS
            topic, msgtype, msg = color_message(self.color, stamp, self.color_frame, color_image(k))
            if k in self.bad_jpeg:
                msg.data = np.frombuffer(b"\xff\xd8\xff\xe0 not a jpeg at all \xff\xd9", np.uint8)
            if k in self.bad_cdr:
                msg = bytes(STORE.serialize_cdr(msg, msgtype))[:40]
            items.append((stamp + 10_000_000, topic, msgtype, msg))
            if k not in self.no_color_info:
                items.append((stamp + 10_000_000, "/cam/camera_info", "sensor_msgs/msg/CameraInfo",
                              BUILD.camera_info(stamp, self.color_frame, COLOR_K, self.color_info_size)))
            if k not in self.drop_depth:
                depth_stamp = stamp + 4_000_000
                topic, msgtype, msg = depth_message(self.depth, depth_stamp, self.depth_frame, depth_image(k))
                arrive = depth_stamp + (200_000_000 if k in self.late_depth else 5_000_000)
                items += [(arrive, topic, msgtype, msg),
                          (arrive, "/depth/camera_info", "sensor_msgs/msg/CameraInfo",
                           BUILD.camera_info(depth_stamp, self.depth_frame, DEPTH_K, DEPTH_SIZE))]
        return items


def write_bag(path: Path, log: list[tuple[int, str, str, object]], storage: str = "mcap") -> Path:
    """Write a rosbag2 directory; messages may be rosbags objects or raw CDR bytes."""
    return sample_bag.write_bag(path, log, STORE, storage)
