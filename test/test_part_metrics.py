"""Metrics that see the parts an all-pixel AbsRel hides: the band around depth edges and the footprints the LR
supervision lacks (its own holes and the blobs the hole experiment removes), hand-computed on small arrays; the blobs
are the same in training and evaluation; ``depth-train evaluate`` and the ablation summary report them."""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from depth_node_training.cli import main
from depth_node_training.config import DataConfig
from depth_node_training.evaluation.metrics import (
    METRICS,
    PART_METRICS,
    depth_edges,
    depth_metrics,
    edge_band,
    hole_footprints,
    nan_mean,
    part_regions,
    texture_error,
)
from depth_node_training.frames import Frame
from depth_node_training.learning.training_pairs import SampleKey, TrainingPairs, hole_blobs, lr_supervision

from depth_node.network.reduce import down_depth_np

ROOT = Path(__file__).resolve().parents[1]


def step_scene() -> np.ndarray:
    """12x64 HR depth: 2 m left of column 32, a 1%-per-pixel ramp from 3 m right of it (no edge inside the ramp),
    one invalid pixel inside the edge band (0, 30) and one far from it (11, 5)."""
    gt = np.full((12, 64), 2.0, np.float32)
    gt[:, 32:] = 3.0 * 1.01 ** np.arange(32)
    gt[0, 30] = gt[11, 5] = 0.0
    return gt


def test_edge_band_of_a_step_is_four_pixels_each_side():
    gt = step_scene()
    edges = depth_edges(gt)
    assert np.array_equal(np.flatnonzero(edges.any(0)), [31, 32]) and edges[:, 31:33].all()
    band = edge_band(gt)
    expected = np.zeros_like(band)
    expected[:, 28:36] = True
    expected[0, 30] = False  # invalid ground truth never counts
    assert np.array_equal(band, expected)
    assert not edges[11, 4:7].any()  # 2 m next to an invalid pixel is no edge


def test_a_prediction_wrong_at_the_edge_moves_abs_rel_edges_much_and_abs_rel_little():
    gt = step_scene()
    pred = gt.copy()
    pred[:, 31:33] *= 1.5  # the estimator blurs across the edge: 50% off on both sides of it
    m = depth_metrics(pred, gt, regions=part_regions(gt, down_depth_np(gt, 4, 0.5, 0.1, 10.0)))
    wrong = 2 * 12  # pixels off by 50%, all valid; the band has 8 x 12 - 1 valid pixels, the frame 64 x 12 - 2
    assert m["abs_rel_edges"] == pytest.approx(0.5 * wrong / (8 * 12 - 1))
    assert m["abs_rel"] == pytest.approx(0.5 * wrong / (64 * 12 - 2))
    assert m["abs_rel_edges"] > 7 * m["abs_rel"]
    assert math.isnan(m["abs_rel_holes"])  # down() of this scene is valid everywhere: no hole, no pixel
    flat = np.full((12, 64), 2.0, np.float32)
    assert math.isnan(depth_metrics(flat, flat, regions={"edges": edge_band(flat)})["abs_rel_edges"])


def test_a_prediction_wrong_only_in_a_hole_is_seen_by_abs_rel_holes():
    gt = step_scene()
    lr = down_depth_np(gt, 4, 0.5, 0.1, 10.0)
    assert lr.shape == (3, 16) and (lr > 0).all()
    lr[1, 3] = 0.0  # one LR footprint without supervision: HR rows 4-7, columns 12-15
    holes = hole_footprints(lr, gt.shape)
    expected = np.zeros(gt.shape, bool)
    expected[4:8, 12:16] = True
    assert np.array_equal(holes, expected)
    pred = gt.copy()
    pred[holes] *= 2.0
    m = depth_metrics(pred, gt, regions=part_regions(gt, lr))
    assert m["abs_rel_holes"] == pytest.approx(1.0)
    assert m["abs_rel_edges"] == 0.0
    assert m["abs_rel"] == pytest.approx(16 / (64 * 12 - 2))


def test_hole_footprints_of_a_non_integer_factor_follow_pixel_centres():
    lr = np.ones((3, 3), np.float32)
    lr[1, 1] = np.nan
    holes = hole_footprints(lr, (10, 10))  # factor 3.33: LR row 1 holds HR centres 3.5 .. 6.5
    expected = np.zeros((10, 10), bool)
    expected[3:7, 3:7] = True
    assert np.array_equal(holes, expected)


