"""`bench/confidence_sensor_noise.py`: the degraded sensor by hand, and the whole comparison on real frames."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))


def test_degrade_scales_perturbs_and_drops_readings() -> None:
    from confidence_sensor_noise import degrade

    lr = np.full((30, 40), 2.0, np.float32)
    rng = np.random.default_rng(0)
    np.testing.assert_allclose(degrade(lr, 0.0, 0.0, 1.05, rng), 2.1, rtol=1e-6)
    assert np.isnan(degrade(lr, 0.0, 1.0, 1.0, rng)).all()
    noisy = degrade(lr, 0.05, 0.1, 1.0, rng)
    kept = noisy[np.isfinite(noisy)]
    assert 0.05 < 1 - kept.size / lr.size < 0.15 and abs(np.std(kept / 2.0 - 1) - 0.05) < 0.01


def test_scores_the_sharpened_confidence_against_noisy_sensors_on_real_frames(redkitchen: Path,
                                                                             tmp_path: Path) -> None:
    from test_confidence_node import EFFICIENTNET, STAGE, tiny_checkpoint

    from depth_node.network.confidence_head import calibration_path

    checkpoint = tiny_checkpoint(tmp_path, calibrated=True, stage=STAGE, network=EFFICIENTNET)
    out = tmp_path / "noise.json"
    command = [sys.executable, str(ROOT / "bench" / "confidence_sensor_noise.py"), "--data", f"{redkitchen}@500:502",
               "--models", str(checkpoint), "--calibrations", str(calibration_path(checkpoint)), "--json", str(out)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    sensors = json.loads(out.read_text())["sensors"]
    assert list(sensors) == ["image only", "exact LR depth", "1% noise, 5% lost", "3% noise, 5% lost",
                             "5% noise, 10% lost", "5% scale error"]
    aurg = {name: s["per_model"][0]["aurg"] for name, s in sensors.items()}
    # an untrained network is wrong everywhere by region: any of these sensors sees it, the image alone hardly
    assert min(v for k, v in aurg.items() if k != "image only") > aurg["image only"] + 0.01
    assert aurg["exact LR depth"] >= aurg["5% noise, 10% lost"] and "exact LR depth" in run.stdout
    row = sensors["image only"]["per_model"][0]
    assert 0 < row["mean_confidence"] < 1 and 0 <= row["observed_within"] <= 1

    no_stage = tmp_path / "plain.confidence.json"
    no_stage.write_text(json.dumps({**json.loads(calibration_path(checkpoint).read_text()), "lr_depth": None}))
    command[command.index("--calibrations") + 1] = str(no_stage)
    run = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert run.returncode != 0 and "no live LR depth stage" in run.stderr
