"""The estimator node: ROS wiring around ``FramePipeline`` (subscriptions, publishers, parameters, diagnostics).

Latency policy: the image callback only puts the message into a ``LatestQueue`` (one slot by default) and returns;
a worker thread takes the newest frame, decodes it, finds its camera_info (``camera_info_cache``: stamp-matched, else
the last one of its size while the camera model is steady), runs the estimator and publishes. Frames that arrive
while the worker is busy replace the waiting one and are counted as ``stale`` drops, so the output is never more than
one inference behind the camera. Inputs follow their publishers' reliability (``input_qos``); frames lost before the
callback are counted too. Bad inputs are counted by reason and reported as throttled warnings; the node keeps running.
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
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField

from .camera_info_cache import CameraInfoCache
from .dds_profile import apply_profile
from .depth_image import camera_info_problem, decode_depth, depth_camera_info, intrinsics, size_problem
from .frame_pipeline import NO_LR_DEPTH, FramePipeline, LatestQueue, StampCache, StampRate, StreamStats, Throttle
from .image_codec import ImageDecodeError, byte_array_view, decode_color, fill_image
from .input_qos import InputSubscription, profile
from .model_check import ModelFileError, check_model_file, probe
from .params import (
    NodeParams,
    confidence_problem,
    declare,
    depth_range_problem,
    input_size,
    reload_names,
    to_values,
    with_changes,
)
from .pointcloud import cloud_fields, decimated_size, point_step
from .scale_align import ScaleAligner

WARN_PERIOD_S = 5.0
LOG_STATS_PERIOD_S = 30.0
QOS_CHECK_PERIOD_S = 1.0  # how often auto inputs re-read their publishers' QoS
LOSS_WARN_FRACTION = 0.01  # WARN when more of a diagnostics window than this was lost in transport


def stamp_ns(header: Any) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def load_for(params: NodeParams) -> Any:
    """The estimator the parameters name; ModelFileError (``<file>: <reason>``) or ValueError says why not."""
    from .estimator import load_estimator

    model = check_model_file(params.model, params.backend)
    size = input_size(params, model.input_size)
    try:
        estimator = load_estimator(str(model.path), params.backend, params.engine_cache_dir or None, size)
    except ImportError:
        raise
    except Exception as error:  # noqa: BLE001 - a loader's failure on this file is the reason to refuse it
        raise ModelFileError(model.path, f"cannot be loaded ({error})") from None
    problem = probe(estimator, confidence=params.min_confidence > 0 or params.confidence_use_lr_depth)
    if problem:
        raise ModelFileError(model.path, problem)
    problem = depth_range_problem(params, estimator.min_depth, estimator.max_depth) or confidence_problem(
        params, estimator.has_confidence, estimator.sensor_stage is not None)
    if problem:
        raise ValueError(problem)
    return estimator


class EstimatorNode(Node):
    """HR metric depth from a colour camera: depth/image, depth/camera_info, depth/points and depth/confidence."""

    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__("estimator", **node_kwargs)
        self.params = declare(self)
        estimator = load_for(self.params)
        p = self.params
        lr_range = (p.lr_depth_min_depth, p.lr_depth_max_depth)
        aligner = ScaleAligner(p.scale_align_shift, p.scale_align_smoothing, lr_range,
                               p.scale_align_max_step) if p.scale_align_enabled else None
        self.pipeline = FramePipeline(estimator, aligner, lr_range if p.confidence_use_lr_depth else None)
        self.stats = StreamStats()
        self.rate = StampRate()
        self.queue: LatestQueue[tuple[Any, float]] = LatestQueue(p.queue_size)
        self.infos = CameraInfoCache()
        self.lr_depths: StampCache[Image] = StampCache()
        self._throttle = Throttle(WARN_PERIOD_S)
        self._last_size: tuple[int, int] | None = None
        self._reported_drops = 0
        self._window = (0, 0)  # (received, lost) at the last diagnostics

        self.image_topic = self.resolve_topic_name("image_raw")
        image_type = Image
        if p.image_transport == "compressed":
            self.image_topic += "/compressed"
            image_type = CompressedImage
        self.info_topic = self.resolve_topic_name("camera_info")
        self.lr_topic = self.resolve_topic_name("lr_depth")
        # what a frame without its LR depth gets (both uses are fixed at start)
        uses = (("scale kept", p.scale_align_enabled), ("confidence image-only", p.confidence_use_lr_depth))
        self._without_lr = ", ".join(what for what, on in uses if on)
        setting, depth = p.qos_input_reliability, p.qos_input_depth
        self.inputs = {"image": InputSubscription(self, image_type, self.image_topic, self._on_image, setting, depth),
                       "camera_info": InputSubscription(self, CameraInfo, self.info_topic, self._on_camera_info,
                                                        setting, depth)}
        if p.scale_align_enabled or p.confidence_use_lr_depth:
            self.inputs["lr_depth"] = InputSubscription(self, Image, self.lr_topic, self._on_lr_depth, setting, depth)
        if setting == "auto":
            self.create_timer(QOS_CHECK_PERIOD_S, self._check_inputs)
        out_qos = profile(p.qos_output_reliability, p.qos_output_depth)
        self.depth_pub = self.create_publisher(Image, "depth/image", out_qos)
        self.info_pub = self.create_publisher(CameraInfo, "depth/camera_info", out_qos)
        self.points_pub = self.create_publisher(PointCloud2, "depth/points", out_qos)
        self.confidence_pub = self.create_publisher(Image, "depth/confidence", out_qos)
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
        now = time.perf_counter()
        self.stats.count_received()
        self.rate.add(stamp_ns(msg.header), now)
        stale = self.queue.put((msg, now))
        if stale:
            self.stats.count_dropped("stale", n=len(stale))

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self.infos.add(stamp_ns(msg.header), msg)

    def _on_lr_depth(self, msg: Image) -> None:
        self.lr_depths.add(stamp_ns(msg.header), msg)

    def _check_inputs(self) -> None:
        for subscription in self.inputs.values():
            subscription.check()

    def _on_set_parameters(self, parameters: list[Any]) -> SetParametersResult:
        changes = {param.name: param.value for param in parameters}
        try:
            new = with_changes(self.params, changes)
        except ValueError as error:
            return SetParametersResult(successful=False, reason=str(error))
        estimator = self.pipeline.estimator
        if any(name in reload_names() for name in changes) and new != self.params:
            try:
                estimator = load_for(new)
            except (ValueError, OSError, ImportError, RuntimeError) as error:
                return SetParametersResult(successful=False, reason=f"cannot load the estimator: {error}")
        problem = depth_range_problem(new, estimator.min_depth, estimator.max_depth) or confidence_problem(
            new, estimator.has_confidence, estimator.sensor_stage is not None)
        if problem:
            return SetParametersResult(successful=False, reason=problem)
        if estimator is not self.pipeline.estimator:
            self.pipeline.estimator = estimator
            self.get_logger().info(f"estimator reloaded: {estimator!r}")
        self.queue.maxsize = new.queue_size
        aligner, lr_range = self.pipeline.aligner, (new.lr_depth_min_depth, new.lr_depth_max_depth)
        if aligner is not None:
            aligner.with_shift, aligner.smoothing = new.scale_align_shift, new.scale_align_smoothing
            aligner.valid_range, aligner.max_step = lr_range, new.scale_align_max_step
        if self.pipeline.lr_valid_range is not None:
            self.pipeline.lr_valid_range = lr_range
        self.params = new
        return SetParametersResult(successful=True)

    # --- worker thread ---

    def _work(self) -> None:
        """Process frames until ``close`` or until the context shuts down (SIGINT/SIGTERM: nothing can be published)."""
        while not self._stop.is_set() and self.context.ok():
            item = self.queue.get(timeout=0.1)
            if item is None:
                continue
            try:
                self._process(*item)
            except Exception as error:  # noqa: BLE001 - one bad frame must not stop the stream or flood the log
                if not self.context.ok():  # shut down mid-frame: its publish failed by design, not a fault to report
                    return
                self._drop("error", f"frame failed: {type(error).__name__}: {error}")

    def _drop(self, reason: str, problem: str) -> None:
        self.stats.count_dropped(reason, problem)
        self._warn(reason, problem)

    def _warn(self, key: str, text: str) -> None:
        held = self._throttle(key)
        if held is not None:
            self.get_logger().warning(text + (f" ({held} similar since the last report)" if held else ""))

    def _camera_info(self, stamp: int, h: int, w: int) -> Any:
        """The frame's camera_info (see camera_info_cache), or None after saying why the frame is dropped."""
        p = self.params
        info, how = self.infos.lookup(stamp, h, w, int(p.camera_info_tolerance_ms * 1e6), p.camera_info_wait,
                                      lambda: len(self.queue) > 0)
        if info is None:
            latest = self.infos.latest()
            seen = (f"the last one received is {latest.width}x{latest.height}, stamp "
                    f"{stamp_ns(latest.header) / 1e9:.3f}" if latest is not None else "none received yet")
            self._drop("no_camera_info", f"{self.info_topic}: no camera_info within {p.camera_info_tolerance_ms} ms "
                       f"of image stamp {stamp / 1e9:.3f} ({how}) and no earlier one of this {w}x{h} camera to reuse "
                       f"({seen}); frame skipped")
            return None
        if how == "reused":
            self.stats.count_event("camera_info_reused")
        problem = size_problem(info, h, w)
        if problem:
            self._drop("camera_info_mismatch", f"{self.info_topic}: {problem}; frame skipped")
            return None
        return info

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
        info = self._camera_info(stamp, h, w)
        if info is None:
            return
        lr = (lambda: self._lr_depth(stamp)) if "lr_depth" in self.inputs else None  # looked up after inference
        settings = self.pipeline.settings(p.min_depth, p.max_depth, encoding=p.output_encoding,
                                          decimation=p.points_decimation, color=p.points_color,
                                          min_confidence=p.min_confidence)
        want_confidence = self.confidence_pub.get_subscription_count() > 0
        if want_confidence and not self.pipeline.estimator.has_confidence:
            want_confidence = False
            self._warn("confidence", "depth/confidence has subscribers but the model has no confidence output; "
                       "calibrate and re-export it (depth-train calibrate-confidence, depth-train export)")
        want_cloud = p.publish_points and self.points_pub.get_subscription_count() > 0
        if want_cloud and (problem := camera_info_problem(info, h, w)):
            want_cloud = False
            self.stats.count_event("points_skipped_uncalibrated")
            self._warn("uncalibrated", f"{self.info_topic}: {problem}: depth/points skipped (depth/image is still "
                       "published); calibrate the camera (ros2 run camera_calibration cameracalibrator) and give "
                       "its driver the calibration file")
        # outputs are written straight into the buffers the messages will hold (no copy of megabytes before publish)
        depth_data, depth_out = byte_array_view((h, w), np.float32 if p.output_encoding == "32FC1" else np.uint16)
        cloud_data, cloud_out = None, None
        if want_cloud:
            shape = (*decimated_size(h, w, p.points_decimation), point_step(p.points_color) // 4)
            cloud_data, cloud_out = byte_array_view(shape, np.float32)
        confidence_data, confidence_out = byte_array_view((h, w), np.float32) if want_confidence else (None, None)
        result = self.pipeline.process(image, encoding, intrinsics(info), settings, want_cloud, lr, depth_out,
                                       cloud_out, want_confidence, confidence_out)
        if result.image_only:
            self.stats.count_event("confidence_image_only")
            if result.image_only != NO_LR_DEPTH:  # a missing one was reported by _lr_depth
                self._warn("confidence_lr", f"{self.lr_topic}: confidence not sharpened by the LR depth for this "
                           f"frame: {result.image_only}; published the image-only confidence")
        if result.align_skipped:
            self.stats.count_event("align_skipped")
            self._warn("align", f"{self.lr_topic}: scale alignment skipped for this frame: {result.align_skipped}; "
                       f"keeping scale {self.pipeline.aligner.scale:.4f}")
        t2 = time.perf_counter()
        depth_msg = Image(check_fields=True, header=msg.header)
        self.depth_pub.publish(fill_image(depth_msg, result.depth, p.output_encoding, depth_data))
        self.info_pub.publish(depth_camera_info(info, msg.header))
        if result.cloud is not None:
            self.points_pub.publish(self._cloud_msg(msg.header, cloud_data, result.cloud.shape, settings.color))
        if want_confidence:
            confidence_msg = Image(check_fields=True, header=msg.header)
            self.confidence_pub.publish(fill_image(confidence_msg, result.confidence, "32FC1", confidence_data))
        t3 = time.perf_counter()
        timings = dict(result.timings, decode=1e3 * (t1 - t0), publish=1e3 * (t3 - t2), total=1e3 * (t3 - t0),
                       latency=1e3 * (t3 - received))
        self.stats.count_processed(timings, result.cloud is not None)
        if result.confidence is not None:
            self.stats.count_confidence(result.confidence, result.masked)

    def _lr_depth(self, stamp: int) -> Any:
        """The frame's LR depth in metres, or None after counting and saying why there is none."""
        latest = self.lr_depths.latest()
        publishing = latest is not None and abs(latest[0] - stamp) < 1e9  # a silent sensor costs no wait
        msg = self.lr_depths.match(stamp, int(self.params.lr_depth_tolerance_ms * 1e6),
                                   self.params.lr_depth_wait if publishing else 0.0)
        if msg is None:
            self.stats.count_event("no_lr_depth")
            self._warn("lr_depth", f"{self.lr_topic}: no LR depth within {self.params.lr_depth_tolerance_ms} ms of "
                       f"the image ({self._without_lr})")
            return None
        try:
            return decode_depth(msg)
        except ImageDecodeError as error:
            self.stats.count_event("lr_depth_unreadable")
            self._warn("lr_depth_unreadable", f"{self.lr_topic}: {error} ({self._without_lr})")
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

    def _transport(self, received: int) -> tuple[dict[str, Any], str]:
        """Transport figures for /diagnostics and, when more than 1% of this window was lost, the warning."""
        image = self.inputs["image"]
        rate = self.rate.summary()
        values: dict[str, Any] = {}
        for name, sub in self.inputs.items():
            values[f"{name}_qos"] = sub.reliability
            values[f"{name}_lost"] = sub.lost if sub.lost_reported else "not reported by this RMW"
        values.update(camera_rate_hz=f"{rate['sent_hz']:.2f}", received_rate_hz=f"{rate['received_hz']:.2f}",
                      missing_by_stamps=rate["missing"])
        new_received, new_lost = received - self._window[0], image.lost - self._window[1]
        self._window = (received, image.lost)
        if new_lost <= LOSS_WARN_FRACTION * (new_received + new_lost):
            return values, ""
        return values, (f"{self.image_topic}: {new_lost} messages lost in transport while {new_received} arrived in "
                        f"the last {self.params.diagnostics_period:g} s (camera {rate['sent_hz']:.1f} Hz by its "
                        f"stamps, received {rate['received_hz']:.1f} Hz; subscribed {image.reliability})")

    def _publish_diagnostics(self) -> None:
        s = self.stats.summary()
        bad = sum(n for reason, n in s["dropped"].items() if reason != "stale")
        transport, loss = self._transport(s["received"])
        level = DiagnosticStatus.WARN if bad > self._reported_drops or loss else DiagnosticStatus.OK
        self._reported_drops = bad
        if loss:
            self._warn("transport", loss)
        est = self.pipeline.estimator
        values = {"backend": est.backend, "device": getattr(est, "device", ""), "received": s["received"],
                  "processed": s["processed"], "clouds": s["clouds"], "rate_hz": f"{s['rate_hz']:.2f}", **transport}
        values.update({f"dropped_{reason}": n for reason, n in s["dropped"].items()})
        values.update(s["events"])
        if s["confidence"] is not None:  # only over frames that computed one (subscribed or min_confidence set)
            values.update(confidence_mean=f"{s['confidence'][0]:.3f}",
                          min_confidence_masked=f"{s['confidence'][1]:.3f}")
        for stage, t in s["stages"].items():
            values[f"{stage}_mean_ms"] = f"{t['mean_ms']:.2f}"
            values[f"{stage}_p90_ms"] = f"{t['p90_ms']:.2f}"
        aligner = self.pipeline.aligner
        if aligner is not None and aligner.last_fit is not None:
            values.update(scale=f"{aligner.scale:.4f}", shift=f"{aligner.shift:.4f}",
                          fit_abs_rel=f"{aligner.last_fit.abs_rel:.4f}",
                          fit_inliers=f"{aligner.last_fit.inlier_fraction:.3f}", fit_pixels=aligner.last_fit.pixels)
        message = loss or (s["last_problem"] if level != DiagnosticStatus.OK else "ok")
        status = DiagnosticStatus(level=level, name=f"{self.get_fully_qualified_name()}: depth estimator",
                                  hardware_id=str(values["device"]), message=message,
                                  values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
        self.diag_pub.publish(DiagnosticArray(header=self._diag_header(), status=[status]))
        if time.monotonic() - self._last_stats_log >= LOG_STATS_PERIOD_S:
            self._last_stats_log = time.monotonic()
            total = s["stages"].get("total", {}).get("mean_ms", 0.0)
            self.get_logger().info(
                f"{s['processed']}/{s['received']} frames, {s['rate_hz']:.1f} Hz out; camera "
                f"{transport['camera_rate_hz']} Hz by stamps, received {transport['received_rate_hz']} Hz, lost in "
                f"transport {transport['image_lost']}, missing by stamps {transport['missing_by_stamps']}; "
                f"{total:.1f} ms/frame, dropped {s['dropped']}, {s['events']}")

    def _diag_header(self) -> Any:
        from std_msgs.msg import Header

        return Header(stamp=self.get_clock().now().to_msg())


def main(args: list[str] | None = None) -> int:
    """``ros2 run depth_node estimator`` / ``depth-estimator --ros-args ...``; exit code 1 on a configuration error, 0
    when stopped by SIGINT or SIGTERM (also while starting), as process managers expect."""
    log = rclpy.logging.get_logger("estimator")
    dds_profile, as_asked = apply_profile()  # before rclpy.init: Fast DDS reads it with the first participant
    (log.info if as_asked else log.warning)(f"Fast DDS profile: {dds_profile}")
    try:
        session = rclpy.init(args=args)
    except RuntimeError as error:  # rcl's argument parser, e.g. `-p model:=` (an empty value needs quotes)
        hint = ("; an empty value is written -p 'NAME:=\"\"' (an empty model, or none at all, is the default model)"
                if "parameter override rule" in str(error) else "")
        log.fatal(f"cannot start: {str(error).split('. Error:')[0]}{hint}")
        return 1
    try:
        with session:
            try:
                node = EstimatorNode()
            except (ValueError, OSError, ImportError, RuntimeError, ParameterException) as error:
                if not rclpy.ok():  # SIGINT/SIGTERM while starting: rcl refused the rest, no configuration error
                    return 0
                log.fatal(f"cannot start: {error}")
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
