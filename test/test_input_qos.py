"""Input QoS choice and the camera-rate-from-stamps estimate, without ROS traffic."""

from __future__ import annotations

import pytest

from depth_node.frame_pipeline import StampRate
from depth_node.input_qos import choose_reliability


def test_auto_follows_the_publishers_like_rosbag2() -> None:
    assert choose_reliability([], None)[0] == "reliable"  # nobody yet: what drivers offer by default
    assert choose_reliability(["reliable", "reliable"], "best_effort") == ("reliable",
                                                                          "all 2 publisher(s) offer reliable")
    assert choose_reliability(["reliable", "best_effort"], "reliable") == (
        "best_effort", "1 of 2 publisher(s) offer best_effort")
    assert choose_reliability([], "best_effort")[0] == "best_effort"  # a publisher leaving changes nothing


def test_camera_rate_and_missing_frames_from_stamps() -> None:
    rate = StampRate()
    period = 33_333_333  # a 30 Hz camera ...
    kept = [i for i in range(90) if i % 5 not in (1, 2, 3)]  # ... of which 3 in 5 frames never arrive
    for i in kept:
        rate.add(i * period, i * period / 1e9)
    s = rate.summary()
    assert s["sent_hz"] == pytest.approx(30.0, rel=1e-3)
    assert s["missing"] == kept[-1] - kept[0] + 1 - len(kept)  # every frame between the first and last received
    assert s["received_hz"] == pytest.approx(35 / (89 / 30), rel=1e-6)  # "the camera sent 30 Hz, I got 12 Hz"
    rate.add(kept[-1] * period + 5_000_000_000, 20.0)  # a 5 s pause is a restart, not 150 lost frames
    assert rate.summary()["missing"] == s["missing"]
