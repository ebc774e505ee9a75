"""The estimator node over real rclpy + Fast DDS on this machine: outputs, geometry, latency policy and bad inputs.

A tiny random-initialised model exported to ONNX keeps inference to milliseconds; what is checked is the node, so the
node's depth is compared with the same estimator run directly on the same image.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import rclpy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2  # noqa: E402

from depth_node.depth_image import decode_depth, encode_depth  # noqa: E402
from depth_node.estimator import load_estimator  # noqa: E402
from depth_node.image_codec import fill_image  # noqa: E402
from depth_node.node import EstimatorNode, main  # noqa: E402
from depth_node.scale_align import reduce_to  # noqa: E402

DATA = Path(os.environ.get("DEPTH_NODE_DATA", Path(__file__).parents[2] / "shared" / "data"))
FRAME = "camera_color_optical_frame"
RNG = np.random.default_rng(0)
DOMAIN_ID = 43  # this module's own DDS domain (<= 101: no clash with Linux ephemeral ports)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-initialised estimator exported to ONNX at 96x128 (the node resizes any input to it)."""
    import torch
    from depth_node_training.config import load_config
    from depth_node_training.deployment.export import export_onnx
    from depth_node_training.learning.checkpoint import save_checkpoint

    from depth_node.network.factory import make_network

    out = tmp_path_factory.mktemp("model")
    cfg = load_config(None, ["model.pretrained=false", "model.input_height=96", "model.input_width=128"])
    torch.manual_seed(0)
    ckpt = save_checkpoint(out / "tiny.pt", make_network(cfg.model), cfg, 0, {"data": [], "git_rev": "test"})
    return export_onnx(str(ckpt), out / "tiny.onnx")


@pytest.fixture(scope="module")
def estimator(model: Path):
    return load_estimator(str(model), "onnxruntime")


def camera_info(h: int, w: int, stamp: int, f: float = 100.0) -> CameraInfo:
    info = CameraInfo(height=h, width=w, k=[f, 0.0, (w - 1) / 2, 0.0, f, (h - 1) / 2, 0.0, 0.0, 1.0],
                      distortion_model="plumb_bob", d=[0.0] * 5)
    info.header.frame_id = FRAME
    info.header.stamp.sec = stamp
    return info


def raw_image(image: np.ndarray, stamp: int, encoding: str = "bgr8") -> Image:
    msg = fill_image(Image(), image, encoding)
    msg.header.frame_id = FRAME
    msg.header.stamp.sec = stamp
    return msg


