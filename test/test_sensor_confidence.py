"""The confidence sharpened by a live LR depth (depth_node.sensor_confidence) against hand-computed values."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from depth_node.sensor_confidence import (
    EPS,
    SensorStage,
    combine,
    log_disagreement,
    sensor_stage,
    sharpen,
    upsample,
)

RANGE = (0.05, 20.0)


def test_disagreement_is_relative_per_footprint_and_averaged_over_readings_only() -> None:
    depth = np.full((4, 4), 2.0, np.float32)
    depth[:2, 2:] = 4.0  # the top-right footprint's prediction is 4 m
    lr = np.array([[2.0, 2.0], [np.nan, 30.0]], np.float32)  # no reading; out of range
    alone = log_disagreement(depth, lr, RANGE, window=1)
    np.testing.assert_allclose(alone[0], np.log([EPS, 1.0 + EPS]), atol=1e-6)  # |4 - 2| / 2 = 1
    assert np.isnan(alone[1]).all()
    pooled = log_disagreement(depth, lr, RANGE, window=3)  # every footprint sees the two readings
    np.testing.assert_allclose(pooled, np.log(0.5 + EPS), atol=1e-6)


def test_upsampling_counts_only_footprints_with_a_value() -> None:
    up = upsample(np.array([[1.0, np.nan]], np.float32), (1, 4))
    np.testing.assert_allclose(up[0, :3], 1.0)  # the third pixel mixes in the hole: only the real value counts
    assert np.isnan(up[0, 3])  # nothing but the hole within reach
    np.testing.assert_allclose(upsample(np.array([[1.0, 3.0]], np.float32), (1, 4)), [[1.0, 1.5, 2.5, 3.0]])


def test_combination_is_the_calibrated_logistic_and_keeps_the_model_where_there_is_no_reading() -> None:
    stage = SensorStage((1.0, -1.0), 0.0)
    out = combine(np.array([0.5, 0.5, 0.8], np.float32), np.array([math.log(0.1), math.log(10.0), np.nan]), stage)
    np.testing.assert_allclose(out, [1 / 1.1, 1 / 11, 0.8], rtol=1e-6)  # sigmoid(+-log 10), kept


def test_sharpen_lowers_the_confidence_where_the_sensor_disagrees() -> None:
    depth = np.full((8, 8), 2.0, np.float32)
    lr = np.full((2, 2), 2.0, np.float32)
    lr[:, 1] = 3.0  # the right half is off by |2 - 3| / 3
    stage = SensorStage((1.0, -1.0), -3.0, window=1)
    out = sharpen(np.full((8, 8), 0.7, np.float32), depth, lr, RANGE, stage)
    logit = math.log(0.7 / 0.3) - 3.0
    np.testing.assert_allclose(out[:, :2], 1 / (1 + math.exp(-(logit - math.log(EPS)))), rtol=1e-5)  # agrees
    np.testing.assert_allclose(out[:, 6:], 1 / (1 + math.exp(-(logit - math.log(1 / 3 + EPS)))), rtol=1e-5)
    assert out[0, 6] < 0.3 < 0.99 < out[0, 0] and out.dtype == np.float32 and ((out >= 0) & (out <= 1)).all()


def test_stage_round_trips_through_the_export_metadata() -> None:
    stage = SensorStage((0.25, -1.5), -2.0, 5, 1000)
    meta = {"confidence": json.dumps({"features": ["edge"], "lr_depth": stage.to_dict()})}
    assert sensor_stage(meta) == stage
    assert sensor_stage({"confidence": json.dumps({"features": ["edge"], "lr_depth": None})}) is None
    assert sensor_stage({}) is None
    with pytest.raises(ValueError, match="need two weights"):
        SensorStage.from_dict({"weights": [1.0], "bias": 0.0})


def test_a_sensor_of_another_resolution_non_integer_factor() -> None:
    depth = np.full((60, 80), 2.0, np.float32)  # a 18x24 sensor: 3.33 image pixels per reading
    lr = np.full((18, 24), 2.0, np.float32)
    lr[:, 12:] = 2.5  # its right half reads 20% further
    out = sharpen(np.full((60, 80), 0.7, np.float32), depth, lr, RANGE, SensorStage((1.0, -1.0), -3.0))
    assert out.shape == (60, 80) and out[:, :35].min() > 0.99 and out[:, 45:].max() < 0.5
    with pytest.raises(ValueError, match="does not have the image's aspect ratio"):
        log_disagreement(depth, np.full((18, 18), 2.0, np.float32), RANGE)
