"""A built-in synthetic robot log: ``depth-train sample-bag --out DIR`` (a few MB, seconds to write).

A robot drives an arc through a textured box room (walls, a table, a cabinet, a crate, a pillar, two balls; analytic
ray casting in numpy, so every depth is exact). It logs what a typical robot logs:

* ``/camera/color/image_raw/compressed``: 320x240 JPEG color, 10 Hz, ``camera_color_optical_frame``;
* ``/tof/depth/image_raw``: 96x72 16UC1 millimetres from a separate time-of-flight sensor 3.5 cm to the right of the
  color camera and turned by about 2 degrees, with a wider field of view (fx 65 vs the color camera's 260 / 4), depth
  noise (0.4 % of range), missing pixels (2 % at random, beyond 6 m, and no return from the dark ball), dropped
  frames, a stamp offset of +5 ms with 1 ms jitter, and two messages logged late;
* ``/camera/color/camera_info``, ``/tof/depth/camera_info``, ``/tf_static`` (base_link -> both optical frames) and
  ``/tf`` (odom -> base_link);
* ``/camera/depth_gt/image_raw/compressedDepth``: HR ground-truth depth rendered in the color camera
  (16UC1 millimetres, compressedDepth PNG), for evaluation only.
"""

from __future__ import annotations

import argparse
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

COLOR_SIZE = (320, 240)
COLOR_K = np.array([[260.0, 0.0, 159.5], [0.0, 260.0, 119.5], [0.0, 0.0, 1.0]])
DEPTH_SIZE = (96, 72)
DEPTH_K = np.array([[65.0, 0.0, 47.5], [0.0, 65.0, 35.5], [0.0, 0.0, 1.0]])
FPS = 10.0
START_NS = 1_700_000_000_000_000_000
COLOR_TOPIC = "/camera/color/image_raw/compressed"
DEPTH_TOPIC = "/tof/depth/image_raw"
GT_TOPIC = "/camera/depth_gt/image_raw/compressedDepth"
COLOR_FRAME, DEPTH_FRAME = "camera_color_optical_frame", "tof_optical_frame"
MAX_RANGE = 6.0
NO_RETURN_SURFACE = "dark ball"

# Room x in [-3, 3], y in [-2.5, 2.5], z in [0, 2.6] (odom frame, z up); boxes as (min corner, max corner).
ROOM = (np.array([-3.0, -2.5, 0.0], np.float32), np.array([3.0, 2.5, 2.6], np.float32))
BOXES = {
    "table": (np.array([0.8, -2.2, 0.0], np.float32), np.array([1.8, -1.2, 0.75], np.float32)),
    "cabinet": (np.array([-2.9, -1.0, 0.0], np.float32), np.array([-2.3, 1.0, 1.8], np.float32)),
    "crate": (np.array([1.5, 1.0, 0.0], np.float32), np.array([2.1, 1.6, 0.5], np.float32)),
    "pillar": (np.array([-0.8, 1.6, 0.0], np.float32), np.array([-0.5, 1.9, 2.6], np.float32)),
}
SPHERES = {
    "ball": (np.array([1.2, -1.7, 1.0], np.float32), 0.25),
    NO_RETURN_SURFACE: (np.array([-1.5, -1.8, 0.4], np.float32), 0.4),
}
SURFACES = ["wall -x", "wall +x", "wall -y", "wall +y", "floor", "ceiling", *BOXES, *SPHERES]
PALETTE = np.array([[200, 170, 140], [150, 180, 200], [190, 200, 150], [210, 160, 170], [140, 110, 80],
                    [230, 230, 225], [120, 70, 40], [90, 120, 160], [170, 140, 60], [200, 200, 200],
                    [220, 60, 50], [30, 30, 35]], dtype=np.float64) / 255.0
LIGHT = (np.array([0.3, 0.5, 0.81]) / np.linalg.norm([0.3, 0.5, 0.81])).astype(np.float32)


def _rotation(axis: str, degrees: float) -> np.ndarray:
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    i, j = {"x": (1, 2), "y": (2, 0), "z": (0, 1)}[axis]
    R = np.eye(3)
    R[i, i], R[i, j], R[j, i], R[j, j] = c, -s, s, c
    return R


def _transform(R: np.ndarray, t: np.ndarray | tuple) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, t
    return T


# Optical frames (x right, y down, z forward) on base_link (x forward, z up), the color camera tilted 12 deg down.
OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
T_BASE_COLOR = _transform(OPTICAL @ _rotation("x", -12.0), (0.10, 0.0, 1.0))
T_BASE_DEPTH = _transform(T_BASE_COLOR[:3, :3] @ _rotation("y", 2.0) @ _rotation("x", 1.0) @ _rotation("z", 0.5),
                          (0.10, -0.035, 1.0))


