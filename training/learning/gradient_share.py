"""The distillation weight set by gradient share (``loss.affinity_share``, issue 21).

A fixed ``w_affinity`` means a different pull on the shared encoder for every teacher, form and level; stated as a
share instead, it says how much the affinity term (4) may move the encoder against the supervision (1)+(2): the
weight is ``share * |grad sup| / |grad affinity|``, the norms over the encoder's parameters, averaged over the first
batches student training will see, measured before its first step without changing anything the run then does
(running statistics and random states are left as they were)."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from ..config import Config
from .objective import WeakObjective

SHARE_BATCHES = 4  # batches the two gradient norms are averaged over


def encoder_gradient_norm(loss: torch.Tensor, encoder: torch.nn.Module) -> float:
    """L2 norm of ``loss``'s gradient over the encoder's trainable parameters (0 where it does not reach)."""
    params = [p for p in encoder.parameters() if p.requires_grad]
    if not params:
        return 0.0
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads if g is not None)))


def gradient_norms(objective: WeakObjective, batches: Iterable[tuple[torch.Tensor, ...]], cfg: Config
                   ) -> tuple[float, float]:
    """Mean encoder gradient norms of the supervision ``w_lr l_lr + w_hr l_hr`` and of ``l_affinity`` (unweighted)
    over ``batches`` of (normalised image, LR depth, HR depth)."""
    supervision, affinity, n = 0.0, 0.0, 0
    model = objective.model
    device = next(model.parameters()).device
    buffers = {name: b.clone() for name, b in model.named_buffers()}  # BatchNorm statistics and batch counts
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            for image, depth_lr, depth_hr in batches:
                terms = objective(image, depth_lr, depth_hr)
                sup = cfg.loss.w_lr * terms["l_lr"] + cfg.loss.w_hr * terms.get("l_hr", 0.0)
                supervision += encoder_gradient_norm(sup, model.encoder)
                affinity += encoder_gradient_norm(terms["l_affinity"], model.encoder)
                n += 1
    finally:
        with torch.no_grad():
            for name, b in model.named_buffers():
                b.copy_(buffers[name])
    if n == 0:
        raise ValueError("loss.affinity_share: no batch to measure the gradients on")
    return supervision / n, affinity / n


def affinity_weight(objective: WeakObjective, batches: Iterable[tuple[torch.Tensor, ...]], cfg: Config) -> float:
    """``w_affinity`` that makes the affinity gradient in the encoder ``loss.affinity_share`` of the supervision's."""
    supervision, affinity = gradient_norms(objective, batches, cfg)
    if not affinity > 0:
        raise ValueError("loss.affinity_share: the affinity term sends no gradient to the encoder (frozen, or not "
                         "reached), so no weight can give it a share")
    return cfg.loss.affinity_share * supervision / affinity
