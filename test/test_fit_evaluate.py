"""Two-step ``depth-train fit`` then ``depth-train evaluate`` on a few real frames, through the console script."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from depth_node_training.evaluation.metrics import METRICS

DEPTH_TRAIN = str(Path(sys.executable).parent / "depth-train")


def run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    result = subprocess.run([DEPTH_TRAIN, *args], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


def test_fit_then_evaluate_on_real_frames(redkitchen, tmp_path):
    run("fit", "--data", f"{redkitchen}@0:6", "--out", str(tmp_path / "run"), "train.steps=2", "train.batch_size=2",
        "loss.w_affinity=1", "loss.teacher_steps=5", "train.log_every=1", "data.crop_height=96", "data.crop_width=128",
        "data.val_fraction=0.34")
    log = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert log[0].startswith("step,lr,loss") and "l_affinity" in log[0] and len(log) == 3
    val = (tmp_path / "run" / "val.csv").read_text().splitlines()
    assert val[0] == "step,val_lr_abs_rel,val_lr_delta1,val_hr_abs_rel" and val[1].startswith("2,")
    ckpt = tmp_path / "run" / "checkpoint.pt"
    run("evaluate", "--model", str(ckpt), "--backend", "torch", "--data", f"{redkitchen}@500:502",
        "--json", str(tmp_path / "eval.json"), "--csv", str(tmp_path / "frames.csv"),
        "--previews", str(tmp_path / "previews"))
    summary = json.loads((tmp_path / "eval.json").read_text())
    assert summary["frames"] == 2 and summary["backend"] == "torch"
    assert all(np.isfinite(summary[m]) for m in METRICS)
    assert 0 < summary["abs_rel"] < 2 and 0 <= summary["delta1"] <= 1
    assert len((tmp_path / "frames.csv").read_text().splitlines()) == 3
    assert (tmp_path / "previews" / "previews.png").stat().st_size > 10_000


def test_fit_resume_refuses_a_changed_config(redkitchen, tmp_path):
    """Continuing under another config would be neither run (exact resume itself: test_training_run.py)."""
    common = ["--data", f"{redkitchen}@0:4", "--out", str(tmp_path), "train.batch_size=2", "train.log_every=1",
              "data.crop_height=64", "data.crop_width=96", "loss.w_affinity=0", "model.pretrained=false"]
    run("fit", *common, "train.steps=1")
    result = subprocess.run([DEPTH_TRAIN, "fit", *common, "train.steps=2", "--resume"], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 2 and "train.steps: 1 -> 2" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    steps = [line.split(",")[0] for line in (tmp_path / "log.csv").read_text().splitlines()[1:]]
    assert steps == ["1"]


def test_fit_reports_bad_data_path_clearly(tmp_path):
    result = subprocess.run([DEPTH_TRAIN, "fit", "--data", str(tmp_path / "nope"), "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "does not exist" in result.stderr
