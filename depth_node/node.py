"""The estimator node: ROS wiring around ``FramePipeline`` (subscriptions, publishers, parameters, diagnostics).

Latency policy: the image callback only puts the message into a ``LatestQueue`` (one slot by default) and returns;
a worker thread takes the newest frame, decodes it, waits briefly for its camera_info (matched by stamp), runs the
estimator and publishes. Frames that arrive while the worker is busy replace the waiting one and are counted as
``stale`` drops, so the output is never more than one inference behind the camera. Bad inputs are counted by reason
and reported as throttled warnings; the node keeps running.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField

from .depth_image import camera_info_problem, decode_depth, depth_camera_info, intrinsics
from .frame_pipeline import FramePipeline, LatestQueue, StampCache, StreamStats, Throttle
from .image_codec import ImageDecodeError, byte_array_view, decode_color, fill_image
from .params import NodeParams, declare, reload_names, to_values, with_changes
from .pointcloud import cloud_fields, decimated_size, point_step
from .scale_align import ScaleAligner

CAMERA_INFO_WAIT_S = 0.25  # camera_info may arrive just after its image (another DDS writer)
WARN_PERIOD_S = 5.0
LOG_STATS_PERIOD_S = 30.0


def stamp_ns(header: Any) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def qos(reliability: str, depth: int) -> QoSProfile:
    policy = ReliabilityPolicy.BEST_EFFORT if reliability == "best_effort" else ReliabilityPolicy.RELIABLE
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=policy)


def load_for(params: NodeParams) -> Any:
    """The estimator the parameters name (errors name the model and the reason)."""
    from .estimator import load_estimator

    size = (params.input_height, params.input_width) if params.input_height else None
    return load_estimator(params.model or None, params.backend, params.engine_cache_dir or None, size)


class EstimatorNode(Node):
    """HR metric depth from a colour camera: depth/image, depth/camera_info and depth/points."""

    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__("estimator", **node_kwargs)
        self.params = declare(self)
        estimator = load_for(self.params)
        aligner = ScaleAligner(self.params.scale_align_shift, self.params.scale_align_smoothing) if (
            self.params.scale_align_enabled) else None
        self.pipeline = FramePipeline(estimator, aligner)
        self.stats = StreamStats()
        self.queue: LatestQueue[tuple[Any, float]] = LatestQueue(self.params.queue_size)
        self.infos: StampCache[CameraInfo] = StampCache()
        self.lr_depths: StampCache[Image] = StampCache()
        self._throttle = Throttle(WARN_PERIOD_S)
        self._last_size: tuple[int, int] | None = None
        self._reported_drops = 0

        p = self.params
        in_qos = qos(p.qos_input_reliability, p.qos_input_depth)
        out_qos = qos(p.qos_output_reliability, p.qos_output_depth)
        self.image_topic = self.resolve_topic_name("image_raw")
        if p.image_transport == "compressed":
            self.image_topic += "/compressed"
            self.create_subscription(CompressedImage, self.image_topic, self._on_image, in_qos)
        else:
            self.create_subscription(Image, self.image_topic, self._on_image, in_qos)
        self.info_topic = self.resolve_topic_name("camera_info")
        self.create_subscription(CameraInfo, self.info_topic, self._on_camera_info, in_qos)
        if p.scale_align_enabled:
            self.create_subscription(Image, "lr_depth", self._on_lr_depth, in_qos)
        self.depth_pub = self.create_publisher(Image, "depth/image", out_qos)
        self.info_pub = self.create_publisher(CameraInfo, "depth/camera_info", out_qos)
        self.points_pub = self.create_publisher(PointCloud2, "depth/points", out_qos)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(p.diagnostics_period, self._publish_diagnostics)
        self._last_stats_log = time.monotonic()
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name="depth_worker", daemon=True)
        self._worker.start()
        self.get_logger().info(f"{estimator!r}; image {self.image_topic}, camera_info {self.info_topic}; "
                               f"parameters {to_values(p)}")

    def close(self) -> None:
        """Stop the worker, then destroy the node."""
        self._stop.set()
        self._worker.join(timeout=5.0)
        self.destroy_node()

    # --- callbacks (executor thread): cheap, never block on inference ---

    def _on_image(self, msg: Any) -> None:
        self.stats.count_received()
        stale = self.queue.put((msg, time.perf_counter()))
        if stale:
            self.stats.count_dropped("stale", n=len(stale))

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self.infos.add(stamp_ns(msg.header), msg)

    def _on_lr_depth(self, msg: Image) -> None:
        self.lr_depths.add(stamp_ns(msg.header), msg)

    def _on_set_parameters(self, parameters: list[Any]) -> SetParametersResult:
        changes = {param.name: param.value for param in parameters}
        try:
            new = with_changes(self.params, changes)
        except ValueError as error:
            return SetParametersResult(successful=False, reason=str(error))
        if any(name in reload_names() for name in changes) and new != self.params:
            try:
                self.pipeline.estimator = load_for(new)
            except Exception as error:  # noqa: BLE001 - any loader failure refuses the change with its message
                return SetParametersResult(successful=False, reason=f"cannot load the estimator: {error}")
            self.get_logger().info(f"estimator reloaded: {self.pipeline.estimator!r}")
        self.queue.maxsize = new.queue_size
        if self.pipeline.aligner is not None:
            self.pipeline.aligner.with_shift = new.scale_align_shift
            self.pipeline.aligner.smoothing = new.scale_align_smoothing
        self.params = new
        return SetParametersResult(successful=True)

    # --- worker thread ---

    def _work(self) -> None:
        while not self._stop.is_set():
            item = self.queue.get(timeout=0.1)
            if item is None:
                continue
            try:
                self._process(*item)
            except Exception as error:  # noqa: BLE001 - one bad frame must not stop the stream or flood the log
                self._drop("error", f"frame failed: {type(error).__name__}: {error}")

    def _drop(self, reason: str, problem: str) -> None:
        self.stats.count_dropped(reason, problem)
        self._warn(reason, problem)

    def _warn(self, key: str, text: str) -> None:
        held = self._throttle(key)
        if held is not None:
            self.get_logger().warning(text + (f" ({held} similar since the last report)" if held else ""))

    def _process(self, msg: Any, received: float) -> None:
        t0 = time.perf_counter()
        p = self.params
        try:
            image, encoding = decode_color(msg)
        except ImageDecodeError as error:
            self._drop("decode", f"{self.image_topic}: {error}")
            return
        t1 = time.perf_counter()
        h, w = image.shape[:2]
        if self._last_size is not None and self._last_size != (h, w):
            self._warn("size", f"{self.image_topic}: image size changed from {self._last_size[1]}x"
                       f"{self._last_size[0]} to {w}x{h}; following it")
        self._last_size = (h, w)
        stamp = stamp_ns(msg.header)
        info = self.infos.match(stamp, int(p.camera_info_tolerance_ms * 1e6), CAMERA_INFO_WAIT_S)
        if info is None:
            latest = self.infos.latest()
            seen = f"nearest seen has stamp {latest[0] / 1e9:.3f}" if latest else "none received yet"
            self._drop("no_camera_info", f"{self.info_topic}: no camera_info within {p.camera_info_tolerance_ms} ms of "
                       f"image stamp {stamp / 1e9:.3f} ({seen}); frame skipped")
            return
        problem = camera_info_problem(info, h, w)
        if problem:
            self._drop("camera_info_mismatch", f"{self.info_topic}: {problem}; frame skipped")
            return
        lr = self._lr_depth(stamp) if self.pipeline.aligner is not None else None
        settings = self.pipeline.settings(p.min_depth, p.max_depth, encoding=p.output_encoding,
                                          decimation=p.points_decimation, color=p.points_color)
        want_cloud = p.publish_points and self.points_pub.get_subscription_count() > 0
        # outputs are written straight into the buffers the messages will hold (no copy of megabytes before publish)
        depth_data, depth_out = byte_array_view((h, w), np.float32 if p.output_encoding == "32FC1" else np.uint16)
        cloud_data, cloud_out = None, None
        if want_cloud:
            shape = (*decimated_size(h, w, p.points_decimation), point_step(p.points_color) // 4)
            cloud_data, cloud_out = byte_array_view(shape, np.float32)
        result = self.pipeline.process(image, encoding, intrinsics(info), settings, want_cloud, lr, depth_out,
                                       cloud_out)
        t2 = time.perf_counter()
        depth_msg = Image(check_fields=True, header=msg.header)
        self.depth_pub.publish(fill_image(depth_msg, result.depth, p.output_encoding, depth_data))
        self.info_pub.publish(depth_camera_info(info, msg.header))
        if result.cloud is not None:
            self.points_pub.publish(self._cloud_msg(msg.header, cloud_data, result.cloud.shape, settings.color))
        t3 = time.perf_counter()
        timings = dict(result.timings, decode=1e3 * (t1 - t0), publish=1e3 * (t3 - t2), total=1e3 * (t3 - t0),
                       latency=1e3 * (t3 - received))
        self.stats.count_processed(timings, result.cloud is not None)

    def _lr_depth(self, stamp: int) -> Any:
        msg = self.lr_depths.match(stamp, int(self.params.scale_align_tolerance_ms * 1e6))
        if msg is None:
            self._warn("lr_depth", f"{self.resolve_topic_name('lr_depth')}: no LR depth within "
                       f"{self.params.scale_align_tolerance_ms} ms of the image; keeping the last scale")
            return None
        try:
            return decode_depth(msg)
        except ImageDecodeError as error:
            self._warn("lr_depth", f"{self.resolve_topic_name('lr_depth')}: {error}")
            return None

    @staticmethod
    def _cloud_msg(header: Any, data: Any, shape: tuple[int, ...], color: bool) -> PointCloud2:
        h, w = shape[:2]
        step = point_step(color)
        fields = [PointField(name=n, offset=o, datatype=t, count=c) for n, o, t, c in cloud_fields(color)]
        msg = PointCloud2(check_fields=True, header=header, height=h, width=w, fields=fields, point_step=step,
                          row_step=step * w, is_bigendian=sys.byteorder == "big", is_dense=False)
        msg.data = data  # an array.array('B'): kept without a copy (check_fields)
        return msg

    # --- diagnostics (executor thread, low rate) ---

    def _publish_diagnostics(self) -> None:
        s = self.stats.summary()
        bad = sum(n for reason, n in s["dropped"].items() if reason != "stale")
        level = DiagnosticStatus.WARN if bad > self._reported_drops else DiagnosticStatus.OK
        self._reported_drops = bad
        est = self.pipeline.estimator
        values = {"backend": est.backend, "device": getattr(est, "device", ""), "received": s["received"],
                  "processed": s["processed"], "clouds": s["clouds"], "rate_hz": f"{s['rate_hz']:.2f}"}
        values.update({f"dropped_{reason}": n for reason, n in s["dropped"].items()})
        for stage, t in s["stages"].items():
            values[f"{stage}_mean_ms"] = f"{t['mean_ms']:.2f}"
            values[f"{stage}_p90_ms"] = f"{t['p90_ms']:.2f}"
        aligner = self.pipeline.aligner
        if aligner is not None and aligner.last_fit is not None:
            values.update(scale=f"{aligner.scale:.4f}", shift=f"{aligner.shift:.4f}",
                          fit_abs_rel=f"{aligner.last_fit.abs_rel:.4f}",
                          fit_inliers=f"{aligner.last_fit.inlier_fraction:.3f}", fit_pixels=aligner.last_fit.pixels)
        status = DiagnosticStatus(level=level, name=f"{self.get_fully_qualified_name()}: depth estimator",
                                  hardware_id=str(values["device"]),
                                  message=s["last_problem"] if level != DiagnosticStatus.OK else "ok",
                                  values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
        self.diag_pub.publish(DiagnosticArray(header=self._diag_header(), status=[status]))
        if time.monotonic() - self._last_stats_log >= LOG_STATS_PERIOD_S:
            self._last_stats_log = time.monotonic()
            total = s["stages"].get("total", {}).get("mean_ms", 0.0)
            self.get_logger().info(f"{s['processed']}/{s['received']} frames, {s['rate_hz']:.1f} Hz, "
                                   f"{total:.1f} ms/frame, dropped {s['dropped']}")

    def _diag_header(self) -> Any:
        from std_msgs.msg import Header

        return Header(stamp=self.get_clock().now().to_msg())


def main(args: list[str] | None = None) -> int:
    """``ros2 run depth_node estimator`` / ``depth-estimator --ros-args ...``; exit code 1 on a configuration error."""
    try:
        with rclpy.init(args=args):
            try:
                node = EstimatorNode()
            except (ValueError, OSError, ImportError, RuntimeError, ParameterException) as error:
                rclpy.logging.get_logger("estimator").fatal(f"cannot start: {error}")
                return 1
            try:
                rclpy.spin(node)
            finally:
                node.close()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
