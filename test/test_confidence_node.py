"""depth/confidence and min_confidence over real rclpy + Fast DDS: published only while subscribed, same header and
size as depth/image, masking in depth (32FC1 and 16UC1) and cloud, diagnostics, and refusal without a confidence."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import rclpy  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from test_node import Harness, camera_info, check_cloud_reprojects, cloud_array, raw_image  # noqa: E402

from depth_node.depth_image import decode_depth  # noqa: E402
from depth_node.estimator import load_estimator  # noqa: E402
from depth_node.image_codec import fill_image  # noqa: E402
from depth_node.node import EstimatorNode  # noqa: E402
from depth_node.scale_align import reduce_to  # noqa: E402
from depth_node.sensor_confidence import SensorStage, sharpen  # noqa: E402

DOMAIN_ID = 53  # this module's own DDS domain (<= 101: no clash with Linux ephemeral ports)
RNG = np.random.default_rng(1)


STAGE = SensorStage((0.5, -1.0), -3.0, 3)  # a live LR depth stage of the order calibrate-confidence fits
# A random EfficientNet-Lite0 is wrong everywhere by region, which a live LR depth sees and the image alone hardly
# does: the tests that rank its confidence use it (a random FastDepth is too smooth for that contrast)
EFFICIENTNET = ("model.arch=efficientnet_lite0", "model.mean=[0.5,0.5,0.5]", "model.std=[0.5,0.5,0.5]")


def tiny_checkpoint(out: Path, calibrated: bool, stage: SensorStage | None = None,
                    network: tuple[str, ...] = ()) -> Path:
    """A random-initialised estimator at 96x128 (the default network, or the ``network`` overrides), with a confidence
    calibration beside it when asked (and ``stage``)."""
    import torch
    from depth_node_training.config import load_config
    from depth_node_training.learning.checkpoint import save_checkpoint

    from depth_node.network.confidence_head import Calibration, calibration_path
    from depth_node.network.factory import make_network

    cfg = load_config(None, ["model.pretrained=false", "model.input_height=96", "model.input_width=128", *network])
    torch.manual_seed(0)
    ckpt = save_checkpoint(out / "tiny.pt", make_network(cfg.model), cfg, 0, {"data": [], "git_rev": "test"})
    if calibrated:  # weights of the order `calibrate-confidence` fits on the shipped model
        calibration = Calibration(("disagreement", "edge"), (-0.7, -0.46), -2.4, 0.1, "test", lr_depth=stage)
        calibration_path(ckpt).write_text(calibration.to_json())
    return ckpt


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from depth_node_training.deployment.export import export_onnx

    paths = {}
    for name, calibrated, stage in (("calibrated", True, None), ("plain", False, None), ("sensor", True, STAGE)):
        out = tmp_path_factory.mktemp(name)
        paths[name] = export_onnx(str(tiny_checkpoint(out, calibrated, stage)), out / "tiny.onnx")
    return paths


@pytest.fixture
def start(context: rclpy.Context, models: dict[str, Path]) -> Iterator[Callable[..., Harness]]:
    harnesses: list[Harness] = []

    def make(model: str = "calibrated", **params) -> Harness:
        values = {"model": str(models[model]), "backend": "onnxruntime", "diagnostics_period": 0.2, **params}
        node = EstimatorNode(context=context, parameter_overrides=[Parameter(k, value=v) for k, v in values.items()])
        harnesses.append(Harness(context, node))
        return harnesses[-1]

    yield make
    for h in harnesses:
        h.close()


def diagnostic(h: Harness, key: str) -> str | None:
    values = [v.value for d in h.diagnostics for st in d.status for v in st.values if v.key == key]
    return values[-1] if values else None


def test_confidence_is_published_only_while_subscribed_with_the_depth_header(start, models) -> None:
    h = start()
    image = RNG.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    assert h.send(raw_image(image, 1), camera_info(60, 80, 1)) is not None
    assert h.node.stats.summary()["confidence"] is None  # nobody subscribed: not computed

    confidences: dict[int, Image] = {}
    h.ros.create_subscription(Image, "depth/confidence", lambda m: confidences.update({m.header.stamp.sec: m}), 10)
    assert h.spin_until(lambda: h.node.confidence_pub.get_subscription_count() > 0)
    depth_msg = h.send(raw_image(image, 2), camera_info(60, 80, 2))
    assert h.spin_until(lambda: 2 in confidences)
    msg = confidences[2]
    assert (msg.encoding, msg.width, msg.height, msg.step) == ("32FC1", 80, 60, 320)
    assert msg.header == depth_msg.header
    confidence = np.frombuffer(bytes(msg.data), np.float32).reshape(60, 80)
    assert ((confidence >= 0) & (confidence <= 1)).all() and confidence.std() > 0
    _, expect, _ = load_estimator(str(models["calibrated"]), "onnxruntime").infer_with_confidence(image, "bgr8")
    np.testing.assert_allclose(confidence, expect, rtol=1e-5, atol=1e-6)
    assert h.spin_until(lambda: diagnostic(h, "confidence_mean") is not None)
    assert float(diagnostic(h, "confidence_mean")) == pytest.approx(float(expect.mean()), abs=1e-3)
    assert 1 not in confidences


def test_min_confidence_masks_depth_and_points(start, models) -> None:
    h = start(points_decimation=1, points_color=False)
    image = RNG.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    estimator = load_estimator(str(models["calibrated"]), "onnxruntime")
    pred, confidence, _ = estimator.infer_with_confidence(image, "bgr8")
    limit = float(np.median(confidence))
    unsure = confidence < limit
    assert h.node.set_parameters([Parameter("min_confidence", value=limit)])[0].successful

    depth = decode_depth(h.send(raw_image(image, 1), camera_info(60, 80, 1)))
    np.testing.assert_array_equal(np.isnan(depth), unsure)
    np.testing.assert_allclose(depth[~unsure], pred[~unsure], rtol=1e-5)
    assert h.spin_until(lambda: 1 in h.points)
    check_cloud_reprojects(h.points[1], depth, camera_info(60, 80, 1), 1)
    assert np.isnan(cloud_array(h.points[1])["z"][unsure]).all()
    assert h.spin_until(lambda: diagnostic(h, "min_confidence_masked") is not None)
    assert float(diagnostic(h, "min_confidence_masked")) == pytest.approx(unsure.mean(), abs=1e-3)

    assert h.node.set_parameters([Parameter("output_encoding", value="16UC1")])[0].successful
    msg = h.send(raw_image(image, 2), camera_info(60, 80, 2))
    mm = np.frombuffer(bytes(msg.data), np.uint16).reshape(60, 80)
    np.testing.assert_array_equal(mm == 0, unsure)


def test_min_confidence_needs_a_model_with_confidence(start, context, models) -> None:
    h = start(model="plain")
    refused = h.node.set_parameters([Parameter("min_confidence", value=0.5)])[0]
    assert not refused.successful and "needs a model with a confidence output" in refused.reason
    image = RNG.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    assert h.send(raw_image(image, 1), camera_info(60, 80, 1)) is not None  # depth as before
    with pytest.raises(ValueError, match="min_confidence 0.5 needs a model with a confidence output"):
        EstimatorNode(context=context, parameter_overrides=[Parameter("model", value=str(models["plain"])),
                                                            Parameter("backend", value="onnxruntime"),
                                                            Parameter("min_confidence", value=0.5)])


def test_confidence_sharpened_by_a_live_lr_depth(start, models, capfd) -> None:
    h = start(model="sensor", **{"confidence.use_lr_depth": True})
    confidences: dict[int, Image] = {}
    h.ros.create_subscription(Image, "depth/confidence", lambda m: confidences.update({m.header.stamp.sec: m}), 10)
    assert h.spin_until(lambda: h.node.confidence_pub.get_subscription_count() > 0)
    image = RNG.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    pred, own, _ = load_estimator(str(models["sensor"]), "onnxruntime").infer_with_confidence(image, "bgr8")
    lr = reduce_to(pred, (15, 20))
    lr[:, :10] *= 1.5  # the sensor disagrees by 50% on the left half
    lr[0, 19] = np.nan  # and has no reading in one footprint

    def received(stamp: int) -> np.ndarray:
        assert h.send(raw_image(image, stamp), camera_info(60, 80, stamp)) is not None
        assert h.spin_until(lambda: stamp in confidences)
        return np.frombuffer(bytes(confidences[stamp].data), np.float32).reshape(60, 80)

    lr_msg = fill_image(Image(), lr, "32FC1")
    lr_msg.header.stamp.sec = 1
    h.lr_pub.publish(lr_msg)
    assert h.spin_until(lambda: h.node.lr_depths.latest() is not None)
    confidence = received(1)
    expect = sharpen(own, pred, np.nan_to_num(lr), (0.05, 20.0), STAGE)
    np.testing.assert_allclose(confidence, expect, rtol=1e-4, atol=1e-5)
    assert confidence[:, :30].mean() < confidence[:, 50:].mean() - 0.1  # left: the sensor says it is wrong
    assert not np.allclose(confidence, own, atol=1e-3)

    limit = float(np.median(expect))  # min_confidence masks with the sharpened values
    assert h.node.set_parameters([Parameter("min_confidence", value=limit)])[0].successful
    lr_msg.header.stamp.sec = 2
    h.lr_pub.publish(lr_msg)
    assert h.spin_until(lambda: (h.node.lr_depths.latest() or (0,))[0] == 2_000_000_000)
    depth = decode_depth(h.send(raw_image(image, 2), camera_info(60, 80, 2)))
    np.testing.assert_array_equal(np.isnan(depth), expect < limit)
    assert h.node.set_parameters([Parameter("min_confidence", value=0.0)])[0].successful

    np.testing.assert_allclose(received(5), own, rtol=1e-5, atol=1e-6)  # no LR depth near stamp 5: image-only
    events = h.node.stats.summary()["events"]
    assert events == {"no_lr_depth": 1, "confidence_image_only": 1}
    assert "lr_depth: no LR depth within 50.0 ms of the image (confidence image-only)" in capfd.readouterr().err

    unregistered = fill_image(Image(), np.full((15, 15), 2.0, np.float32), "32FC1")  # another aspect ratio
    undecodable = fill_image(Image(), np.full((15, 20), 7, np.uint8), "mono8")  # not a depth encoding
    for stamp, bad in ((7, unregistered), (8, undecodable)):
        bad.header.stamp.sec = stamp
        h.lr_pub.publish(bad)
        assert h.spin_until(lambda s=stamp: (h.node.lr_depths.latest() or (0,))[0] == s * 1_000_000_000)
        np.testing.assert_allclose(received(stamp), own, rtol=1e-5, atol=1e-6)  # published, image-only
    events = h.node.stats.summary()["events"]
    assert events == {"no_lr_depth": 1, "confidence_image_only": 3, "lr_depth_unreadable": 1}
    err = capfd.readouterr().err
    assert "confidence not sharpened by the LR depth for this frame: LR depth 15x15 does not have the image's" in err
    assert "unsupported depth encoding 'mono8'" in err and "Traceback" not in err


def test_use_lr_depth_needs_a_model_with_the_stage(context, models) -> None:
    with pytest.raises(ValueError, match="confidence.use_lr_depth needs a model whose confidence calibration has a "
                       "live LR depth stage"):
        EstimatorNode(context=context, parameter_overrides=[Parameter("model", value=str(models["calibrated"])),
                                                            Parameter("backend", value="onnxruntime"),
                                                            Parameter("confidence.use_lr_depth", value=True)])
