"""Confidence: sparsification metrics by hand, the calibration fit, the exported output against PyTorch on every
runnable backend, and `depth-train evaluate --confidence` on real frames."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from depth_node_training.deployment.calibrate_confidence import CANDIDATES, calibrate, fit_logistic
from depth_node_training.deployment.export import export_onnx
from depth_node_training.evaluation.sparsification import (
    FRACTIONS,
    mean_curves,
    reliability,
    reliability_counts,
    sparsification,
)

from depth_node.estimator import load_estimator
from depth_node.model_check import check_model_file, probe
from depth_node.network.confidence_head import Calibration, calibration_path
from depth_node.sensor_confidence import WINDOW as SENSOR_WINDOW

# The confidence branch adds these to the depth graph; TensorRT's ONNX parser handles them all natively.
CONFIDENCE_OPS = {"Log", "Abs", "Sub", "Neg", "MaxPool", "AveragePool", "Resize", "Sigmoid", "Add", "Mul"}


def test_sparsification_matches_hand_computed_values() -> None:
    # |rel| errors 0, 1, 2, 3; most confident first: errors 0, 3, 2, 1
    pred, gt, conf = np.array([1.0, 2, 3, 4]), np.ones(4), np.array([0.9, 0.1, 0.5, 0.7])
    s = sparsification(pred, gt, conf, fractions=np.array([0.0, 0.25, 0.5, 0.75]))
    a = s["abs_rel"]
    np.testing.assert_allclose(a["curve"], [1.5, 5 / 3, 1.5, 0.0])
    np.testing.assert_allclose(a["oracle"], [1.5, 1.0, 0.5, 0.0])
    np.testing.assert_allclose(a["random"], [1.5] * 4)
    assert a["ause"] == pytest.approx((0 + 2 / 3 + 1 + 0) / 4)
    assert a["aurg"] == pytest.approx((0 - 1 / 6 + 0 + 1.5) / 4)
    r = s["rmse"]  # squared errors 0, 1, 4, 9
    np.testing.assert_allclose(r["curve"], np.sqrt([14 / 4, 13 / 3, 9 / 2, 0]))
    np.testing.assert_allclose(r["oracle"], np.sqrt([14 / 4, 5 / 3, 1 / 2, 0]))
    # the confidence equal to minus the error is the oracle; a constant one keeps the pixels' order (stable sort)
    assert sparsification(pred, gt, -np.abs(pred - gt))["abs_rel"]["ause"] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="equal, non-empty"):
        sparsification(pred, gt, conf[:3])


def test_mean_curves_average_frames_and_read_the_80_percent_point() -> None:
    rng = np.random.default_rng(0)
    gt = rng.uniform(1, 3, 1000)
    err = rng.uniform(0, 0.4, 1000)
    pred = gt * (1 + err)
    frames = [sparsification(pred, gt, -err), sparsification(pred, gt, rng.random(1000))]
    summary = mean_curves(frames)
    assert len(summary["curve"]) == len(FRACTIONS) and summary["frames"] == 2
    kept = np.sort(err)[:800].mean()  # the oracle frame keeps the 800 smallest errors
    assert summary["abs_rel_kept_80"] == pytest.approx((kept + frames[1]["abs_rel"]["curve"][4]) / 2)
    assert summary["abs_rel_all"] == pytest.approx(err.mean())
    assert summary["aurg"] == pytest.approx((frames[0]["abs_rel"]["aurg"] + frames[1]["abs_rel"]["aurg"]) / 2)


def test_reliability_bins_confidence_against_observed_frequency() -> None:
    rel = np.array([0.05, 0.2, 0.01, 0.3, 0.02])
    conf = np.array([0.15, 0.12, 0.95, 0.99, 1.0])  # 1.0 falls in the last bin
    r = reliability(reliability_counts(rel, conf, 0.1, bins=2), 0.1)
    assert r["observed_within_threshold"] == pytest.approx(3 / 5)
    assert r["mean_confidence"] == pytest.approx(conf.mean())
    high = (0.95 + 0.99 + 1.0) / 3
    assert r["bins"] == [pytest.approx({"confidence": 0.135, "observed": 0.5, "pixel_fraction": 0.4}),
                         pytest.approx({"confidence": high, "observed": 2 / 3, "pixel_fraction": 0.6})]


def test_logistic_fit_recovers_known_weights() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20000, 2))
    p = 1 / (1 + np.exp(-(0.5 - 1.5 * x[:, 0] - 0.7 * x[:, 1])))
    weights, bias = fit_logistic(x, rng.random(20000) < p)
    np.testing.assert_allclose(weights, [-1.5, -0.7], atol=0.08)
    assert bias == pytest.approx(0.5, abs=0.08)


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from test_confidence_node import tiny_checkpoint

    return tiny_checkpoint(tmp_path_factory.mktemp("calibrated"), calibrated=True)


def test_exported_confidence_matches_pytorch_and_passes_the_model_check(calibrated: Path, tmp_path: Path) -> None:
    path = export_onnx(str(calibrated), tmp_path / "m.onnx")
    model = onnx.load(str(path))
    assert [o.name for o in model.graph.output] == ["depth", "confidence"]
    meta = {p.key: p.value for p in model.metadata_props}
    assert Calibration.from_json(meta["confidence"]) == Calibration.from_json(calibration_path(calibrated).read_text())
    plain = export_onnx(str(calibrated), tmp_path / "plain.onnx", confidence=False)
    depth_ops = {n.op_type for n in onnx.load(str(plain)).graph.node}
    assert {n.op_type for n in model.graph.node} - depth_ops <= CONFIDENCE_OPS
    assert check_model_file(str(path)).input_size == (96, 128)

    image = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    reference = load_estimator(str(calibrated), "torch")
    onnx_estimator = load_estimator(str(path), "onnxruntime")
    assert reference.has_confidence and onnx_estimator.has_confidence
    assert probe(onnx_estimator, confidence=True) is None and probe(reference, confidence=True) is None
    depth, confidence, _ = reference.infer_with_confidence(image)
    depth_ort, confidence_ort, _ = onnx_estimator.infer_with_confidence(image)
    assert confidence.shape == depth.shape == (96, 128)
    assert 0 <= confidence.min() and confidence.max() <= 1 and confidence.std() > 0
    np.testing.assert_allclose(confidence_ort, confidence, atol=1e-4)
    np.testing.assert_allclose(depth_ort, depth, rtol=1e-4)
    # depth without confidence is the same depth (ONNX Runtime runs a graph cut down to it)
    np.testing.assert_array_equal(onnx_estimator.infer(image)[0], depth_ort)
    with pytest.raises(ValueError, match="no confidence output"):
        load_estimator(str(plain), "onnxruntime").infer_with_confidence(image)


def test_evaluate_confidence_writes_curves_and_plot(calibrated: Path, redkitchen: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    run = subprocess.run([sys.executable, "-m", "depth_node_training.cli", "evaluate", "--model", str(calibrated),
                          "--backend", "torch", "--data", f"{redkitchen}@500:502", "--confidence", "--json", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    c = json.loads(out.read_text())["confidence"]
    assert c["frames"] == 2 and len(c["curve"]) == len(FRACTIONS)
    assert {"ause", "aurg", "abs_rel_kept_80", "abs_rel_all", "reliability"} <= set(c) and c["ause"] >= 0
    assert c["curve"][0]["abs_rel"] == pytest.approx(c["abs_rel_all"])
    assert out.with_suffix(".sparsification.png").stat().st_size > 1000
    assert "AURG" in run.stdout
    command = [*run.args, "--lr-depth"]
    refused = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0 and "its confidence has no live LR depth stage" in refused.stderr
    command.remove("--confidence")
    refused = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0 and "--lr-depth sharpens the confidence: give --confidence too" in refused.stderr


def test_evaluate_scores_the_confidence_sharpened_by_the_lr_depth(redkitchen: Path, tmp_path: Path) -> None:
    from test_confidence_node import EFFICIENTNET, STAGE, tiny_checkpoint

    checkpoint = tiny_checkpoint(tmp_path, calibrated=True, stage=STAGE, network=EFFICIENTNET)
    out = tmp_path / "eval.json"
    run = subprocess.run([sys.executable, "-m", "depth_node_training.cli", "evaluate", "--model", str(checkpoint),
                          "--backend", "torch", "--data", f"{redkitchen}@500:502", "--confidence", "--lr-depth",
                          "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    summary = json.loads(out.read_text())
    own, sharpened = summary["confidence"], summary["confidence_lr_depth"]
    assert sharpened["frames"] == own["frames"] == 2 and sharpened["abs_rel_all"] == pytest.approx(own["abs_rel_all"])
    # a random network's error is everywhere and the LR depth (down(ground truth)) sees it: it ranks far better
    assert sharpened["aurg"] > own["aurg"] + 0.01
    assert "with the live LR depth: AUSE" in run.stdout


def test_calibrate_chooses_the_signal_set_on_held_out_frames_or_takes_the_given_one(redkitchen: Path,
                                                                                    tmp_path: Path) -> None:
    from test_confidence_node import tiny_checkpoint

    checkpoint = tiny_checkpoint(tmp_path, calibrated=False)
    data, held_out = f"{redkitchen}@0:8", f"{redkitchen}@420:422"
    chosen, scores = calibrate(checkpoint, data, pixels_per_frame=2000, select=held_out)
    image_only = {"+".join(c): scores["+".join(c)] for c in CANDIDATES}
    assert set(scores) == {*image_only, "+".join(chosen.features) + "+lr_depth"}
    assert "+".join(chosen.features) == max(image_only, key=image_only.get) and chosen.selected_on == held_out
    assert chosen.lr_depth is not None and chosen.lr_depth.window == SENSOR_WINDOW and chosen.lr_depth.pixels > 0
    own, own_scores = calibrate(checkpoint, data, pixels_per_frame=2000)
    assert own.selected_on == data and own_scores != scores  # ranked on other frames, other figures
    given, given_scores = calibrate(checkpoint, data, pixels_per_frame=2000, select=held_out, features=("edge",),
                                    sensor_window=5)
    assert given.features == ("edge",) and given.selected_on == "given" and set(given_scores) == {"edge",
                                                                                                  "edge+lr_depth"}
    assert given.lr_depth.window == 5 and Calibration.from_json(given.to_json()) == given
    with pytest.raises(ValueError, match="window must be at least 1 LR footprint, got 0"):
        calibrate(checkpoint, data, sensor_window=0)


def test_calibrate_cli_fits_on_real_frames_and_export_bakes_it_in(redkitchen: Path, tmp_path: Path) -> None:
    from depth_node_training.cli import main as depth_train
    from test_confidence_node import tiny_checkpoint

    checkpoint = tiny_checkpoint(tmp_path, calibrated=False)
    depth_train(["calibrate-confidence", "--model", str(checkpoint), "--data", f"{redkitchen}@0:8", "--stride", "4",
                 "--pixels", "2000"])
    calibration = Calibration.from_json(calibration_path(checkpoint).read_text())
    assert calibration.pixels == 4000 and calibration.threshold == 0.1 and calibration.data.endswith("@0:8")
    assert calibration.features in {("disagreement",), ("edge",), ("disagreement", "edge")}
    assert np.isfinite([*calibration.weights, calibration.bias]).all()
    path = export_onnx(str(checkpoint), tmp_path / "m.onnx")
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert Calibration.from_json(meta["confidence"]) == calibration
    assert calibration.lr_depth is not None  # against HR ground truth: the live LR depth stage is fitted too
    assert load_estimator(str(path), "onnxruntime").sensor_stage == calibration.lr_depth


def test_calibrate_on_a_robot_log_uses_its_lr_depth_as_the_dataset_uses_down_hr(redkitchen: Path,
                                                                                redkitchen_bag: Path,
                                                                                tmp_path: Path) -> None:
    from depth_node_training.deployment.calibrate_confidence import collect
    from depth_node_training.learning.checkpoint import load_model
    from test_confidence_node import tiny_checkpoint

    checkpoint = tiny_checkpoint(tmp_path, calibrated=False)
    net, cfg, _ = load_model(checkpoint, "cpu")
    from_log = collect(net, cfg, f"{redkitchen_bag}@0:4", 500, 2)
    from_dataset = collect(net, cfg, f"{redkitchen}@0:4", 500, 2, reference="lr")
    assert from_log.reference == from_dataset.reference == "lr"  # the log has no HR ground truth
    assert from_log.pred.size == from_dataset.pred.size == 1000  # 2 frames, 500 of the 160x120 footprints each
    # the logged ToF is down(HR) in millimetres, and the same footprints are drawn: the same samples
    np.testing.assert_allclose(from_log.ref, from_dataset.ref, atol=1e-3)
    np.testing.assert_allclose(from_log.pred, from_dataset.pred, rtol=1e-4)
    for name in from_log.logs:
        np.testing.assert_allclose(from_log.logs[name], from_dataset.logs[name], atol=1e-3)
    calibration, _ = calibrate(checkpoint, f"{redkitchen_bag}@0:8", pixels_per_frame=500)
    assert calibration.reference == "lr" and calibration.pixels == 1000
    assert calibration.lr_depth is None  # the sensor cannot be judged against itself
    assert "LR depth" in calibration.meaning() and Calibration.from_json(calibration.to_json()) == calibration
    with pytest.raises(ValueError, match=r"@700:800: no frame with depth to calibrate confidence on \(no frames\)"):
        calibrate(checkpoint, f"{redkitchen_bag}@700:800")
    with pytest.raises(ValueError, match="reference 'sensor'"):
        Calibration.from_json(json.dumps({**json.loads(calibration.to_json()), "reference": "sensor"}))


def test_a_broken_live_lr_depth_stage_is_named_by_evaluate(redkitchen: Path, tmp_path: Path) -> None:
    from test_confidence_node import STAGE, tiny_checkpoint

    checkpoint = tiny_checkpoint(tmp_path, calibrated=True, stage=STAGE)
    broken = {**json.loads(calibration_path(checkpoint).read_text()), "lr_depth": {"weights": [1.0], "bias": 0.0}}
    calibration_path(checkpoint).write_text(json.dumps(broken))
    run = subprocess.run([sys.executable, "-m", "depth_node_training.cli", "evaluate", "--model", str(checkpoint),
                          "--backend", "torch", "--data", f"{redkitchen}@500:501", "--confidence", "--lr-depth"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1
    assert (f"{calibration_path(checkpoint)}: not a confidence calibration (lr_depth stage: need two weights"
            in run.stderr)
