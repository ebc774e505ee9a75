"""The motion term (5) wired into training: crop, zoom and flip geometry, missing poses, and a real ``fit``.

The rendered sample log has exact depth and poses, so a training crop's own HR depth must re-project onto its
neighbours: the photometric term of the true depth is low whatever the crop, zoom or flip, and a depth scaled by 0.8
or 1.25, or a flip handled as if it were none, scores clearly worse.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from depth_node_training.config import ConfigError, load_config
from depth_node_training.learning.checkpoint import config_changes
from depth_node_training.learning.neighbours import MIRROR_X, crop_intrinsics, frame_poses
from depth_node_training.learning.objective import motion_loss
from depth_node_training.learning.training_pairs import SampleKey, TrainingPairs
from depth_node_training.logs import sample_bag
from depth_node_training.logs.extract import extract
from depth_node_training.logs.extracted_set import ExtractedSet

MOTION = ["loss.w_motion=1", "loss.motion_offsets=[-2,2]", "loss.motion_min_baseline=0.05", "data.crop_height=96",
          "data.crop_width=128", "data.color_jitter=0"]


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> ExtractedSet:
    root = tmp_path_factory.mktemp("motion")
    extract([sample_bag.write_sample_bag(root / "log", frames=8)], root / "set", progress=False)
    return ExtractedSet(root / "set")


def views(item: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v[None] for k, v in item.items() if k.startswith("motion_")}


def test_crop_intrinsics():
    K = np.array([[500.0, 0, 320.0], [0, 480.0, 240.0], [0, 0, 1]])
    assert np.allclose(crop_intrinsics(K, (0, 0, 480, 640), (480, 640)), K)
    half = crop_intrinsics(K, (10, 20, 110, 220), (50, 100))  # 2 frame pixels per crop pixel
    assert np.allclose(half[[0, 1, 0, 1], [0, 1, 2, 2]], [250, 240, (320.5 - 20) / 2 - 0.5, (240.5 - 10) / 2 - 0.5])
    flipped = crop_intrinsics(K, (10, 20, 110, 220), (50, 100), flip=True)
    assert flipped[0, 2] == pytest.approx(99 - half[0, 2]) and flipped[1, 2] == half[1, 2]


def test_true_depth_reprojects_through_crop_zoom_and_flip(sample):
    cfg = load_config(None, [*MOTION, "data.scale_jitter=0.3", "data.hflip=true"])
    plain = TrainingPairs(sample, dataclasses.replace(cfg.data, hflip=False), seed=1, loss=cfg.loss)
    pairs = TrainingPairs(sample, cfg.data, seed=1, loss=cfg.loss)
    flips = zooms = 0
    for epoch in range(6):
        item, unflipped = pairs[SampleKey(3, epoch)], plain[SampleKey(3, epoch)]
        flipped = not torch.equal(item["image"], unflipped["image"])
        assert torch.equal(item["image"], unflipped["image"].flip(-1) if flipped else unflipped["image"])
        flips, zooms = flips + flipped, zooms + (float(item["zoom"]) > 1.01)
        assert item["motion_available"].tolist() == [True, True]
        batch, depth = views(item), item["depth_hr"][None]
        true = motion_loss(depth, batch, 0.0).item()
        mirrored_wrongly = dict(batch, motion_T=batch["motion_T"] @ torch.from_numpy(MIRROR_X).float())
        assert true < 0.035
        for wrong in (motion_loss(0.8 * depth, batch, 0.0), motion_loss(1.25 * depth, batch, 0.0),
                      motion_loss(depth, mirrored_wrongly, 0.0)):
            assert wrong.item() > 2 * true
    assert flips and zooms  # both cases were exercised


def test_frames_without_pose_give_no_signal(sample):
    cfg = load_config(None, MOTION)
    frames = [dataclasses.replace(sample[k], pose=None) for k in range(len(sample))]
    assert frame_poses(frames) is None and frame_poses(sample) == sample.poses
    item = TrainingPairs(frames, cfg.data, loss=cfg.loss)[3]
    assert item["motion_available"].tolist() == [False, False]
    depth = item["depth_hr"][None].requires_grad_()
    loss = motion_loss(depth, views(item), 0.0)
    loss.backward()
    assert loss.item() == 0 and torch.count_nonzero(depth.grad) == 0


def test_motion_options_are_checked_and_inert_when_off():
    with pytest.raises(ConfigError, match="loss.motion_offsets"):
        load_config(None, ["loss.motion_offsets=[0,5]"])
    with pytest.raises(ConfigError, match="loss.w_motion"):
        load_config(None, ["loss.w_motion=-1"])
    saved = load_config(None, [])
    from depth_node_training.config import config_to_dict

    assert config_changes(config_to_dict(saved), load_config(None, ["data.color_focal=525"])) == []
    assert config_changes(config_to_dict(saved), load_config(None, ["loss.w_motion=1"])) == [
        "loss.w_motion: 0.0 -> 1.0"]


def test_fit_with_the_motion_term(sample, tmp_path):
    """Through the console script, as a user runs it: the term is logged with the share of samples it could use."""
    depth_train = str(Path(sys.executable).parent / "depth-train")
    result = subprocess.run(
        [depth_train, "fit", "--data", str(sample.path), "--out", str(tmp_path), *MOTION, "train.steps=2",
         "train.batch_size=2", "train.log_every=1", "model.pretrained=false"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"{len(sample)} of {len(sample)} training frames have a camera pose" in result.stdout
    header, *rows = (tmp_path / "log.csv").read_text().splitlines()
    columns = header.split(",")
    assert "l_motion" in columns and columns[-1] == "motion_seen" and len(rows) == 2
    values = [dict(zip(columns, map(float, row.split(",")))) for row in rows]
    assert all(0 < v["l_motion"] < 1 and 0 < v["motion_seen"] <= 1 for v in values)