def test_nan_mean_skips_frames_without_pixels():
    assert nan_mean([math.nan, 1.0, 3.0]) == 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(nan_mean([math.nan]))


def test_hole_blobs_remove_the_asked_fraction_in_blobs_fixed_per_frame():
    mask = hole_blobs((120, 160), 0.3, "frame-000500")
    assert mask.sum() == round(0.3 * 120 * 160)
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=4)
    sizes = stats[1:, cv2.CC_STAT_AREA]
    assert count - 1 >= 5  # several blobs, not one region
    assert sizes[sizes == 1].sum() < 0.01 * mask.sum() and np.median(sizes[sizes > 1]) >= 20
    assert np.array_equal(mask, hole_blobs((120, 160), 0.3, "frame-000500"))
    other = hole_blobs((120, 160), 0.3, "frame-000501")
    assert (mask & other).mean() < 0.2  # another frame, other blobs (by chance 0.09 of the grid overlaps)
    assert not hole_blobs((120, 160), 0.0, "frame-000500").any()
    with pytest.raises(ValueError, match="lr_holes"):
        hole_blobs((120, 160), 1.0, "frame-000500")


def ramp_frame(name: str) -> Frame:
    """96x128 HR depth, valid everywhere and different at every pixel; no logged LR depth (down by the factor)."""
    v, u = np.mgrid[0:96, 0:128] + 0.5
    depth = (1.0 + 0.01 * u + 0.007 * v + 1e-5 * u * v).astype(np.float32)
    color = np.stack([u % 256, v % 256, np.full_like(u, 40)], -1).astype(np.uint8)
    return Frame(name, color, np.eye(3), depth_hr=depth)


def test_training_crops_and_evaluation_miss_the_same_footprints():
    data = DataConfig(crop_height=48, crop_width=64, hflip=False, color_jitter=0.0, lr_holes=0.3)
    frames = [ramp_frame("frame-000007"), ramp_frame("frame-000009"), ramp_frame("frame-000007")]
    lr = lr_supervision(frames[0], data)
    removed = hole_blobs(lr.shape, 0.3, "frame-000007")
    assert lr.shape == (24, 32) and np.array_equal(lr == 0, removed)
    assert removed.sum() == round(0.3 * 24 * 32)
    assert not np.array_equal(lr_supervision(frames[1], data) == 0, removed)
    for seed in (0, 1):
        pairs = TrainingPairs(frames, data, seed=seed)
        for index in (0, 2):  # the frame's name seeds the blobs, not where it sits in the set
            whole = pairs[SampleKey(index, epoch=3, full_frame=True)]["depth_lr"][0].numpy()
            assert np.array_equal(whole == 0, removed)
            for epoch in range(4):
                crop = pairs[SampleKey(index, epoch)]["depth_lr"][0].numpy()
                assert crop.shape == (12, 16)
                (y, x), = [(y, x) for y in range(13) for x in range(17) if np.array_equal(lr[y:y + 12, x:x + 16], crop)]
                assert np.array_equal(crop == 0, removed[y:y + 12, x:x + 16])
    holes = part_regions(frames[0].depth_hr, lr_supervision(frames[0], data))["holes"]
    assert np.array_equal(holes, np.kron(removed, np.ones((4, 4), bool)))


def evaluate(tmp_path: Path, name: str, *argv: str) -> tuple[dict, str]:
    json_path, csv_path = tmp_path / f"{name}.json", tmp_path / f"{name}.csv"
    main(["evaluate", "--backend", "torch", *argv, "--json", str(json_path), "--csv", str(csv_path)])
    return json.loads(json_path.read_text()), csv_path.read_text().splitlines()[0]


