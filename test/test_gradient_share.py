"""``loss.affinity_share``: the measured distillation weight gives the affinity term the stated share of the
supervision's encoder gradient, and measuring it changes nothing the run then does."""

from __future__ import annotations

import pytest
import torch
from depth_node_training.config import load_config
from depth_node_training.learning.gradient_share import affinity_weight
from depth_node_training.learning.networks import ReconstructionNet
from depth_node_training.learning.objective import WeakObjective
from depth_node_training.learning.teacher import freeze

from depth_node.network.depth_estimator import DepthEstimator

OVERRIDES = ["model.pretrained=false", "loss.w_affinity=1", "loss.affinity_share=0.25", "loss.teacher_view=full",
             "loss.distill=lr_coarse", "loss.affinity_form=reference", "loss.affinity_grid=[4,6]"]


def encoder_grad_norm_by_backward(model: DepthEstimator, loss: torch.Tensor) -> float:
    """The same norm another way: backward into ``.grad`` and read it off the encoder."""
    model.zero_grad(set_to_none=True)
    loss.backward(retain_graph=True)
    grads = [p.grad for p in model.encoder.parameters() if p.grad is not None]
    return float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads)))


@pytest.fixture
def batch():
    generator = torch.Generator().manual_seed(3)
    image = torch.rand(2, 3, 64, 96, generator=generator) * 2 - 1
    depth_lr = 1 + torch.rand(2, 1, 16, 24, generator=generator)
    depth_lr[:, :, :3, :5] = 0  # a hole
    return image, depth_lr, torch.zeros(2, 1, 64, 96)


def test_the_measured_weight_gives_the_stated_share(batch):
    torch.manual_seed(0)
    cfg = load_config(None, OVERRIDES)
    model, teacher = DepthEstimator(cfg.model), freeze(ReconstructionNet(cfg.model.min_depth, cfg.model.max_depth))
    objective = WeakObjective(model, teacher, cfg).train()
    weight = affinity_weight(objective, [batch], cfg)

    terms = objective(*batch)
    supervision = encoder_grad_norm_by_backward(model, terms["l_lr"] + terms["l_hr"])
    distillation = encoder_grad_norm_by_backward(model, weight * terms["l_affinity"])
    assert weight > 0 and distillation / supervision == pytest.approx(0.25, rel=1e-4)
    doubled = affinity_weight(objective, [batch], load_config(None, [*OVERRIDES, "loss.affinity_share=0.5"]))
    assert doubled == pytest.approx(2 * weight, rel=1e-6)


def test_measuring_leaves_running_statistics_random_state_and_gradients_as_they_were(batch):
    cfg = load_config(None, OVERRIDES)
    model, teacher = DepthEstimator(cfg.model), freeze(ReconstructionNet(cfg.model.min_depth, cfg.model.max_depth))
    objective = WeakObjective(model, teacher, cfg).train()
    buffers = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    affinity_weight(objective, [batch, batch], cfg)
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in buffers.items())
    assert all(p.grad is None for p in model.parameters())


def test_a_term_without_encoder_gradient_is_named(batch):
    cfg = load_config(None, OVERRIDES)
    model, teacher = DepthEstimator(cfg.model), freeze(ReconstructionNet(cfg.model.min_depth, cfg.model.max_depth))
    for p in model.encoder.parameters():
        p.requires_grad_(False)  # a frozen encoder: no share to set
    objective = WeakObjective(model, teacher, cfg).train()
    with pytest.raises(ValueError, match=r"^loss\.affinity_share: the affinity term sends no gradient"):
        affinity_weight(objective, [batch], cfg)
