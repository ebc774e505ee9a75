"""Affinity distillation: make the estimator's pairwise feature similarities match the reconstruction network's.

A feature map (N,C,h,w) is average-pooled to a fixed grid (so memory is bounded whatever the image size: a 30x40 grid
gives a 1200x1200 matrix per image), each cell's C-vector is centred on the image's mean over its valid cells and
L2-normalised, and the affinity matrix is the cosine similarity of every pair of cells. Centring matters: post-ReLU
features are non-negative, so raw cosine similarities all sit in a narrow band near 1 and carry little contrast.
Comparing affinities instead of features lets networks of different widths (and
inputs: color vs depth) be compared, and transfers *structure* (which regions belong to the same surface) rather
than appearance.

``form`` "reference" is the closest public reference's instead (Liu et al., "Structured Knowledge Distillation for
Dense Prediction"): cells max-pooled, no centring, cosine of the L2-normalised vectors, squared difference.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def crop_valid(feature: torch.Tensor, size: tuple[int, int], stride: int) -> torch.Tensor:
    """Drop the cells that only cover stride padding; ``size`` is the unpadded (h, w) input of the map."""
    h, w = size
    return feature[..., : math.ceil(h / stride), : math.ceil(w / stride)]


FORMS = ("centred_l1", "reference")


def affinity(feature: torch.Tensor, grid: tuple[int, int], cells: torch.Tensor | None = None,
             pool: str = "avg") -> torch.Tensor:
    """(N,C,h,w) -> (N, G, G) cosine-similarity matrix of the cells of a ``grid``-pooled feature map, G = gh*gw.

    With ``cells`` ((N, G) weights of the cells that count), each cell vector is first centred on their mean."""
    pooling = F.adaptive_max_pool2d if pool == "max" else F.adaptive_avg_pool2d
    pooled = pooling(feature.float(), grid).flatten(2)  # N, C, G
    if cells is not None:
        weights = cells[:, None, :] / cells.sum(1).clamp(min=1)[:, None, None]
        pooled = pooled - (pooled * weights).sum(2, keepdim=True)
    pooled = F.normalize(pooled, dim=1)
    return pooled.transpose(1, 2) @ pooled


def affinity_loss(student: torch.Tensor, teacher: torch.Tensor, valid: torch.Tensor,
                  grid: tuple[int, int], form: str = "centred_l1") -> torch.Tensor:
    """Mean |A_student - A_teacher| (``reference``: squared) over pairs of grid cells that both have valid depth; the
    teacher is not updated.

    ``valid`` is the (N,1,h,w) validity of the LR ground truth; a cell counts when at least half of it is valid.
    """
    if form not in FORMS:
        raise ValueError(f"unknown loss.affinity_form {form!r}; choose one of {FORMS}")
    cells = (F.adaptive_avg_pool2d(valid.float(), grid).flatten(1) >= 0.5).float()  # N, G
    pairs = cells[:, :, None] * cells[:, None, :]
    if pairs.sum() == 0:
        return student.sum() * 0.0
    if form == "reference":
        diff = (affinity(student, grid, pool="max") - affinity(teacher.detach(), grid, pool="max")) ** 2
    else:
        diff = (affinity(student, grid, cells) - affinity(teacher.detach(), grid, cells)).abs()
    return (diff * pairs).sum() / pairs.sum()