def test_evaluate_reports_part_metrics_for_any_model(redkitchen, checkpoint, tmp_path, capsys):
    data = ["--data", f"{redkitchen}@500:502"]
    plain, header = evaluate(tmp_path, "plain", "--model", str(checkpoint), *data)
    assert header.endswith(",".join(PART_METRICS)) and header.startswith("frame," + ",".join(METRICS))
    assert plain["parts"] == {"edge_band_px": 4, "edge_jump": 0.05, "lr_factor": 4.0, "lr_holes": 0.0,
                              "texture_spacings_px": [1, 4, 16], "flat_tolerance": 0.02}
    assert all(0 < plain[m] < 2 and plain[f"{m}_frames"] == 2 for m in PART_METRICS)
    out = capsys.readouterr().out
    assert "| abs_rel_edges | abs_rel_holes |" in out and "abs_rel_holes: in holes of the LR supervision" in out

    payload = torch.load(checkpoint, map_location="cpu", weights_only=True)
    payload["config"].setdefault("data", {})["lr_holes"] = 0.3
    holed = tmp_path / "holed.pt"
    torch.save(payload, holed)
    trained, _ = evaluate(tmp_path, "trained", "--model", str(holed), *data)  # the blobs its training removed
    assert trained["parts"]["lr_holes"] == 0.3 and trained["abs_rel_holes_frames"] == 2
    assert trained["abs_rel"] == pytest.approx(plain["abs_rel"], abs=1e-6)
    assert trained["abs_rel_edges"] == pytest.approx(plain["abs_rel_edges"], abs=1e-6)
    assert abs(trained["abs_rel_holes"] - plain["abs_rel_holes"]) > 1e-4
    told, _ = evaluate(tmp_path, "told", "--model", str(holed), "--lr-holes", "0", *data)
    assert told["parts"]["lr_holes"] == 0.0 and told["abs_rel_holes"] == pytest.approx(plain["abs_rel_holes"])


def test_ablation_summary_means_part_metrics_over_frames_that_have_them():
    spec = importlib.util.spec_from_file_location("ablation", ROOT / "bench" / "ablation.py")
    ablation = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ablation)
    base = {m: 0.1 for m in METRICS}
    per_seed = {0: [{**base, "abs_rel_edges": 0.2, "abs_rel_holes": math.nan},
                    {**base, "abs_rel_edges": 0.4, "abs_rel_holes": 0.3}],
                1: [{**base, "abs_rel_edges": 0.6, "abs_rel_holes": math.nan},
                    {**base, "abs_rel_edges": 0.8, "abs_rel_holes": math.nan}]}
    row = ablation.summarise(per_seed)
    assert row["abs_rel_edges_mean"] == pytest.approx(0.5) and row["abs_rel_edges_std"] == pytest.approx(0.08 ** 0.5)
    assert row["abs_rel_holes_mean"] == pytest.approx(0.3) and row["abs_rel_holes_frames"] == [1, 0]
    assert row["abs_rel_mean"] == pytest.approx(0.1)
    kept = ablation.summarise({0: [base, base]})  # an evaluation kept from before the part metrics
    assert "abs_rel_edges_mean" not in kept and kept["abs_rel_mean"] == pytest.approx(0.1)
    report = ablation.format_report({"new": row, "kept": kept}, {})
    assert "| 0.500 ± 0.283 | 0.300 ± 0.000 |" in report and "| – | – |" in report


def test_ablation_compares_every_metric_both_rows_have_over_frames_defined_in_all_runs():
    spec = importlib.util.spec_from_file_location("ablation", ROOT / "bench" / "ablation.py")
    ablation = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ablation)
    base = {m: 0.1 for m in METRICS}

    def row(edges: list[list[float]], shift: float) -> dict:
        frames = {s: [{**base, "abs_rel": 0.1 + shift + 0.01 * s, "abs_rel_edges": e} for e in seed_edges]
                  for s, seed_edges in enumerate(edges)}
        return {**ablation.summarise(frames), "_frames": frames}

    better = row([[0.2, 0.3, 0.5], [0.2, math.nan, 0.4]], 0.0)  # frame 1 has no edge pixels in seed 1
    worse = row([[0.3, 9.0, 0.6], [0.4, 0.4, 0.5]], 0.02)
    abs_rel = ablation.paired(better, worse, "abs_rel")
    edges = ablation.paired(better, worse, "abs_rel_edges")
    assert abs_rel["mean"] == pytest.approx(-0.02) and abs_rel["frames"] == 3 and abs_rel["excludes_zero"]
    assert edges["frames"] == 2 and edges["mean"] == pytest.approx((-0.1 - 0.1 - 0.2 - 0.1) / 4)  # frame 1 left out
    assert edges["t_interval"]["mean"] == pytest.approx(edges["mean"])
    comparison = {**abs_rel, "parts": {"abs_rel_edges": edges}}
    report = ablation.format_report({"better": better, "worse": worse}, {"better vs worse": comparison})
    assert "| better vs worse | -0.0200 |" in report and "| better vs worse, abs_rel_edges | -0.1250 |" in report


