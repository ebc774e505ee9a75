"""`bench/backends.py --confidence`: every variant it times runs, the LR depth sharpening included when calibrated."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))


def test_confidence_cost_times_each_variant(tmp_path: Path) -> None:
    from backends import confidence_cost
    from test_confidence_node import STAGE, tiny_checkpoint

    image = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    rows = confidence_cost(tiny_checkpoint(tmp_path, calibrated=True, stage=STAGE), image, 2, 1, tmp_path)
    assert list(rows) == ["without confidence output", "with it, depth only", "with it, depth + confidence",
                          "with it, + sharpened by an LR depth"]
    assert all(r["median_ms"] > 0 for r in rows.values()) and rows["without confidence output"]["overhead"] == 0
    plain = tmp_path / "plain"
    plain.mkdir()
    rows = confidence_cost(tiny_checkpoint(plain, calibrated=True), image, 1, 1, plain)
    assert "with it, + sharpened by an LR depth" not in rows  # no stage in its calibration
