"""Masked depth losses. Every loss averages over valid pixels only, is 0 for a perfect prediction and grows with error.

Forms (``LossConfig.form``):
- ``l1``: mean |pred - gt| in metres; robust, and metric (the product needs absolute scale).
- ``log_l1``: mean |log pred - log gt|; relative error, so far pixels weigh as much as near ones.
- ``berhu``: reverse Huber (Laina et al. 2016) with threshold c = 0.2 max|error| of the batch.
- ``silog``: scale-invariant log loss (Eigen et al. 2014) with lambda = 0.85, plus its scale term kept by lambda < 1.
- ``charbonnier``: mean sqrt(error^2 + eps^2) - eps in metres, eps = 0.01: L1's robustness, smooth at 0 (offered to
  the consistency term (3), whose two sides are both predictions).
"""

from __future__ import annotations

import torch

FORMS = ("l1", "log_l1", "berhu", "silog", "charbonnier")
CHARBONNIER_EPS = 0.01


def masked_depth_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, form: str = "l1") -> torch.Tensor:
    """Loss between two depth maps of the same shape over ``mask`` (a pixel contributes nothing where mask is False)."""
    if form not in FORMS:
        raise ValueError(f"unknown loss form {form!r}; choose one of {FORMS}")
    mask = mask & torch.isfinite(target)
    if not mask.any():
        return pred.sum() * 0.0
    p, t = pred[mask], target[mask]
    if form == "l1":
        return (p - t).abs().mean()
    if form == "log_l1":
        return (torch.log(p) - torch.log(t.clamp(min=1e-6))).abs().mean()
    if form == "charbonnier":
        return (torch.sqrt((p - t) ** 2 + CHARBONNIER_EPS**2) - CHARBONNIER_EPS).mean()
    if form == "berhu":
        err = (p - t).abs()
        c = (0.2 * err.max()).detach().clamp(min=1e-6)
        return torch.where(err <= c, err, (err**2 + c**2) / (2 * c)).mean()
    g = torch.log(p) - torch.log(t.clamp(min=1e-6))
    return torch.sqrt((g**2).mean() - 0.85 * g.mean() ** 2 + 1e-8)