def test_ablation_compares_extra_rows_with_the_baseline_and_named_pairs_only_when_both_were_trained():
    spec = importlib.util.spec_from_file_location("ablation", ROOT / "bench" / "ablation.py")
    ablation = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ablation)
    trained = {"+hr", "+cons", "full", "+distill"}
    pairs = ablation.comparison_pairs(["+hr", "+cons", "full", "+distill", "motion"], trained, "+hr", "+hr",
                                      [("full", "+hr"), ("+cons", "+hr"), ("full", "lr-only")])
    # standard pairs first (full vs +cons), the --row row vs the baseline, then the named ones, once each; "motion"
    # and "lr-only" were not trained, so no pair with them
    assert pairs == [("+cons", "+hr"), ("full", "+cons"), ("+distill", "+hr"), ("full", "+hr")]


def test_texture_is_zero_on_any_plane_at_any_scale_and_hand_computed_for_one_bump():
    v, u = np.mgrid[0:48, 0:64].astype(np.float64)
    plane = 1.0 / (0.4 + 0.004 * u + 0.002 * v)  # a slanted wall: inverse depth linear in the pixel coordinates
    assert texture_error(plane, plane) == pytest.approx(0.0, abs=1e-12)
    assert texture_error(1.3 * plane, plane) == pytest.approx(0.0, abs=1e-12)  # scale is AbsRel's business
    gt, pred = np.full((40, 40), 2.0), np.full((40, 40), 2.0)
    pred[20, 20] = 2.2  # one pixel 10% further: at every spacing its centre and its two neighbours on each axis
    centre = (2 * 0.5 - 2 * (1 / 2.2)) / (1 / 2.2)
    side = abs((1 / 2.2 - 0.5) / 0.5)
    fine = (centre + 2 * side) / 38 ** 2  # (|x| + |y|) / 2 over the 38 x 38 interior pixels
    footprint = (centre + 2 * side) / 32 ** 2
    coarse = centre / 8 ** 2  # at spacing 16 only (20, 20) among the 8 x 8 centres sees the bump
    assert texture_error(pred, gt) == pytest.approx((fine + footprint + coarse) / 3)


def test_texture_scores_texture_painted_on_a_wall_not_a_true_depth_edge():
    v, u = np.mgrid[0:96, 0:128].astype(np.float64)
    wall = 1.0 / (0.3 + 0.001 * u)
    step = np.where(u < 64, wall, 0.8 * wall)  # a real edge: a nearer surface on the right
    assert texture_error(step, step) == pytest.approx(0.0, abs=1e-12)
    letters = ((u // 6 + v // 6) % 2 == 0) & (v > 30) & (v < 70)  # printed text: the same mean depth, only relief
    painted = step * np.where(letters, 0.97, 1.03)
    assert texture_error(painted, step) > 0.02
    blurred = cv2.blur(step, (9, 9))  # an estimate that smooths the real edge: scored only where the truth is flat
    assert texture_error(blurred, step) < texture_error(painted, step) / 2
    holes = step.copy()
    holes[:, 60:70] = np.nan  # no ground truth: never flat, and a NaN estimate counts as min_depth elsewhere
    assert np.isfinite(texture_error(step, holes))
    assert np.isnan(texture_error(step, np.full_like(step, np.nan)))


def test_ablation_reuses_a_rows_kept_runs_from_another_table(tmp_path):
    spec = importlib.util.spec_from_file_location("ablation", ROOT / "bench" / "ablation.py")
    ablation = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ablation)
    kept = tmp_path / "paper_parts" / "+cons-charb"
    (kept / "seed1").mkdir(parents=True)
    (kept / "seed1" / "log.csv").write_text("step,loss\n500,0.2\n1000,0.1\n")  # a finished run, trained elsewhere
    args = argparse.Namespace(out=tmp_path / "table", reuse={"+cons": str(kept)}, factor=4.0, steps=1000, set=[],
                              no_train=True, data="unused", train_frames="0:400")
    assert ablation.train_row(args, "+cons", ablation.ROWS["+cons"], 1) == kept / "seed1"
    assert ablation.train_row(args, "+cons", ablation.ROWS["+cons"], 2) is None  # not there: left out, said
    assert ablation.train_row(args, "+hr", ablation.ROWS["+hr"], 1) is None  # OUT/+hr/seed1 was never trained
    assert ablation.run_folder(args, "upsampled-lr", 0) == tmp_path / "table" / "upsampled-lr" / "seed0"
