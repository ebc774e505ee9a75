"""`bench/budget_plot.py` on the committed validation runs of the recipe: it draws them, and says which rows it left
out."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "bench" / "results" / "recipe_x4"

pytest.importorskip("matplotlib", reason="matplotlib is a training extra ('.[train]'): the plot needs it")


def plot(tmp_path: Path, *rows: str) -> tuple[subprocess.CompletedProcess, Path]:
    png = tmp_path / "budget.png"
    command = [sys.executable, str(ROOT / "bench" / "budget_plot.py"), "--out", str(RUNS), "--rows", *rows,
               "--png", str(png)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120), png


def test_draws_the_committed_runs_and_names_the_row_it_left_out(tmp_path):
    result, png = plot(tmp_path, "+hr=1000", "no-such-row=2000")
    assert result.returncode == 0, result.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert f"no-such-row: no val evaluation in {RUNS / 'no-such-row'}, left out" in result.stdout


def test_nothing_to_draw_exits_non_zero_and_writes_nothing(tmp_path):
    result, png = plot(tmp_path, "no-such-row=2000")
    assert result.returncode != 0 and "none of ['no-such-row=2000'] has a val evaluation" in result.stderr
    assert not png.exists()
