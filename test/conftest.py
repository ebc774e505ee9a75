"""Shared fixtures: where the real data is (``../shared/data`` beside the checkout, or $DEPTH_NODE_DATA)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DATA_ROOT = Path(os.environ.get("DEPTH_NODE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(scope="session")
def redkitchen() -> Path:
    path = DATA_ROOT / "redkitchen"
    if not (path / "frame-000000.color.jpg").exists():
        pytest.skip(f"real data not found at {path} (set DEPTH_NODE_DATA to ../shared/data)")
    return path


@pytest.fixture(scope="session")
def redkitchen_bag() -> Path:
    path = DATA_ROOT / "bags" / "redkitchen_tof_x4"
    if not (path / "metadata.yaml").exists():
        pytest.skip(f"real robot log not found at {path} (set DEPTH_NODE_DATA to ../shared/data)")
    return path
