"""The confidence sharpened by a live LR depth as a user runs it: the shipped model, the node on its defaults but
``confidence.use_lr_depth``, the camera and its time-of-flight sensor in a separate process (``camera_driver.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from test_node_camera_process import Running, serve

DOMAIN_ID = 49  # this module's own DDS domain (<= 101: no clash with Linux ephemeral ports)


@pytest.fixture(scope="module")
def running() -> Iterator[Running]:
    yield from serve(DOMAIN_ID, {"confidence.use_lr_depth": True})


def test_every_frame_gets_a_confidence_sharpened_by_the_sensor_beside_the_camera(running: Running) -> None:
    assert running.node.pipeline.estimator.sensor_stage is not None  # the shipped model is calibrated with it
    sent = running.camera("--reliability", "reliable", "--rate", "2", "--frames", "12", "--lr-depth")
    running.settle(sent)
    answered = running.answered & set(sent)
    assert len(answered) >= 0.95 * len(sent), f"{len(answered)} of {len(sent)} answered: {running.node.stats.summary()}"
    assert answered <= set(running.confidences)  # a confidence with every depth image, stamped alike
    events = running.node.stats.summary()["events"]
    # the sensor's message comes just after its image: the node looks it up after inference (none missed in our
    # runs); a frame that still misses it keeps the image-only confidence and is counted as such
    assert events.get("confidence_image_only", 0) == events.get("no_lr_depth", 0) <= len(sent) // 6, events
    assert running.node.inputs["lr_depth"].reliability == "reliable" and running.node.inputs["lr_depth"].lost == 0
    confidence = np.frombuffer(bytes(running.confidences[max(answered)].data), np.float32)
    assert ((confidence >= 0) & (confidence <= 1)).all() and confidence.std() > 0
    assert float(running.diagnostics[-1]["confidence_mean"]) > 0
