"""The training objective: the paper's four weak-supervision terms (or the HR-oracle loss), as named loss terms.

With D_hr = f(I_hr), D_lr = f(down(I_hr)) (one network, shared weights), G_lr the LR ground truth:
  l_lr       (1) L(D_lr, G_lr)
  l_hr       (2) L(down(D_hr), G_lr)            down = masked footprint mean, as the sensor reduces
  l_cons     (3) L(D_lr, down(D_hr))            everywhere, no ground truth needed (``loss.cons_grad``: which side
                                                 learns; ``loss.cons_penalty``: the form or Charbonnier)
  l_affinity (4) |A(f features) - A(g features)| with g the frozen, pre-trained teacher (``teacher.py``) run on G_lr
                 (or, ``loss.teacher=fastdepth``, FastDepth's NYU-trained image-to-depth network run on the HR image)
                 (``loss.teacher_view``, ``loss.distill``, ``loss.affinity_form``: what it sees, where, which form)
  l_motion   (5) photometric reprojection of D_hr onto neighbour frames (``photometric.py``, ``neighbours.py``):
                 the robot's own motion constrains the detail inside an LR footprint that (2) leaves free
  l_planar   (6) where G_lr is a plane, so is D_hr inside it: relative second differences of 1/D_hr (``planarity.py``)
A term whose weight is 0 is not computed (the lr-only run never even runs the HR branch).

Both passes normalise the decoder with their own batch's statistics in training; ``train.decoder_bn_stats`` says which
of them update the running statistics that evaluation and export use: ``both`` (mixed, about half LR), or ``hr`` (the
deployed pass only; issue 21 measured a mix as a train/deploy mismatch).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from depth_node.network.depth_estimator import DepthEstimator
from depth_node.network.reduce import down, valid_depth

from ..config import Config
from .affinity import affinity_loss, crop_valid
from .losses import masked_depth_loss
from .networks import ReconstructionNet
from .photometric import Source, reprojection_loss
from .planarity import planar_mask, planarity_loss
from .teacher import IMAGE_TEACHERS, teacher_input

STUDENT_STRIDES = (32, 16, 8, 4, 2)  # of the estimator's decoder levels, coarse to fine
LR_COARSE_STRIDE = 4  # ``loss.distill=lr_coarse``: the one level distilled, on the LR grid (15x20 for a 60x80 crop)


def matched_levels(scale: float, teacher_strides: tuple[float, ...] = ReconstructionNet.FEATURE_STRIDES
                   ) -> list[tuple[int, int, int]]:
    """The two finest (student level, its stride, teacher level) pairs whose cells cover about the same image area.

    ``scale`` is the student's input size over the LR grid's (the factor for the HR branch, 1 for the LR branch): a
    teacher level of stride t on the LR grid matches a student level of stride near t * scale (within x2); pairs are
    taken closest first, each level at most once."""
    candidates = sorted(
        (abs(math.log2(s_stride / (t_stride * scale))), s_level, t_level)
        for s_level, s_stride in enumerate(STUDENT_STRIDES)
        for t_level, t_stride in enumerate(teacher_strides)
    )
    pairs: list[tuple[int, int, int]] = []
    for error, s_level, t_level in candidates:
        if error <= 1 and all(s_level != p[0] and t_level != p[2] for p in pairs):
            pairs.append((s_level, STUDENT_STRIDES[s_level], t_level))
    return sorted(pairs, key=lambda p: p[1])[:2]


@contextmanager
def running_stats_kept(module: nn.Module, keep: bool = True) -> Iterator[None]:
    """BatchNorm layers of ``module`` normalise with their batch's statistics as usual in training, but leave their
    running statistics as they are (momentum 0), so a pass that is not deployed does not shift what evaluation uses."""
    layers = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)] if keep else []
    momenta = [m.momentum for m in layers]
    for m in layers:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum in zip(layers, momenta):
            m.momentum = momentum


class WeakObjective(nn.Module):
    """Estimator + teacher + loss terms in one module, so DistributedDataParallel can wrap the whole training step."""

    def __init__(self, model: DepthEstimator, teacher: ReconstructionNet | None, cfg: Config) -> None:
        super().__init__()
        self.model, self.teacher, self.cfg = model, teacher, cfg

    def forward(self, image: torch.Tensor, depth_lr: torch.Tensor, depth_hr: torch.Tensor,
                motion: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Loss terms for one batch; ``image`` is normalised HR RGB, depths are metres with 0 = invalid, ``motion``
        the batch's ``motion_*`` items (``neighbours.py``) when the motion term is on."""
        return weak_losses(self.model, self.teacher, image, depth_lr, depth_hr, self.cfg, motion)


