"""`bench/compare_previews.py`: the predictions of two runs side by side, from previews the evaluation wrote."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
from depth_node_training.evaluation.previews import preview_row, save_rows

ROOT = Path(__file__).resolve().parents[1]


def previews(path: Path, prediction_offset: float) -> Path:
    v, u = np.mgrid[0:48, 0:64]
    gt = 1.0 + u / 64.0 + v / 96.0
    color = np.zeros((48, 64, 3), np.uint8)
    rows = [preview_row(color + 40 * i, gt, gt + prediction_offset, 0.1, 10.0) for i in range(4)]
    return save_rows(rows, path)


def compare(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "bench" / "compare_previews.py"), *argv], capture_output=True,
                          text=True, timeout=60)


def test_puts_each_runs_prediction_beside_the_colour_and_ground_truth(tmp_path):
    a, b = previews(tmp_path / "a.png", 0.0), previews(tmp_path / "b.png", 0.5)
    out = tmp_path / "pair.png"
    result = compare(tmp_path, "--out", str(out), f"exact={a}", f"far={b}", "--rows", "1", "3")
    assert result.returncode == 0, result.stderr
    picture, source = cv2.imread(str(out)), cv2.imread(str(a))
    panel_h, panel_w = source.shape[0] // 4, source.shape[1] // 4
    assert picture.shape == (28 + 2 * panel_h, 4 * panel_w, 3)  # colour, ground truth, two predictions; 2 frames
    body = picture[28:]
    assert np.array_equal(body[:panel_h, :panel_w], source[panel_h:2 * panel_h, :panel_w])  # frame 1's colour
    exact, ground_truth = body[:, 2 * panel_w:3 * panel_w], body[:, panel_w:2 * panel_w]
    assert np.array_equal(exact, ground_truth)  # a perfect prediction looks like the ground truth
    assert not np.array_equal(body[:, 3 * panel_w:], ground_truth)


def test_refuses_previews_of_other_frames_and_a_row_they_do_not_have(tmp_path):
    a = previews(tmp_path / "a.png", 0.0)
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), cv2.resize(cv2.imread(str(a)), None, fx=0.5, fy=0.5))  # other frames: another size
    result = compare(tmp_path, "--out", str(tmp_path / "x.png"), f"a={a}", f"b={small}")
    assert result.returncode != 0 and "differ in size" in result.stderr
    result = compare(tmp_path, "--out", str(tmp_path / "x.png"), f"a={a}", "--rows", "4")
    assert result.returncode != 0 and "row 4 is not one" in result.stderr
    assert not (tmp_path / "x.png").exists()
