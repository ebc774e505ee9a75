"""`bench/color_focal.py` on three real redkitchen frames: the LR depth alone points at the colour camera's focal."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))


def test_lr_depth_prefers_the_colour_focal_over_the_depth_cameras(redkitchen: Path) -> None:
    from color_focal import load_targets, mean_loss
    from depth_node_training.learning.datasets import open_frames

    with torch.no_grad():
        targets = load_targets(open_frames(f"{redkitchen}@90:131"), 20, [-10, 10], 0.02, 4)
        assert [t.name for t in targets] == ["frame-000090", "frame-000110", "frame-000130"]
        assert [len(t.sources) for t in targets] == [1, 2, 1]
        assert all(t.hr is not None and t.lr.shape == t.hr.shape for t in targets)
        assert 0.5 < targets[1].lr.gt(0).float().mean() <= 1  # LR depth upsampled, its invalid readings kept at 0
        curve = {f: mean_loss(targets, f) for f in (480.0, 525.0, 585.0)}
    best = min(curve, key=curve.get)
    assert abs(best - 525) < abs(best - 585), curve
    assert curve[525.0] < curve[585.0]