def weak_losses(model: DepthEstimator, teacher: ReconstructionNet | None, image: torch.Tensor, depth_lr: torch.Tensor,
                depth_hr: torch.Tensor, cfg: Config, motion: dict[str, torch.Tensor] | None = None
                ) -> dict[str, torch.Tensor]:
    """Loss terms for one batch (see the module docstring)."""
    loss, data = cfg.loss, cfg.data
    if loss.supervision == "hr":
        d_hr = model(image)
        return {"l_oracle": masked_depth_loss(d_hr, depth_hr, valid_depth(depth_hr, data.min_depth, data.max_depth),
                                               loss.form)}
    lr_size = depth_lr.shape[-2:]
    valid_lr = valid_depth(depth_lr, data.min_depth, data.max_depth)
    image_lr = down(image, lr_size)
    hr_branch = loss.w_hr > 0 or loss.w_cons > 0 or loss.w_planar > 0 or (loss.w_motion > 0 and motion is not None)
    with running_stats_kept(model.decoder, hr_branch and cfg.train.decoder_bn_stats == "hr"):
        feats_lr = model.forward_features(image_lr)
    d_lr = model.predict(feats_lr, lr_size)
    terms = {"l_lr": masked_depth_loss(d_lr, depth_lr, valid_lr, loss.form)}
    students = [(feats_lr, lr_size)]
    if hr_branch:
        feats_hr = model.forward_features(image)
        d_hr = model.predict(feats_hr, image.shape[-2:])
        d_hr_down = down(d_hr, lr_size)
        students.append((feats_hr, image.shape[-2:]))
        if loss.w_hr > 0:
            terms["l_hr"] = masked_depth_loss(d_hr_down, depth_lr, valid_lr, loss.form)
        if loss.w_cons > 0:
            terms["l_cons"] = consistency(d_lr, d_hr_down, cfg)
        if loss.w_motion > 0 and motion is not None:
            terms["l_motion"] = motion_loss(d_hr, motion, loss.motion_smoothness)
        if loss.w_planar > 0:
            terms["l_planar"] = planarity_loss(d_hr, planar_mask(depth_lr, valid_lr, loss.planar_tolerance))
    if teacher is not None and loss.w_affinity > 0:
        view = teacher_view(image, depth_lr, valid_lr, cfg)
        with torch.no_grad():
            t_feats = teacher.forward_features(view)
        size = view.shape[-2:]
        on_lr_grid = tuple(s * lr_size[0] / size[0] for s in teacher.FEATURE_STRIDES)  # strides in LR pixels
        pairs = [
            affinity_loss(crop_valid(feats[level], s_size, stride),
                          crop_valid(t_feats[t_level], size, teacher.FEATURE_STRIDES[t_level]),
                          valid_lr, loss.affinity_grid, loss.affinity_form)
            for feats, s_size, level, stride, t_level in distilled(students, lr_size, loss.distill, on_lr_grid)
        ]
        terms["l_affinity"] = torch.stack(pairs).mean()
    return terms


