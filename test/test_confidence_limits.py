"""`bench/confidence_limits.py`: the live-sensor signal by hand, and the whole comparison on real frames."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))


def test_lr_sensor_agreement_matches_hand_computed_values() -> None:
    from confidence_limits import lr_sensor_agreement

    from depth_node.sensor_confidence import EPS

    depth = torch.full((1, 1, 4, 32), 2.0)  # 4x4 pixels per footprint of a 1x8 LR grid
    lr = np.array([[0, 0, 0, 0, 2.0, 2.5, 2.0, 2.0]], np.float32)  # no reading in the first four; 0.2 off in one
    # log of the mean relative residual over the readings among 3 neighbouring footprints; none: the median
    mean = np.array([np.nan, np.nan, np.nan, 0.0, 0.1, 0.2 / 3, 0.2 / 3, 0.0])
    expected = -np.log(np.where(np.isnan(mean), 0.2 / 3, mean) + EPS)
    np.testing.assert_allclose(lr_sensor_agreement(depth, lr, (0.05, 20.0), 3)[0, 0, 0].numpy(), expected, rtol=1e-5)
    # one footprint each (the node's window): the four without a reading get the median, that of three agreeing ones
    alone = lr_sensor_agreement(depth, lr, (0.05, 20.0))[0, 0, 0].numpy()
    np.testing.assert_allclose(alone, -np.log([EPS] * 5 + [0.2 + EPS] + [EPS] * 2), rtol=1e-5)


def test_compares_every_signal_with_the_oracles_on_real_frames(redkitchen: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib is a training extra ('.[train]'): the plot needs it")
    from test_confidence_node import tiny_checkpoint

    from depth_node.network.confidence_head import calibration_path

    checkpoint = tiny_checkpoint(tmp_path, calibrated=True)
    out, png = tmp_path / "limits.json", tmp_path / "limits.png"
    command = [sys.executable, str(ROOT / "bench" / "confidence_limits.py"), "--data", f"{redkitchen}@500:502",
               "--models", str(checkpoint), str(checkpoint), "--calibrations", *[str(calibration_path(checkpoint))] * 2,
               "--json", str(out), "--png", str(png)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    signals = json.loads(out.read_text())["signals"]
    assert set(signals) == {"model", "ensemble", "lr_sensor", "oracle_lr", "oracle"}
    for name, rows in signals.items():
        assert len(rows) == 2 and all(r["abs_rel_kept_80"] >= signals["oracle"][0]["abs_rel_kept_80"] - 1e-9
                                      for r in rows), name
    # an untrained network's errors are region-wide: the sensor at LR resolution ranks them almost as its oracle
    assert signals["lr_sensor"][0]["aurg"] > 0.5 * signals["oracle_lr"][0]["aurg"] > 0 and "lr_sensor" in run.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unequal_models_and_calibrations_exit_non_zero(tmp_path: Path) -> None:
    command = [sys.executable, str(ROOT / "bench" / "confidence_limits.py"), "--data", "x", "--models", "a", "b",
               "--calibrations", "c", "--json", str(tmp_path / "x.json")]
    run = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and "2 models but 1 calibrations" in run.stderr
    assert not (tmp_path / "x.json").exists()
