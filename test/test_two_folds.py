"""`bench/two_folds.py`: two validation folds pooled per seed, on the committed evaluations, and the declared rule."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT / "bench"))

from two_folds import verdict  # noqa: E402


def interval(metric: str, mean: float, low: float, high: float, t_high: float, seeds: int = 6) -> dict:
    return {"metric": metric, "mean": mean, "low": low, "high": high, "seeds": seeds,
            "t_interval": {"mean": mean, "low": low - 0.01, "high": t_high}}


def test_pools_both_folds_frame_by_frame_and_keeps_each_fold(tmp_path):
    out = tmp_path / "two.json"
    command = [sys.executable, str(ROOT / "bench" / "two_folds.py"),
               "--fold", f"val={RESULTS / 'ablation_x4_fastdepth'}", "--fold", f"early={RESULTS / 'ablation_x4_early'}",
               "--reuse", f"val:+cons={RESULTS / 'ablation_x4' / 'prior-fastdepth'}",
               "--compare", "+hr:+cons", "--compare", "no-such-row:+cons", "--seeds", "0", "1", "2", "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "no-such-row vs +cons: 0 seed(s) on every fold, not compared" in result.stdout
    report = json.loads(out.read_text())
    c = report["comparisons"]["+hr vs +cons"]
    assert set(c["folds"]) == {"val", "early"} and c["seeds"] == 3 and c["frames"] == 120
    # equal frame counts: the pooled difference is the mean of the two folds' differences
    assert np.isclose(c["mean"], (c["folds"]["val"]["mean"] + c["folds"]["early"]["mean"]) / 2)
    assert np.isclose(report["rows"]["+hr"]["abs_rel_mean"], np.mean(
        [report["fold_rows"][split]["+hr"]["abs_rel_mean"] for split in ("val", "early")]))
    assert set(c["parts"]) == {"abs_rel_edges", "abs_rel_holes", "texture"}
    assert c["verdict"]["seeds"] == 3 and not c["verdict"]["adopt"]  # 3 seeds never adopt


def test_the_rule_needs_six_seeds_both_intervals_and_no_fold_against():
    fine = {"val": {"mean": -0.004, "low": -0.02, "high": 0.01}, "early": {"mean": -0.003, "low": -0.006, "high": 0.0}}
    texture = interval("texture", -0.002, -0.003, -0.001, -0.0005)
    adopted = {**interval("abs_rel", -0.003, -0.01, 0.004, 0.01), "parts": {"texture": texture}}
    assert verdict(adopted, fine) == {"adopt": True, "seeds": 6, "resolved_below_0": ["texture"], "folds_against": []}
    assert not verdict({**adopted, "seeds": 5}, fine)["adopt"]
    t_reaches_0 = {**adopted, "parts": {"texture": interval("texture", -0.002, -0.003, -0.001, 0.0001)}}
    assert verdict(t_reaches_0, fine)["resolved_below_0"] == []
    worse_on_abs_rel = {**adopted, "mean": 0.001}
    assert not verdict(worse_on_abs_rel, fine)["adopt"]
    one_fold_against = {**fine, "early": {"mean": 0.004, "low": 0.001, "high": 0.007}}
    assert verdict(adopted, one_fold_against) == {"adopt": False, "seeds": 6, "resolved_below_0": ["texture"],
                                                  "folds_against": ["early"]}


def test_a_damaged_evaluation_stops_it_with_the_file_named(tmp_path):
    for split, source in (("val", RESULTS / "ablation_x4_fastdepth"), ("early", RESULTS / "ablation_x4_early")):
        for row in ("+hr", "+cons"):
            folder = tmp_path / split / row / "seed0"
            folder.mkdir(parents=True)
            name = f"eval_{split}.csv"
            kept = (RESULTS / "ablation_x4" / "prior-fastdepth" if (split, row) == ("val", "+cons") else source / row)
            (folder / name).write_bytes((kept / "seed0" / name).read_bytes())
    damaged = tmp_path / "val" / "+cons" / "seed0" / "eval_val.csv"
    damaged.write_bytes(damaged.read_bytes()[:3000])  # cut mid-row, as a full disk leaves it
    command = [sys.executable, str(ROOT / "bench" / "two_folds.py"), "--fold", f"val={tmp_path / 'val'}",
               "--fold", f"early={tmp_path / 'early'}", "--compare", "+hr:+cons", "--seeds", "0",
               "--out", str(tmp_path / "two.json")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode != 0 and not (tmp_path / "two.json").exists()
    assert f"{damaged}: not a per-frame evaluation CSV" in result.stderr