def consistency(d_lr: torch.Tensor, d_hr_down: torch.Tensor, cfg: Config) -> torch.Tensor:
    """(3) between the LR estimate and the reduced HR one, everywhere; ``loss.cons_grad`` stops the gradient through
    one side (``hr_teaches_lr``: the deployed HR output is not pulled toward the worse LR one)."""
    loss = cfg.loss
    lr_side = d_lr.detach() if loss.cons_grad == "lr_teaches_hr" else d_lr
    hr_side = d_hr_down.detach() if loss.cons_grad == "hr_teaches_lr" else d_hr_down
    form = "charbonnier" if loss.cons_penalty == "charbonnier" else loss.form
    return masked_depth_loss(lr_side, hr_side, torch.ones_like(d_lr, dtype=torch.bool), form)


def motion_loss(d_hr: torch.Tensor, motion: dict[str, torch.Tensor], smoothness: float) -> torch.Tensor:
    """(5): the reprojection loss of the HR estimate against each neighbour slot the batch has."""
    sources = [Source(motion["motion_sources"][:, s], motion["motion_source_K"][:, s], motion["motion_T"][:, s],
                      motion["motion_available"][:, s]) for s in range(motion["motion_sources"].shape[1])]
    return reprojection_loss(motion["motion_target"], d_hr, motion["motion_K"], sources, smoothness).loss


def teacher_view(image: torch.Tensor, depth_lr: torch.Tensor, valid_lr: torch.Tensor, cfg: Config
                 ) -> torch.Tensor:
    """What the frozen teacher sees: the HR image as RGB in [0, 1] for an image teacher (``fastdepth``: near the
    224x304 it was trained at, where the LR image would be 4-8x smaller), else the LR depth (0 = invalid) as the sensor
    gave it (``loss.teacher_view=full``) or in its task's view."""
    loss = cfg.loss
    if loss.teacher in IMAGE_TEACHERS:
        mean, std = (torch.tensor(v, dtype=image.dtype, device=image.device).reshape(1, 3, 1, 1)
                     for v in (cfg.model.mean, cfg.model.std))
        return (image * std + mean).clamp(0.0, 1.0)
    sensor = torch.where(valid_lr, depth_lr, 0.0)
    return sensor if loss.teacher_view == "full" else teacher_input(sensor, loss.teacher)


def distilled(students: list[tuple[list[torch.Tensor], tuple[int, int]]], lr_size: tuple[int, int], mode: str,
              teacher_strides: tuple[float, ...] = ReconstructionNet.FEATURE_STRIDES
              ) -> list[tuple[list[torch.Tensor], tuple[int, int], int, int, int]]:
    """(student features, input size, student level, its stride, teacher level) of each distilled pair.

    ``matched``: every branch at its two finest levels matched to the teacher's; ``lr_coarse``: only the LR branch,
    whose input grid is the teacher's, one-to-one at the teacher's coarsest level (stride 4: a 15x20 graph for a 60x80
    LR crop), where the HR branch's sub-footprint detail is not pulled toward a blocky depth's structure."""
    if mode == "lr_coarse":
        feats, size = students[0]
        return [(feats, size, STUDENT_STRIDES.index(LR_COARSE_STRIDE), LR_COARSE_STRIDE,
                 teacher_strides.index(LR_COARSE_STRIDE))]
    return [(feats, size, level, stride, t_level) for feats, size in students
            for level, stride, t_level in matched_levels(size[0] / lr_size[0], teacher_strides)]


def total_loss(terms: dict[str, torch.Tensor], cfg: Config, affinity_ramp: float = 1.0) -> torch.Tensor:
    """Weighted sum; ``affinity_ramp`` in [0, 1] phases distillation in while the student's features are still raw."""
    weights = {"l_lr": cfg.loss.w_lr, "l_hr": cfg.loss.w_hr, "l_cons": cfg.loss.w_cons,
               "l_affinity": cfg.loss.w_affinity * affinity_ramp, "l_motion": cfg.loss.w_motion,
               "l_planar": cfg.loss.w_planar, "l_oracle": 1.0}
    return sum(weights[name] * value for name, value in terms.items())