def base_pose(time_s: float) -> np.ndarray:
    """T_odom_base: an arc around the room centre, looking outwards and sweeping across the walls and objects."""
    phi = 0.3 + 0.45 * time_s
    yaw = phi + 0.5 + 0.25 * np.sin(0.8 * time_s)
    return _transform(_rotation("z", np.degrees(yaw)), (0.8 * np.cos(phi), 0.8 * np.sin(phi), 0.0))


@lru_cache(maxsize=4)
def _rays(K: tuple[float, ...], size: tuple[int, int]) -> np.ndarray:
    """(3, N) camera-frame rays through the pixel centres, scaled to z = 1 so the ray parameter is optical depth."""
    u, v = np.meshgrid(np.arange(size[0], dtype=np.float64), np.arange(size[1], dtype=np.float64))
    return np.linalg.inv(np.reshape(K, (3, 3))) @ np.stack([u.ravel(), v.ravel(), np.ones(u.size)])


def cast(origin: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest hit of each ray of (3, N) directions ``d``: (ray parameter, surface index into SURFACES, normal).

    Arrays are (3, N) so that reductions over the three axes run element-wise, which is fast.
    """
    o, n = origin[:, None], np.arange(d.shape[1])
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / d
        exits = np.where(d > 0, (ROOM[1][:, None] - o) * inv, np.where(d < 0, (ROOM[0][:, None] - o) * inv, np.inf))
        axis = np.argmin(exits, 0)
        t = exits[axis, n]
        surface = 2 * axis + (d[axis, n] > 0)
        normal = np.zeros_like(d)
        normal[axis, n] = -np.sign(d[axis, n])
        for k, (lo, hi) in enumerate(BOXES.values()):
            t1, t2 = (lo[:, None] - o) * inv, (hi[:, None] - o) * inv
            near, far = np.minimum(t1, t2), np.maximum(t1, t2)
            box_axis = np.argmax(near, 0)
            t_near = near[box_axis, n]
            hit = (t_near <= far.min(0)) & (t_near > 1e-6) & (t_near < t)
            t[hit], surface[hit] = t_near[hit], 6 + k
            normal[:, hit] = 0.0
            normal[box_axis[hit], n[hit]] = -np.sign(d[box_axis[hit], n[hit]])
        for k, (centre, radius) in enumerate(SPHERES.values()):
            oc = origin - centre
            a, b, c = np.einsum("ij,ij->j", d, d), oc @ d, oc @ oc - radius**2
            t_hit = (-b - np.sqrt(b * b - a * c)) / a
            hit = np.isfinite(t_hit) & (t_hit > 1e-6) & (t_hit < t)
            t[hit], surface[hit] = t_hit[hit], 6 + len(BOXES) + k
            normal[:, hit] = (o + t_hit[hit] * d[:, hit] - centre[:, None]) / radius
    return t, surface, normal


def _texture(points: np.ndarray, surface: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """Procedural albedo x Lambert shading, (N, 3) RGB in [0, 1]: checkers and ripples fixed to each surface."""
    axis = np.argmax(np.abs(normal), 0)
    a = np.where(axis == 0, points[1], points[0])
    b = np.where(axis == 2, points[1], points[2])
    checker = (np.floor(a / 0.4) + np.floor(b / 0.4)) % 2
    ripple = np.sin(2 * np.pi * a / 0.23 + 3 * surface) * np.sin(2 * np.pi * b / 0.31)
    fine = np.sin(2 * np.pi * (a + 0.7 * b) / 0.07)
    pattern = 0.6 + 0.2 * checker + 0.12 * ripple + 0.06 * fine
    shade = 0.55 + 0.45 * np.clip(LIGHT @ normal, 0.0, 1.0)
    return PALETTE[surface] * (pattern * shade)[:, None]


def render(T_odom_camera: np.ndarray, K: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray,
                                                                                        np.ndarray]:
    """(z-depth metres HxW, RGB uint8 HxWx3, surface index HxW) seen by a camera at T_odom_camera."""
    origin = T_odom_camera[:3, 3].astype(np.float32)  # float32 halves the time; 0.1 um error at 3 m
    dirs = (T_odom_camera[:3, :3] @ _rays(tuple(np.ravel(K)), tuple(size))).astype(np.float32)
    t, surface, normal = cast(origin, dirs)
    rgb = _texture(origin[:, None] + t * dirs, surface, normal)
    shape = (size[1], size[0])
    return (t.reshape(shape), np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8).reshape(*shape, 3),
            surface.reshape(shape))


def sensor_depth(T_odom_depth: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """What the time-of-flight sensor reports, in metres (0 = no return)."""
    depth, _, surface = render(T_odom_depth, DEPTH_K, DEPTH_SIZE)
    depth = depth * (1.0 + 0.004 * rng.standard_normal(depth.shape))
    lost = (rng.random(depth.shape) < 0.02) | (depth > MAX_RANGE)
    lost |= surface == SURFACES.index(NO_RETURN_SURFACE)
    return np.where(lost, 0.0, depth)


def quaternion(R: np.ndarray) -> tuple[float, float, float, float]:
    """(x, y, z, w) of a rotation matrix, dividing by its largest component for accuracy."""
    m = R
    i = int(np.argmax([np.trace(m), m[0, 0], m[1, 1], m[2, 2]]))
    if i == 0:
        w = np.sqrt(1.0 + np.trace(m)) / 2
        x, y, z = (m[2, 1] - m[1, 2]) / (4 * w), (m[0, 2] - m[2, 0]) / (4 * w), (m[1, 0] - m[0, 1]) / (4 * w)
    elif i == 1:
        x = np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2]) / 2
        w, y, z = (m[2, 1] - m[1, 2]) / (4 * x), (m[0, 1] + m[1, 0]) / (4 * x), (m[0, 2] + m[2, 0]) / (4 * x)
    elif i == 2:
        y = np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2]) / 2
        w, x, z = (m[0, 2] - m[2, 0]) / (4 * y), (m[0, 1] + m[1, 0]) / (4 * y), (m[1, 2] + m[2, 1]) / (4 * y)
    else:
        z = np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1]) / 2
        w, x, y = (m[1, 0] - m[0, 1]) / (4 * z), (m[0, 2] + m[2, 0]) / (4 * z), (m[1, 2] + m[2, 1]) / (4 * z)
    return float(x), float(y), float(z), float(w)


def encode_compressed_depth_mm(depth_m: np.ndarray) -> bytes:
    """compressedDepth payload for 16UC1: the 12-byte config header, then a 16-bit PNG of millimetres."""
    mm = np.where((depth_m > 0) & (depth_m < 65.535), np.round(depth_m * 1000.0), 0).astype(np.uint16)
    ok, png = cv2.imencode(".png", mm)
    assert ok
    return struct.pack("<iff", 0, 0.0, 0.0) + png.tobytes()


@dataclass
class Messages:
    """Builds rosbags message objects from the typestore the bag is written with."""

    store: object

    def header(self, stamp: int, frame: str) -> object:
        t = self.store.types
        time = t["builtin_interfaces/msg/Time"](sec=stamp // 1_000_000_000, nanosec=stamp % 1_000_000_000)
        return t["std_msgs/msg/Header"](stamp=time, frame_id=frame)

    def compressed(self, stamp: int, frame: str, fmt: str, data: bytes) -> object:
        return self.store.types["sensor_msgs/msg/CompressedImage"](
            header=self.header(stamp, frame), format=fmt, data=np.frombuffer(data, np.uint8))

    def image(self, stamp: int, frame: str, encoding: str, array: np.ndarray) -> object:
        array = np.ascontiguousarray(array)
        return self.store.types["sensor_msgs/msg/Image"](
            header=self.header(stamp, frame), height=array.shape[0], width=array.shape[1], encoding=encoding,
            is_bigendian=0, step=array.strides[0], data=array.view(np.uint8).reshape(-1))

    def camera_info(self, stamp: int, frame: str, K: np.ndarray, size: tuple[int, int]) -> object:
        t = self.store.types
        P = np.hstack([K, np.zeros((3, 1))])
        return t["sensor_msgs/msg/CameraInfo"](
            header=self.header(stamp, frame), height=size[1], width=size[0], distortion_model="plumb_bob",
            d=np.zeros(5), k=K.reshape(-1).astype(np.float64), r=np.eye(3).reshape(-1), p=P.reshape(-1),
            binning_x=0, binning_y=0,
            roi=t["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))

    def tf(self, stamp: int, edges: list[tuple[str, str, np.ndarray]]) -> object:
        t = self.store.types
        transforms = []
        for parent, child, T in edges:
            x, y, z, w = quaternion(T[:3, :3])
            transform = t["geometry_msgs/msg/Transform"](
                translation=t["geometry_msgs/msg/Vector3"](x=T[0, 3], y=T[1, 3], z=T[2, 3]),
                rotation=t["geometry_msgs/msg/Quaternion"](x=x, y=y, z=z, w=w))
            transforms.append(t["geometry_msgs/msg/TransformStamped"](
                header=self.header(stamp, parent), child_frame_id=child, transform=transform))
        return t["tf2_msgs/msg/TFMessage"](transforms=transforms)


def write_sample_bag(out_dir: Path, frames: int = 40, storage: str = "mcap", seed: int = 0) -> Path:
    """Write the sample log as a rosbag2 directory at ``out_dir`` (which must not exist or be empty)."""
    out_dir = Path(out_dir)
    if out_dir.is_dir() and not any(out_dir.iterdir()):
        out_dir.rmdir()
    if out_dir.exists():
        raise FileExistsError(f"{out_dir} exists and is not empty; choose a new --out")
    rng = np.random.default_rng(seed)
    store = get_typestore(Stores.LATEST)
    build = Messages(store)
    period = round(1e9 / FPS)
    dropped_depth = set(rng.choice(np.arange(1, frames), size=max(1, frames // 12), replace=False).tolist())
    dropped_color = {frames // 2} if frames > 4 else set()
    late_depth = {3, frames - 4} if frames > 8 else set()

    log: list[tuple[int, str, str, object]] = []  # (log time, topic, type, message)
    log.append((START_NS, "/tf_static", "tf2_msgs/msg/TFMessage", build.tf(START_NS, [
        ("base_link", COLOR_FRAME, T_BASE_COLOR), ("base_link", DEPTH_FRAME, T_BASE_DEPTH)])))
    for k in range(frames):
        stamp = START_NS + k * period
        T_odom_base = base_pose(k / FPS)
        log.append((stamp + 2_000_000, "/tf", "tf2_msgs/msg/TFMessage",
                    build.tf(stamp, [("odom", "base_link", T_odom_base)])))
        if k not in dropped_color:
            gt, rgb, _ = render(T_odom_base @ T_BASE_COLOR, COLOR_K, COLOR_SIZE)
            ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
            assert ok
            arrive = stamp + 20_000_000
            log += [(arrive, COLOR_TOPIC, "sensor_msgs/msg/CompressedImage",
                     build.compressed(stamp, COLOR_FRAME, "bgr8; jpeg compressed bgr8", jpeg.tobytes())),
                    (arrive, "/camera/color/camera_info", "sensor_msgs/msg/CameraInfo",
                     build.camera_info(stamp, COLOR_FRAME, COLOR_K, COLOR_SIZE)),
                    (arrive + 5_000_000, GT_TOPIC, "sensor_msgs/msg/CompressedImage",
                     build.compressed(stamp, COLOR_FRAME, "16UC1; compressedDepth png",
                                      encode_compressed_depth_mm(gt)))]
        if k not in dropped_depth:
            # The sensors expose together; only the depth sensor's clock runs 5 ms (+-1 ms) late.
            depth_stamp = stamp + 5_000_000 + int(rng.integers(-1_000_000, 1_000_001))
            depth = sensor_depth(T_odom_base @ T_BASE_DEPTH, rng)
            mm = np.round(depth * 1000.0).astype(np.uint16)
            arrive = depth_stamp + (250_000_000 if k in late_depth else 10_000_000)
            log += [(arrive, DEPTH_TOPIC, "sensor_msgs/msg/Image", build.image(depth_stamp, DEPTH_FRAME, "16UC1", mm)),
                    (arrive, "/tof/depth/camera_info", "sensor_msgs/msg/CameraInfo",
                     build.camera_info(depth_stamp, DEPTH_FRAME, DEPTH_K, DEPTH_SIZE))]

    return write_bag(out_dir, log, store, storage)


def write_bag(path: Path, log: list[tuple[int, str, str, object]], store, storage: str = "mcap") -> Path:
    """Write (time_ns, topic, msgtype, message) records as a rosbag2 log; a message may also be raw CDR bytes."""
    plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}[storage]
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        connections = {}
        for _, topic, msgtype, _ in log:
            if topic not in connections:
                connections[topic] = writer.add_connection(topic, msgtype, typestore=store)
        for time, topic, msgtype, msg in sorted(log, key=lambda item: item[0]):
            data = msg if isinstance(msg, bytes) else store.serialize_cdr(msg, msgtype)
            writer.write(connections[topic], time, data)
    return path


def run(args: argparse.Namespace) -> None:
    """``depth-train sample-bag``."""
    path = write_sample_bag(args.out, frames=args.frames, storage=args.storage)
    size = sum(p.stat().st_size for p in path.iterdir()) / 1e6
    print(f"wrote {path} ({args.frames} frames, {size:.1f} MB); try: depth-train extract --bag {path} --out DIR")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``sample-bag`` subcommand."""
    p = subparsers.add_parser("sample-bag", help="write a small synthetic robot log (rosbag2) with ground truth",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, type=Path, help="bag directory to create")
    p.add_argument("--frames", type=int, default=40, help="color frames at 10 Hz")
    p.add_argument("--storage", choices=["mcap", "sqlite3"], default="mcap")
    p.set_defaults(func=run)
