"""Planarity (6): on a plane seen by the LR sensor, texture copied into the HR estimate costs, though (2) cannot see
it (the same footprint means); the true depth costs nothing, and a real depth edge is left free."""

from __future__ import annotations

import torch
from depth_node_training.config import load_config
from depth_node_training.learning.objective import weak_losses
from depth_node_training.learning.planarity import planar_mask, planarity_loss

from depth_node.network.depth_estimator import DepthEstimator
from depth_node.network.reduce import down, valid_depth

H, W, FACTOR = 64, 96, 4


def plane(a: float = 0.002, b: float = 0.003, c: float = 0.4) -> torch.Tensor:
    """HR depth of a slanted plane: inverse depth linear in the pixel coordinates (1.3-2.5 m here)."""
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    return (1.0 / (c + a * u + b * v))[None, None]


def texture(depth: torch.Tensor, amplitude: float = 0.03) -> torch.Tensor:
    """Depth with a 1-pixel checkerboard of relative ``amplitude``: zero mean over every 4x4 footprint."""
    v, u = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    checker = ((u + v) % 2 * 2 - 1).to(depth.dtype)
    return depth * (1 + amplitude * checker)


def lr_of(depth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    lr = down(depth, (H // FACTOR, W // FACTOR))
    return lr, valid_depth(lr, 0.1, 10.0)


def test_the_sensor_sees_the_plane_and_not_across_a_depth_edge():
    lr, valid = lr_of(plane())
    mask = planar_mask(lr, valid, 0.02)
    assert mask[..., 1:-1, 1:-1].all() and not mask[..., 0, :].any() and not mask[..., :, -1].any()
    step = torch.where(torch.arange(W) < 48, plane(), plane() * 1.5)  # a box 50% further from column 48
    lr, valid = lr_of(step)
    mask = planar_mask(lr, valid, 0.02)
    assert not mask[..., 1:-1, 11:13].any() and mask[..., 1:-1, 1:10].all() and mask[..., 1:-1, 14:-1].all()
    holed = valid.clone()
    holed[..., 5, 5] = False
    assert not planar_mask(lr, holed, 0.02)[..., 4:7, 4:7].any()  # a reading missing: no plane claimed around it


def test_copied_texture_costs_though_the_footprint_means_agree():
    truth = plane()
    lr, valid = lr_of(truth)
    mask = planar_mask(lr, valid, 0.02)
    copied = texture(truth)
    assert torch.allclose(down(copied, lr.shape[-2:]), lr, rtol=1e-3)  # (2) sees no difference
    assert planarity_loss(truth, mask) < 1e-6
    assert planarity_loss(copied, mask) > 0.05
    step = torch.where(torch.arange(W) < 48, truth, truth * 1.5)
    lr, valid = lr_of(step)
    assert planarity_loss(step, planar_mask(lr, valid, 0.02)) < 1e-6  # the true edge is free


def test_the_objective_trains_the_hr_estimate_toward_the_plane():
    cfg = load_config(None, ["model.pretrained=false", "loss.w_planar=1", "loss.w_affinity=0"])
    model = DepthEstimator(cfg.model).train()
    lr = lr_of(plane().float())[0].expand(2, -1, -1, -1)
    terms = weak_losses(model, None, torch.rand(2, 3, H, W) * 2 - 1, lr, torch.zeros(2, 1, H, W), cfg)
    assert {"l_lr", "l_hr", "l_planar"} <= set(terms) and terms["l_planar"] > 0
    terms["l_planar"].backward()
    assert model.head.conv.weight.grad.abs().sum() > 0
    off = weak_losses(model, None, torch.rand(2, 3, H, W), lr, torch.zeros(2, 1, H, W),
                      load_config(None, ["model.pretrained=false", "loss.w_affinity=0"]))
    assert "l_planar" not in off
