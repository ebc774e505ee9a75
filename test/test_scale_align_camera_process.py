"""Scale alignment as the launch file's ``lr_depth:=TOPIC`` sets it up: the shipped model, the node on its defaults
but ``scale_align.enabled``, the camera and its time-of-flight sensor in a separate process (``camera_driver.py``);
what the node publishes agrees with the sensor's metres, here 25% further than the image alone says."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from camera_driver import lr_depth_mm
from test_node_camera_process import Running, serve

from depth_node.depth_image import decode_depth
from depth_node.scale_align import reduce_to

DOMAIN_ID = 51  # this module's own DDS domain (<= 101: no clash with Linux ephemeral ports)
LR_SCALE = 1.25  # the sensor reads the scene 25% further than the frame's own depth


@pytest.fixture(scope="module")
def running() -> Iterator[Running]:
    yield from serve(DOMAIN_ID, {"scale_align.enabled": True})


def test_the_published_depth_takes_the_scale_of_the_sensor_beside_the_camera(running: Running) -> None:
    sent = running.camera("--reliability", "reliable", "--rate", "2", "--frames", "8", "--lr-depth", "--lr-scale",
                          str(LR_SCALE))
    running.settle(sent)
    answered = running.answered & set(sent)
    assert len(answered) >= 0.95 * len(sent), f"{len(answered)} of {len(sent)} answered: {running.node.stats.summary()}"
    events = running.node.stats.summary()["events"]
    assert events.get("no_lr_depth", 0) <= len(sent) // 4 and "align_skipped" not in events, events
    aligner = running.node.pipeline.aligner
    assert aligner.fits >= len(answered) - events.get("no_lr_depth", 0)
    lr = lr_depth_mm(160, 120, LR_SCALE).astype(np.float32) / 1000.0  # what the sensor sent, metres; 0: no reading
    published = reduce_to(decode_depth(running.last_depth), lr.shape)
    valid = lr > 0
    ratio = np.median(lr[valid] / published[valid])
    assert abs(ratio - 1.0) < 0.02, f"published depth is {ratio:.3f}x off the sensor's scale (aligner {aligner.scale})"
    assert aligner.scale > 1.15  # the model alone was 25% off (give or take its own error): alignment made them agree
    last = running.diagnostics[-1]
    assert float(last["scale"]) == pytest.approx(aligner.scale, rel=1e-3) and float(last["fit_inliers"]) > 0.5