class Harness:
    """The estimator node plus a test node that feeds it and records its outputs, on one executor."""

    count = 0

    def __init__(self, ctx: rclpy.Context, node: EstimatorNode, compressed: bool = False, points: bool = True) -> None:
        Harness.count += 1
        self.node = node
        self.ros = rclpy.create_node(f"harness{Harness.count}", context=ctx)
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        image_type, topic = (CompressedImage, "image_raw/compressed") if compressed else (Image, "image_raw")
        self.image_pub = self.ros.create_publisher(image_type, topic, reliable)
        self.info_pub = self.ros.create_publisher(CameraInfo, "camera_info", reliable)
        self.lr_pub = self.ros.create_publisher(Image, "lr_depth", reliable)
        self.depth: dict[int, Image] = {}
        self.infos: dict[int, CameraInfo] = {}
        self.points: dict[int, PointCloud2] = {}
        self.diagnostics: list[DiagnosticArray] = []
        self.ros.create_subscription(Image, "depth/image", lambda m: self.depth.update({m.header.stamp.sec: m}), 10)
        self.ros.create_subscription(CameraInfo, "depth/camera_info",
                                     lambda m: self.infos.update({m.header.stamp.sec: m}), 10)
        self.ros.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, 10)
        if points:
            self.subscribe_points()
        self.executor = SingleThreadedExecutor(context=ctx)
        self.executor.add_node(node)
        self.executor.add_node(self.ros)
        assert self.spin_until(lambda: self.image_pub.get_subscription_count() > 0
                               and node.depth_pub.get_subscription_count() > 0), "DDS discovery did not complete"

    def subscribe_points(self) -> None:
        self.ros.create_subscription(PointCloud2, "depth/points", lambda m: self.points.update({m.header.stamp.sec: m}),
                                     10)

    def spin_until(self, done: Callable[[], bool], timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if done():
                return True
            self.executor.spin_once(timeout_sec=0.02)
        return done()

    def spin_for(self, seconds: float) -> None:
        self.spin_until(lambda: False, seconds)

    def accounted(self) -> int:
        """Frames the node has finished with, published or dropped."""
        s = self.node.stats.summary()
        return s["processed"] + sum(s["dropped"].values())

    def send(self, image_msg, info: CameraInfo | None = None, wait: bool = True) -> Image | None:
        """Publish camera_info (if any) then the image; with ``wait``, the depth image stamped like it (or None)."""
        stamp = image_msg.header.stamp.sec
        before, processed = self.accounted(), self.node.stats.processed
        if info is not None:
            self.info_pub.publish(info)
        self.image_pub.publish(image_msg)
        if not wait:
            return None
        assert self.spin_until(lambda: self.accounted() > before, timeout=5.0), f"frame {stamp} was never handled"
        if self.node.stats.processed > processed:
            self.spin_until(lambda: stamp in self.depth, timeout=5.0)
        return self.depth.get(stamp)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.close()
        self.ros.destroy_node()


@pytest.fixture
def start(context: rclpy.Context, model: Path) -> Iterator[Callable[..., Harness]]:
    harnesses: list[Harness] = []

    def make(compressed: bool = False, points: bool = True, **params) -> Harness:
        values = {"model": str(model), "backend": "onnxruntime", "image_transport": "compressed" if compressed else
                  "raw", "diagnostics_period": 0.2, **params}
        node = EstimatorNode(context=context, parameter_overrides=[Parameter(k, value=v) for k, v in values.items()])
        harnesses.append(Harness(context, node, compressed, points))
        return harnesses[-1]

    yield make
    for h in harnesses:
        h.close()


def cloud_array(msg: PointCloud2) -> np.ndarray:
    """Structured view of a PointCloud2 built from its own field list (not from the node's code)."""
    dtype = np.dtype({"names": [f.name for f in msg.fields], "formats": ["<f4" if f.name != "rgb" else "<u4"
                                                                         for f in msg.fields],
                      "offsets": [f.offset for f in msg.fields], "itemsize": msg.point_step})
    return np.frombuffer(bytes(msg.data), dtype).reshape(msg.height, msg.width)


def check_cloud_reprojects(cloud: PointCloud2, depth: np.ndarray, info: CameraInfo, decimation: int) -> None:
    points = cloud_array(cloud)
    kept = depth[::decimation, ::decimation]
    assert points.shape == kept.shape and not cloud.is_dense
    valid = np.isfinite(kept)
    np.testing.assert_array_equal(np.isnan(points["z"]), ~valid)
    assert np.isnan(points["x"][~valid]).all()
    np.testing.assert_allclose(points["z"][valid], kept[valid], rtol=1e-6)
    k = np.asarray(info.k).reshape(3, 3)
    xyz = np.stack([points["x"], points["y"], points["z"]], -1)[valid].astype(np.float64)
    uvw = xyz @ k.T
    v, u = np.mgrid[0 : kept.shape[0], 0 : kept.shape[1]] * decimation
    np.testing.assert_allclose(uvw[:, 0] / uvw[:, 2], u[valid], atol=1e-3)
    np.testing.assert_allclose(uvw[:, 1] / uvw[:, 2], v[valid], atol=1e-3)


def redkitchen(index: int) -> tuple[bytes, CameraInfo]:
    folder = DATA / "redkitchen"
    if not folder.exists():
        pytest.skip(f"real data not found at {folder} (set DEPTH_NODE_DATA)")
    k = np.loadtxt(folder / "camera-intrinsics.txt")
    info = camera_info(480, 640, index + 1)
    info.k = k.ravel().tolist()
    return (folder / f"frame-{index:06d}.color.jpg").read_bytes(), info


def test_real_jpeg_frames_give_depth_info_and_reprojecting_clouds(start, estimator) -> None:
    h = start(compressed=True, points_decimation=4)
    for index in range(3):
        jpeg, info = redkitchen(index)
        msg = CompressedImage(format="bgr8; jpeg compressed bgr8", data=jpeg)
        msg.header = info.header
        depth_msg = h.send(msg, info)
        assert depth_msg is not None, f"no depth for frame {index}"
        stamp = info.header.stamp.sec
        assert h.spin_until(lambda s=stamp: s in h.points and s in h.infos)
        assert (depth_msg.encoding, depth_msg.width, depth_msg.height) == ("32FC1", 640, 480)
        assert depth_msg.header.frame_id == FRAME and depth_msg.header.stamp == info.header.stamp
        out_info = h.infos[stamp]
        assert (out_info.width, out_info.height, list(out_info.k)) == (640, 480, list(info.k))
        assert out_info.header == depth_msg.header
        depth = decode_depth(depth_msg)
        bgr = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        expect = encode_depth(estimator.infer(bgr, "bgr8")[0], "32FC1", estimator.min_depth, estimator.max_depth)
        np.testing.assert_allclose(depth, expect, rtol=1e-5)
        cloud = h.points[stamp]
        assert [f.name for f in cloud.fields] == ["x", "y", "z", "rgb"] and cloud.header == depth_msg.header
        check_cloud_reprojects(cloud, depth, out_info, 4)
        rgb = cloud_array(cloud)["rgb"]
        np.testing.assert_array_equal(rgb & 0xFFFFFF, (bgr[::4, ::4, 2].astype(np.uint32) << 16)
                                      | (bgr[::4, ::4, 1].astype(np.uint32) << 8) | bgr[::4, ::4, 0])


def test_out_of_range_depth_is_nan_or_zero_and_parameters_apply_at_run_time(start, estimator) -> None:
    h = start(points_decimation=1, points_color=False)
    image = RNG.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    pred = estimator.infer(image, "bgr8")[0]
    limit = float(np.median(pred))
    ok = h.node.set_parameters([Parameter("max_depth", value=limit)])[0]
    assert ok.successful
    depth = decode_depth(h.send(raw_image(image, 1), camera_info(60, 80, 1)))
    np.testing.assert_array_equal(np.isnan(depth), ~(pred <= limit))
    assert 0.2 < np.isnan(depth).mean() < 0.8
    assert h.spin_until(lambda: 1 in h.points)
    assert [f.name for f in h.points[1].fields] == ["x", "y", "z"] and h.points[1].point_step == 12
    check_cloud_reprojects(h.points[1], depth, camera_info(60, 80, 1), 1)

    assert h.node.set_parameters([Parameter("output_encoding", value="16UC1")])[0].successful
    msg = h.send(raw_image(image, 2), camera_info(60, 80, 2))
    assert msg.encoding == "16UC1" and msg.step == 160
    mm = np.frombuffer(bytes(msg.data), np.uint16).reshape(60, 80)
    np.testing.assert_array_equal(mm == 0, ~(pred <= limit))
    refused = h.node.set_parameters([Parameter("output_encoding", value="8UC1")])[0]
    assert not refused.successful and "32FC1, 16UC1" in refused.reason
    refused = h.node.set_parameters([Parameter("qos.output_depth", value=9)])[0]
    assert not refused.successful and "read-only" in refused.reason


def test_burst_processes_the_newest_frame_and_counts_the_stale_ones(start) -> None:
    h = start()
    image = RNG.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    for stamp in range(1, 13):  # published faster than anything is processed: the executor is not spinning
        h.send(raw_image(image, stamp), camera_info(240, 320, stamp), wait=False)
    assert h.spin_until(lambda: 12 in h.depth), "the newest frame was not processed"
    h.spin_for(0.3)
    s = h.node.stats.summary()
    assert s["dropped"].get("stale", 0) >= 1
    assert s["received"] == s["processed"] + s["dropped"]["stale"]
    assert len(h.depth) == s["processed"] < 12
    assert sorted(h.depth) == list(h.depth)  # outputs in stamp order, none re-ordered
    assert h.spin_until(lambda: any(v.key == "dropped_stale" for d in h.diagnostics for st in d.status
                                    for v in st.values))


def test_bad_inputs_are_named_counted_throttled_and_survived(start, capfd) -> None:
    h = start(camera_info_wait=0.3)
    good = RNG.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    assert h.send(raw_image(good, 1), camera_info(60, 80, 1)) is not None
    for stamp in (2, 3, 4):  # a depth image on the colour topic, three times
        bad = fill_image(Image(), np.ones((60, 80), np.float32), "32FC1")
        bad.header.stamp.sec = stamp
        assert h.send(bad, camera_info(60, 80, stamp)) is None
    h.info_pub.publish(camera_info(120, 160, 6))  # camera_info of another size, here before its image
    assert h.spin_until(lambda: h.node.infos.latest().width == 160)
    assert h.send(raw_image(good, 6)) is None
    small = RNG.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    resized = h.send(raw_image(small, 7), camera_info(30, 40, 7))  # size change mid-stream: followed
    assert resized is not None and (resized.width, resized.height) == (40, 30)
    assert h.send(raw_image(good, 8)) is None  # no camera_info for it, and the last ones were of other sizes
    assert h.send(raw_image(good, 9), camera_info(60, 80, 9)) is not None  # and the node still works
    dropped = h.node.stats.summary()["dropped"]
    assert dropped == {"decode": 3, "no_camera_info": 1, "camera_info_mismatch": 1}
    assert h.spin_until(lambda: any(st.level == DiagnosticStatus.WARN for d in h.diagnostics for st in d.status))
    err = capfd.readouterr().err
    assert err.count("'32FC1' cannot be converted to colour") + err.count("is not a colour image") == 1  # throttled
    assert ("no camera_info within 1.0 ms of image stamp 8.000 (none arrived within 0.30 s) and no earlier one of "
            "this 80x60 camera to reuse (the last one received is 40x30, stamp 7.000)") in err
    assert "camera_info is 160x120 but the image is 80x60" in err
    assert "image size changed from 80x60 to 40x30" in err
    assert "Traceback" not in err


def test_late_camera_info_is_stood_in_for_and_never_holds_up_newer_frames(start, capfd) -> None:
    h = start()
    image = RNG.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    assert h.send(raw_image(image, 1), camera_info(60, 80, 1)) is not None
    started = time.monotonic()
    late = h.send(raw_image(image, 2))  # its camera_info is late: the steady camera's last one stands in, no wait
    assert late is not None and time.monotonic() - started < 0.5
    assert h.spin_until(lambda: 2 in h.infos) and list(h.infos[2].k) == list(camera_info(60, 80, 1).k)
    assert h.node.stats.summary()["events"] == {"camera_info_reused": 1}
    h.info_pub.publish(camera_info(60, 80, 3, f=200.0))  # the camera model changes (e.g. a new calibration) ...
    assert h.spin_until(lambda: h.node.infos.latest().k[0] == 200.0)
    assert h.send(raw_image(image, 3)) is not None  # ... and its own frame matches it
    assert h.node.stats.summary()["events"] == {"camera_info_reused": 1}
    # just after a change, a frame without its own camera_info waits for it; a newer frame cuts that wait short
    h.send(raw_image(image, 4), wait=False)
    h.send(raw_image(image, 5), camera_info(60, 80, 5, f=200.0), wait=False)
    assert h.spin_until(lambda: 5 in h.depth, timeout=5.0)
    # 4 waited and gave up, or was replaced by 5, or (under load) was handled once 5's camera_info had shown the model
    # steady again, standing in for its own: never lost silently, never holding up 5
    summary = h.node.stats.summary()
    assert summary["dropped"] in ({"no_camera_info": 1}, {"stale": 1}, {})
    if not summary["dropped"]:
        assert h.spin_until(lambda: 4 in h.depth) and summary["events"] == {"camera_info_reused": 2}
    assert "Traceback" not in capfd.readouterr().err


def test_uncalibrated_camera_gets_depth_but_no_cloud(start, capfd) -> None:
    h = start()
    image = RNG.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    uncalibrated = CameraInfo(height=60, width=80)  # all-zero K: usb_cam without a calibration file
    for stamp in (1, 2):
        uncalibrated.header.stamp.sec = stamp
        assert h.send(raw_image(image, stamp), uncalibrated) is not None
    assert h.spin_until(lambda: 2 in h.infos) and not any(h.infos[2].k)
    h.spin_for(0.3)
    assert not h.points and h.node.stats.summary()["events"] == {"points_skipped_uncalibrated": 2}
    assert h.node.stats.summary()["dropped"] == {}
    err = capfd.readouterr().err
    assert err.count("depth/points skipped (depth/image is still published); calibrate the camera") == 1


def test_corrupt_compressed_frame_is_skipped(start, capfd) -> None:
    h = start(compressed=True)
    good = cv2.imencode(".jpg", RNG.integers(0, 256, (48, 64, 3), dtype=np.uint8))[1].tobytes()
    results = []
    for stamp, data in ((1, b"not a jpeg"), (2, good[:40]), (3, good)):
        msg = CompressedImage(format="jpeg", data=data)
        msg.header.stamp.sec = stamp
        results.append(h.send(msg, camera_info(48, 64, stamp)))
    assert results[0] is None and results[1] is None and results[2].width == 64
    assert h.node.stats.summary()["dropped"] == {"decode": 2}
    err = capfd.readouterr().err
    assert "corrupt compressed image: 10 bytes of format 'jpeg' do not decode" in err and "Traceback" not in err


def test_cloud_is_computed_only_while_subscribed(start) -> None:
    h = start(points=False)
    image = RNG.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    assert h.send(raw_image(image, 1), camera_info(60, 80, 1)) is not None
    assert h.node.stats.clouds == 0
    h.subscribe_points()
    assert h.spin_until(lambda: h.node.points_pub.get_subscription_count() > 0)
    assert h.send(raw_image(image, 2), camera_info(60, 80, 2)) is not None
    assert h.spin_until(lambda: 2 in h.points) and h.node.stats.clouds == 1


def test_scale_alignment_to_a_live_lr_depth(start, estimator) -> None:
    h = start(**{"scale_align.enabled": True, "scale_align.smoothing": 0.0})
    image = RNG.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    pred = estimator.infer(image, "bgr8")[0]
    lr = fill_image(Image(), 2.0 * reduce_to(pred, (30, 40)), "32FC1")
    lr.header.stamp.sec = 1
    h.lr_pub.publish(lr)
    assert h.spin_until(lambda: h.node.lr_depths.latest() is not None)
    depth = decode_depth(h.send(raw_image(image, 1), camera_info(120, 160, 1)))
    np.testing.assert_allclose(depth, 2.0 * pred, rtol=1e-3)
    fit = h.node.pipeline.aligner.last_fit
    assert fit.ok and fit.abs_rel < 1e-3
    assert h.spin_until(lambda: any(v.key == "scale" and v.value.startswith("2.00") for d in h.diagnostics
                                    for st in d.status for v in st.values))


def test_sample_log_frames(start, tmp_path: Path) -> None:
    from depth_node_training.logs.bag_reader import detect_topics, open_bag
    from depth_node_training.logs.sample_bag import write_sample_bag
    from rclpy.serialization import deserialize_message

    bag = write_sample_bag(tmp_path / "log", frames=4)
    with open_bag(bag) as reader:
        topics = detect_topics(reader, bag)
        compressed = reader.topics[topics.color].msgtype.endswith("CompressedImage")
        wanted = [c for c in reader.connections if c.topic in (topics.color, topics.color_info)]
        messages = [(c.topic, raw) for c, _, raw in reader.messages(connections=wanted)]
    h = start(compressed=compressed, points_decimation=2)
    infos = {}
    for topic, raw in messages:
        if topic == topics.color_info:
            info = deserialize_message(raw, CameraInfo)
            infos[(info.header.stamp.sec, info.header.stamp.nanosec)] = info
    images = [deserialize_message(raw, CompressedImage if compressed else Image) for topic, raw in messages
              if topic == topics.color]
    for sent, msg in enumerate(images, start=1):
        info = infos[(msg.header.stamp.sec, msg.header.stamp.nanosec)]  # the log stamps them alike
        msg.header.stamp.sec, msg.header.stamp.nanosec = sent, 0  # renumbered so the harness can key by seconds
        info.header.stamp = msg.header.stamp
        depth_msg = h.send(msg, info)
        assert depth_msg is not None and depth_msg.header.frame_id == msg.header.frame_id
        assert (depth_msg.width, depth_msg.height) == (info.width, info.height)
        assert h.spin_until(lambda s=sent: s in h.points)
        check_cloud_reprojects(h.points[sent], decode_depth(depth_msg), info, 2)
    assert len(images) == 4


def test_bad_model_files_refuse_to_start_or_to_switch(start, tmp_path: Path, capfd, monkeypatch) -> None:
    monkeypatch.setenv("ROS_DOMAIN_ID", str(DOMAIN_ID))  # main() uses the default context
    # main() would give this whole test process the node's Fast DDS profile (test_dds_profile.py tests that); the
    # other tests' in-process nodes keep Fast DDS's defaults, as test_node_camera_process's transport-loss test needs
    monkeypatch.setenv("DEPTH_NODE_DDS_PROFILE", "")
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint\n")
    missing = tmp_path / "none.onnx"
    for args, expect in (([f"model:={missing}"], f"cannot start: {missing}: does not exist"),
                         ([f"model:={text}"], f"cannot start: {text}: is not a PyTorch checkpoint"),
                         (["model:="], "an empty value is written -p 'NAME:=\"\"'"),
                         (["min_depth:=20.0"], "min_depth 20.0 m is outside the model's range 0.1..10.0")):
        assert main(["estimator", "--ros-args", *[a for arg in args for a in ("-p", arg)]]) == 1
        err = capfd.readouterr().err
        assert expect in err and "Traceback" not in err
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07this is not a model")
    h = start()
    before = h.node.pipeline.estimator
    refused = h.node.set_parameters([Parameter("model", value=str(garbage))])[0]
    assert not refused.successful
    assert refused.reason.startswith(f"cannot load the estimator: {garbage}: is not a readable ONNX model")
    assert h.node.pipeline.estimator is before and h.node.params.model != str(garbage)
    refused = h.node.set_parameters([Parameter("min_depth", value=20.0)])[0]
    assert not refused.successful and "outside the model's range 0.1..10.0 m" in refused.reason
    refused = h.node.set_parameters([Parameter("input_width", value=160)])[0]  # taken alone, with the model's 96
    assert not refused.successful and "fixed input size 96x128; it cannot run at 96x160" in refused.reason
    image = RNG.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    assert h.send(raw_image(image, 1), camera_info(60, 80, 1)) is not None


def test_input_size_out_of_bounds_is_refused_at_run_time(start, model: Path) -> None:
    h = start(model=str(model.with_suffix(".pt")), backend="torch")  # a checkpoint on PyTorch runs at any size
    before = h.node.pipeline.estimator
    for name, value, reason in (("input_width", 8192, "input_width out of range. Min: 0, Max: 4096, value: 8192"),
                                ("input_height", 16, "input_height 16 is below 32, the network's stride")):
        refused = h.node.set_parameters([Parameter(name, value=value)])[0]
        assert not refused.successful and reason in refused.reason
    assert h.node.pipeline.estimator is before and (h.node.params.input_height, h.node.params.input_width) == (0, 0)
    image = RNG.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    assert h.send(raw_image(image, 1), camera_info(60, 80, 1)) is not None  # still running on the old estimator
    limits = [Parameter("input_height", value=32), Parameter("input_width", value=4096)]
    assert h.node.set_parameters_atomically(limits).successful  # the limits themselves are accepted
    assert h.node.pipeline.estimator.input_size == (32, 4096)
    depth = h.send(raw_image(image, 2), camera_info(60, 80, 2))
    assert depth is not None and (depth.height, depth.width) == (60, 80)


def test_scale_alignment_survives_impossible_lr_depth(start, estimator, capfd) -> None:
    h = start(**{"scale_align.enabled": True, "scale_align.smoothing": 0.0})
    image = RNG.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    pred = estimator.infer(image, "bgr8")[0]

    def send_with_lr(stamp: int, lr: Image) -> np.ndarray:
        lr.header.stamp.sec = stamp
        h.lr_pub.publish(lr)
        assert h.spin_until(lambda: (h.node.lr_depths.latest() or (0,))[0] == stamp * 1_000_000_000)
        msg = h.send(raw_image(image, stamp), camera_info(120, 160, stamp))
        assert msg is not None, f"no depth for frame {stamp}"
        return decode_depth(msg)

    np.testing.assert_allclose(send_with_lr(1, fill_image(Image(), 2.0 * reduce_to(pred, (30, 40)), "32FC1")),
                               2.0 * pred, rtol=1e-3)
    no_return = fill_image(Image(), np.full((30, 40), 65535, np.uint16), "16UC1")  # 16UC1 "no reading"
    huge = fill_image(Image(), np.full((30, 40), 1e30, np.float32), "32FC1")
    other_aspect = fill_image(Image(), np.full((30, 30), 2000, np.uint16), "16UC1")  # an unregistered ToF
    for stamp, lr in ((2, no_return), (3, huge), (4, other_aspect)):
        np.testing.assert_allclose(send_with_lr(stamp, lr), 2.0 * pred, rtol=1e-3)  # still published, scale kept
    assert h.node.pipeline.aligner.scale == pytest.approx(2.0, rel=1e-3)
    s = h.node.stats.summary()
    assert s["events"] == {"align_skipped": 3} and s["dropped"] == {}
    err = capfd.readouterr().err
    assert "scale alignment skipped for this frame: only 0 of 1200 LR readings are within 0.05..20.0 m" in err
    assert "Traceback" not in err
