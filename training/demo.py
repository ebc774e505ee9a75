"""``depth-demo``: the README's one command, from a robot log to recorded depth and point clouds.

1. Take the built-in sample robot log (written fresh) or the ``--bag`` the user names.
2. Fine-tune the packaged model on it briefly (``--use-shipped``: the packaged model as it is), export to ONNX at the
   log's image size.
3. Start the estimator node as its own process (the installed ``depth_node.node``), on this machine only.
4. Play the log's colour images and camera_info into it over real ROS 2 topics at the log's rate.
5. Record what the node publishes (plus the played inputs) into an MCAP rosbag2, viewable in RViz or Foxglove.
6. Write preview PNGs and summary.json: frames in/out, drops, per-stage latency, accuracy against the log's
   ground-truth depth when it has one.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

NAMESPACE = "depth_demo"
OUTPUTS = {"depth/image": "sensor_msgs/msg/Image", "depth/camera_info": "sensor_msgs/msg/CameraInfo",
           "depth/points": "sensor_msgs/msg/PointCloud2"}
DIAGNOSTICS = "/diagnostics"
PREVIEWS = 4
# Fine-tuning the packaged model (train.init) on the log: chosen on the built-in sample log against its ground truth
# (40 steps from it: AbsRel 0.17; 80 full frames: 0.10; these 120 steps of 128x160 crops: 0.099, about a minute).
BRIEF_TRAINING = ["data.crop_height=128", "data.crop_width=160", "train.batch_size=4", "train.warmup_steps=5",
                  "train.lr=1e-3", "train.log_every=5", "loss.teacher_steps=50", "train.checkpoint_every=1000000"]


def log(text: str) -> None:
    print(f"[depth-demo] {text}", flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="depth-demo", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--bag", help="robot log to use (rosbag2 dir, .mcap or .db3); default: a fresh built-in sample log")
    p.add_argument("--out", type=Path, help="output folder (default: ./depth_demo_out/<date-time>)")
    p.add_argument("--use-shipped", action="store_true", help="skip training: use the packaged default model")
    p.add_argument("--model", help="use this checkpoint (.pt) instead of training")
    p.add_argument("--steps", type=int, default=120,
                   help="fine-tuning steps from the packaged model (default 120, about a minute on 2 CPUs)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="training config override (repeatable), e.g. --set train.lr=0.001")
    p.add_argument("--frames", type=int, default=40, help="frames in the built-in sample log (default 40, 4 s)")
    p.add_argument("--rate", type=float, default=1.0, help="playback speed factor (default 1.0: the log's rate)")
    p.add_argument("--backend", default="onnxruntime", help="node backend (default onnxruntime)")
    p.add_argument("--decimation", type=int, default=2, help="point cloud decimation (default 2)")
    p.add_argument("--color-topic", help="colour topic in the bag (default: detected)")
    p.add_argument("--gt-topic", help="HR ground-truth depth topic in the bag (default: detected)")
    return p.parse_args(argv)


# --- 1-2: log and model -----------------------------------------------------------------------------------------------


def sample_log(out: Path, frames: int) -> Path:
    from .logs.sample_bag import write_sample_bag

    log(f"writing the built-in sample robot log ({frames} frames) ...")
    return write_sample_bag(out / "sample_log", frames=frames, storage="mcap")


def log_topics(bag: Path, color: str | None, gt: str | None) -> Any:
    from .logs.bag_reader import detect_topics, open_bag

    with open_bag(bag) as reader:
        return detect_topics(reader, bag, color=color, gt=gt)


def image_size(bag: Path, info_topic: str) -> tuple[int, int]:
    from .logs.bag_reader import first_message, open_bag

    with open_bag(bag) as reader:
        info = first_message(reader, info_topic)
    if info is None:
        raise SystemExit(f"{bag}: no readable CameraInfo on {info_topic}")
    return int(info.height), int(info.width)


def train(bag: Path, out: Path, steps: int, overrides: list[str], size: tuple[int, int]) -> Path:
    from depth_node.default_model import default_model_path

    from .config import load_config
    from .learning.train import fit

    cfg = load_config(None, [*BRIEF_TRAINING, f"train.init={default_model_path()}", f"train.steps={steps}",
                             f"model.input_height={size[0]}", f"model.input_width={size[1]}", *overrides])
    log(f"fine-tuning the packaged model on this log: {steps} steps, batch {cfg.train.batch_size} of "
        f"{cfg.data.crop_height}x{cfg.data.crop_width} crops (a model of your own: depth-train fit) ...")
    return fit(cfg, [str(bag)], out / "train")


def export(checkpoint: Path, out: Path, size: tuple[int, int]) -> Path:
    from .deployment.export import export_onnx

    log(f"exporting {checkpoint.name} to ONNX at {size[1]}x{size[0]} ...")
    return export_onnx(str(checkpoint), out / "model.onnx", size[0], size[1])


# --- 3: the node ------------------------------------------------------------------------------------------------------


def start_node(model: Path, topics: Any, compressed: bool, args: argparse.Namespace,
               log_file: Path) -> subprocess.Popen:
    base = topics.color.rsplit("/", 1)[0] if compressed else topics.color
    command = [sys.executable, "-m", "depth_node.node", "--ros-args", "-r", f"__ns:=/{NAMESPACE}",
               "-r", f"image_raw:={base}", "-r", f"camera_info:={topics.color_info}",
               "-p", f"model:={model}", "-p", f"backend:={args.backend}",
               "-p", f"image_transport:={'compressed' if compressed else 'raw'}",
               "-p", f"points_decimation:={args.decimation}", "-p", "diagnostics_period:=0.5"]
    log(f"starting the estimator node (log: {log_file}) ...")
    return subprocess.Popen(command, stdout=log_file.open("w"), stderr=subprocess.STDOUT, env=os.environ.copy())


def stop_node(process: subprocess.Popen) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


# --- 4-5: play and record ---------------------------------------------------------------------------------------------


class Recorder:
    """Writes every message it is handed into an MCAP rosbag2 (thread-safe), creating connections on first use."""

    def __init__(self, path: Path) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer
        from rosbags.typesys import Stores, get_typestore

        self.path = path
        self.store = get_typestore(Stores.ROS2_KILTED)
        self.writer = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP)
        self.writer.open()
        self._connections: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}

    def write(self, topic: str, msgtype: str, log_ns: int, cdr: bytes) -> None:
        with self._lock:
            if topic not in self._connections:
                self._connections[topic] = self.writer.add_connection(topic, msgtype, typestore=self.store)
            self.writer.write(self._connections[topic], log_ns, cdr)
            self.counts[topic] = self.counts.get(topic, 0) + 1

    def close(self) -> None:
        with self._lock:
            self.writer.close()


class Session:
    """The demo's own ROS node: plays the log into the estimator and records and scores what comes back."""

    def __init__(self, bag: Path, topics: Any, recorder: Recorder, out: Path, rate: float) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        from .logs.bag_reader import open_bag

        self.bag, self.topics, self.recorder, self.out, self.rate = bag, topics, recorder, out, rate
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("depth_demo_player", context=self.context)
        with open_bag(bag) as reader:
            types = {name: info.msgtype for name, info in reader.topics.items()}
        self.msg_classes = {topic: self._rclpy_type(types[topic]) for topic in (topics.color, topics.color_info)}
        sensor = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)
        self.publishers = {topic: self.node.create_publisher(cls, topic, sensor)
                           for topic, cls in self.msg_classes.items()}
        out_qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        for name, msgtype in OUTPUTS.items():
            topic = f"/{NAMESPACE}/{name}"
            self.node.create_subscription(self._rclpy_type(msgtype), topic, self._recorded(topic, msgtype), out_qos,
                                          raw=True)
        self.node.create_subscription(self._rclpy_type("diagnostic_msgs/msg/DiagnosticArray"), DIAGNOSTICS,
                                      self._on_diagnostics, 10)
        self.played = 0
        self.outputs = 0
        self.last_output = time.monotonic()
        self.diagnostics: dict[str, str] = {}
        self.recent_color: OrderedDict[int, tuple[int, bytes]] = OrderedDict()  # stamp -> (index in the log, CDR)
        self.gt: dict[int, Any] = self._ground_truth()
        self.metrics: list[dict[str, float]] = []
        self.previews: list[Path] = []
        self.expected = 0  # colour frames in the log
        self.log_start_ns = 0
        self.play_start = 0.0
        self._stop = threading.Event()
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    @staticmethod
    def _rclpy_type(msgtype: str) -> type:
        import importlib

        package, _, name = msgtype.split("/")
        return getattr(importlib.import_module(f"{package}.msg"), name)

    def _ground_truth(self) -> dict[int, Any]:
        """HR ground-truth depth messages by stamp (kept compressed as logged; decoded when scored)."""
        from .logs.bag_reader import open_bag, stamp_ns

        if not self.topics.gt:
            return {}
        with open_bag(self.bag) as reader:
            wanted = [c for c in reader.connections if c.topic == self.topics.gt]
            return {stamp_ns(msg): msg for msg in (reader.deserialize(raw, c.msgtype)
                                                   for c, _, raw in reader.messages(connections=wanted))}

    def wait_for_node(self, process: subprocess.Popen, timeout: float = 60.0) -> None:
        """Until the estimator has matched the colour and camera_info topics (its input QoS follows these best-effort
        publishers) and publishes diagnostics (its model is loaded)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise SystemExit(f"the estimator node exited with code {process.returncode}; see its log")
            if all(p.get_subscription_count() > 0 for p in self.publishers.values()) and self.diagnostics:
                return
            self._spin(0.1)
        raise SystemExit(f"the estimator node did not come up within {timeout:.0f} s; see its log")

    def _spin(self, seconds: float) -> None:
        self.executor.spin_once(timeout_sec=seconds)

    def _log_time(self, stamp: int) -> int:
        """Log time of an output: its header stamp (= the input image's), so inputs and outputs line up."""
        return stamp if stamp > 0 else self.log_start_ns + int((time.monotonic() - self.play_start) * 1e9)

    def _recorded(self, topic: str, msgtype: str):
        from rclpy.serialization import deserialize_message

        cls = self._rclpy_type(msgtype)

        def callback(cdr: bytes) -> None:
            msg = deserialize_message(cdr, cls)
            stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            self.recorder.write(topic, msgtype, self._log_time(stamp), cdr)
            if topic.endswith("depth/image"):
                self.outputs += 1
                self.last_output = time.monotonic()
                self._score(stamp, msg)

        return callback

    def _on_diagnostics(self, msg: Any) -> None:
        from rclpy.serialization import serialize_message

        for status in msg.status:
            if "depth estimator" in status.name:
                self.diagnostics = {kv.key: kv.value for kv in status.values}
        if self.play_start:
            self.recorder.write(DIAGNOSTICS, "diagnostic_msgs/msg/DiagnosticArray", self._log_time(0),
                                serialize_message(msg))

    def _score(self, stamp: int, depth_msg: Any) -> None:
        from depth_node.depth_image import decode_depth

        depth = decode_depth(depth_msg)
        gt_msg = self.gt.get(stamp)
        gt = None
        if gt_msg is not None:
            from .evaluation.metrics import depth_metrics
            from .logs.bag_reader import decode_depth as decode_gt

            gt = decode_gt(gt_msg)
            gt = np.where(gt > 0, gt, np.nan).astype(np.float32)
            if gt.shape != depth.shape:
                gt = None  # another resolution: neither scored nor shown beside the prediction
            elif np.isfinite(gt).any():
                self.metrics.append(depth_metrics(depth, gt))
        index, cdr = self.recent_color.get(stamp, (-1, b""))
        if len(self.previews) < PREVIEWS and index >= len(self.previews) * self.expected / PREVIEWS:  # spread out
            self.previews.append(write_preview(self.out, len(self.previews), cdr,
                                               self.msg_classes[self.topics.color], depth, gt))

    def play(self) -> None:
        """Publish the log's colour images and camera_info as recorded, at ``rate`` times the log's pace."""
        from rclpy.serialization import deserialize_message

        from .logs.bag_reader import open_bag

        color, info = self.topics.color, self.topics.color_info
        with open_bag(self.bag) as reader:
            wanted = [c for c in reader.connections if c.topic in (color, info, self.topics.gt)]
            self.expected = reader.topics[color].msgcount
            self.play_start = time.monotonic()
            for connection, log_ns, cdr in reader.messages(connections=wanted):
                if self._stop.is_set():
                    return
                self.log_start_ns = self.log_start_ns or log_ns
                wait = (log_ns - self.log_start_ns) / 1e9 / self.rate - (time.monotonic() - self.play_start)
                if wait > 0:
                    time.sleep(wait)
                self.recorder.write(connection.topic, connection.msgtype, log_ns, bytes(cdr))  # the inputs, for context
                if connection.topic == self.topics.gt:
                    continue
                self.publishers[connection.topic].publish(bytes(cdr))
                if connection.topic == color:
                    self.played += 1
                    msg = deserialize_message(bytes(cdr), self.msg_classes[color])
                    stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
                    self.recent_color[stamp] = (self.played - 1, bytes(cdr))
                    while len(self.recent_color) > 60:
                        self.recent_color.popitem(last=False)

    def run(self, process: subprocess.Popen) -> None:
        """Play in a thread while this one spins; then wait until the node has handled every frame."""
        player = threading.Thread(target=self.play, daemon=True)
        player.start()
        while player.is_alive():
            self._spin(0.05)
            if process.poll() is not None:
                self._stop.set()
                raise SystemExit(f"the estimator node exited with code {process.returncode} during playback")
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline:  # drain: every played frame is published or counted as dropped
            self._spin(0.05)
            d = self.diagnostics
            handled = int(d.get("processed", 0)) + sum(int(v) for k, v in d.items() if k.startswith("dropped_"))
            if handled >= self.played and time.monotonic() - self.last_output > 1.0:
                break
        end = time.monotonic() + 1.0
        while time.monotonic() < end:  # one more diagnostics round with the final counts
            self._spin(0.05)

    def close(self) -> None:
        import rclpy

        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


def write_preview(out: Path, index: int, color_cdr: bytes, color_type: type, depth: np.ndarray,
                  gt: np.ndarray | None) -> Path:
    """colour | prediction | ground truth | error (when the log has ground truth), labelled, with colour bars."""
    import cv2
    from rclpy.serialization import deserialize_message

    from depth_node.image_codec import decode_color
    from depth_node.preview import preview

    image, order = decode_color(deserialize_message(color_cdr, color_type))
    bgr = image if order == "bgr8" else np.ascontiguousarray(image[..., ::-1])
    path = out / "previews" / f"preview_{index}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), preview(bgr, depth, gt))
    return path


# --- 6: summary -------------------------------------------------------------------------------------------------------


def stage_latency(diagnostics: dict[str, str]) -> dict[str, dict[str, float]]:
    stages = {}
    for key, value in diagnostics.items():
        for suffix in ("_mean_ms", "_p90_ms"):
            if key.endswith(suffix):
                stages.setdefault(key[: -len(suffix)], {})[suffix[1:]] = float(value)
    return stages


def summarize(session: Session, args: argparse.Namespace, paths: dict[str, str], wall: dict[str, float]) -> dict:
    d = session.diagnostics
    accuracy = None
    if session.metrics:
        accuracy = {k: float(np.mean([m[k] for m in session.metrics])) for k in session.metrics[0]}
        accuracy["frames"] = len(session.metrics)
    return {
        "bag": str(session.bag),
        "topics": {"color": session.topics.color, "camera_info": session.topics.color_info,
                   "ground_truth": session.topics.gt},
        "model": paths["model"],
        "backend": d.get("backend"),
        "frames": {"in": session.played, "received_by_node": int(d.get("received", 0)),
                   "out": session.outputs, "clouds": session.recorder.counts.get(f"/{NAMESPACE}/depth/points", 0),
                   "dropped": {k[len("dropped_"):]: int(v) for k, v in d.items() if k.startswith("dropped_")}},
        "latency_ms": stage_latency(d),
        "accuracy": accuracy if accuracy else "the log has no HR ground truth" if not session.topics.gt else None,
        "outputs": paths,
        "wall_s": {k: round(v, 1) for k, v in wall.items()},
    }


def main(argv: list[str] | None = None) -> int:
    from .logs.bag_reader import BagError

    try:
        return run(parse_args(argv))
    except (BagError, FileNotFoundError, ValueError, ImportError) as error:
        log(f"error: {error}")
        return 2
    except KeyboardInterrupt:
        log("interrupted")
        return 130


def run(args: argparse.Namespace) -> int:
    """The six steps of the module docstring; returns the exit code."""
    os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")  # the demo's topics stay on this machine
    out = (args.out or Path("depth_demo_out") / time.strftime("%Y%m%d-%H%M%S")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    wall: dict[str, float] = {}
    t0 = time.monotonic()

    bag = Path(args.bag).resolve() if args.bag else sample_log(out, args.frames)
    topics = log_topics(bag, args.color_topic, args.gt_topic)
    size = image_size(bag, topics.color_info)
    log(f"log {bag}: colour {topics.color} ({size[1]}x{size[0]}), ground truth {topics.gt or 'none'}")
    wall["log"] = time.monotonic() - t0

    t = time.monotonic()
    if args.model:
        checkpoint = Path(args.model)
    elif args.use_shipped:
        from depth_node.default_model import default_model_path

        checkpoint = default_model_path()
    else:
        checkpoint = train(bag, out, args.steps, args.set, size)
    wall["train"] = time.monotonic() - t
    t = time.monotonic()
    onnx_path = export(checkpoint, out, size)
    wall["export"] = time.monotonic() - t

    compressed = topics.color.endswith("/compressed")
    recorder = Recorder(out / "output_bag")
    session = Session(bag, topics, recorder, out, args.rate)
    t = time.monotonic()
    process = start_node(onnx_path, topics, compressed, args, out / "node.log")
    try:
        session.wait_for_node(process)
        wall["node_start"] = time.monotonic() - t
        log(f"playing {topics.color} and {topics.color_info} into /{NAMESPACE}/estimator ...")
        t = time.monotonic()
        session.run(process)
        wall["play_and_record"] = time.monotonic() - t
    finally:
        stop_node(process)
        recorder.close()
        session.close()

    paths = {"output_bag": str(recorder.path), "previews": [str(p) for p in session.previews],
             "model": str(onnx_path), "checkpoint": str(checkpoint), "node_log": str(out / "node.log"),
             "summary": str(out / "summary.json")}
    wall["total"] = time.monotonic() - t0
    summary = summarize(session, args, paths, wall)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    frames = summary["frames"]
    log(f"frames: {frames['in']} played, {frames['out']} depth images out, dropped {frames['dropped'] or 'none'}")
    for stage, t_ms in summary["latency_ms"].items():
        log(f"  {stage:12s} {t_ms.get('mean_ms', 0):7.1f} ms mean  {t_ms.get('p90_ms', 0):7.1f} ms p90")
    if isinstance(summary["accuracy"], dict):
        acc = summary["accuracy"]
        log(f"accuracy vs the log's HR ground truth ({acc['frames']} frames): AbsRel {acc['abs_rel']:.3f}, "
            f"RMSE {acc['rmse']:.3f} m, delta<1.25 {acc['delta1']:.3f}")
    if isinstance(summary["accuracy"], dict):
        log("  AbsRel: mean |depth - true| / true over the frames (0.10 = 10% off on average); RMSE in metres; "
            "delta<1.25: share of pixels within 25% of the truth")
    log(f"output rosbag2 (MCAP; open in Foxglove, or `ros2 bag play` + rviz2 -d config/depth.rviz): {recorder.path}")
    log(f"open first: {session.previews[0] if session.previews else out / 'previews'} (colour | predicted depth | "
        "ground truth | error)")
    log(f"previews: {out / 'previews'}   summary: {out / 'summary.json'}   ({wall['total']:.0f} s in all)")
    return 0 if frames["out"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
