"""Shared fixtures: where the real data is (``../shared/data`` beside the checkout, or $DEPTH_NODE_DATA)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

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


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    """The shipped model when present, else a fresh one (ImageNet encoder, random decoder) with real metadata."""
    from depth_node_training.config import load_config
    from depth_node_training.learning.checkpoint import save_checkpoint

    from depth_node.default_model import MODEL_DIR
    from depth_node.network.factory import make_network

    if (MODEL_DIR / "default.pt").exists():
        return MODEL_DIR / "default.pt"
    torch.manual_seed(0)
    cfg = load_config(None, ["model.min_depth=0.2", "model.max_depth=8.0"])
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    meta = {"data": ["redkitchen@0:500"], "git_rev": "abc1234"}
    return save_checkpoint(path, make_network(cfg.model), cfg, 7, meta)


@pytest.fixture(scope="module")
def context(request):
    """An rclpy context on the requesting module's own DDS domain (its ``DOMAIN_ID``), shut down after the module."""
    import rclpy

    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=request.module.DOMAIN_ID)
    yield ctx
    rclpy.shutdown(context=ctx)
