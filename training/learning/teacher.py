"""The distillation teacher: a depth-to-depth network pre-trained on the log's LR depth alone, then frozen.

A teacher that only reconstructs its own input learns an identity through its skip connections and its features
carry nothing the student lacks (our first design, trained jointly: the affinity loss stayed flat). So the teacher
is given a task that needs the scene's structure, pre-trained on the training frames' LR depth before the student
starts, and frozen (a fixed target). ``loss.teacher`` picks the task:

- ``super_resolution`` (the default, chosen on validation): the input is the LR depth reduced x4 by ``down`` and
  repeated back to the LR grid (blocky); the target is the LR depth. Sharpening needs edges and surfaces. At
  distillation time it sees the same reduction.
- ``completion``: the input keeps a random 5-100% of the valid LR pixels and loses a random rectangle; the target is
  the whole LR depth. Filling the holes needs surfaces, edges and ordering. At distillation time the teacher sees the
  LR depth as the sensor gave it (the 100% end of its training range).
- ``fastdepth``: no pre-training here: FastDepth's image-to-depth network, trained on NYU Depth v2 (``loss.
  teacher_weights``: its .tflite). It brings structure a depth-to-depth teacher cannot know (what
  the image says about surfaces), learned from metric indoor depth rather than from this log. It sees the HR image
  (its features at HR strides 2-32 are matched to the student's by the area they cover).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from depth_node.network.fastdepth import FastDepth
from depth_node.network.model_config import ModelConfig
from depth_node.network.reduce import down, valid_depth

from ..config import Config
from .fastdepth_tflite import load_fastdepth_prior
from .losses import masked_depth_loss
from .networks import ReconstructionNet
from .training_pairs import TrainingPairs

TASKS = ("completion", "super_resolution")
IMAGE_TEACHERS = ("fastdepth",)  # teachers that see the image, not the depth: used as they are, never pre-trained
SR_FACTOR = 4
CROP = (64, 80)  # LR pixels per pre-training sample: about a training crop's LR footprint at x4


def teacher_input(depth: torch.Tensor, task: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """What the teacher sees of an (N,1,h,w) LR depth (0 = invalid): degraded at random while it is pre-trained
    (``generator`` given), the task's fixed view of the sensor's depth at distillation time (``generator`` None)."""
    if task == "super_resolution":
        h, w = depth.shape[-2:]
        coarse = down(depth, (math.ceil(h / SR_FACTOR), math.ceil(w / SR_FACTOR)), depth > 0)
        return F.interpolate(coarse, size=(h, w), mode="nearest")
    if task != "completion":
        raise ValueError(f"unknown loss.teacher {task!r}; choose one of {TASKS}")
    if generator is None:
        return depth
    n, _, h, w = depth.shape
    keep_fraction = torch.empty(n, 1, 1, 1).uniform_(0.05, 1.0, generator=generator)
    keep = torch.rand(depth.shape, generator=generator) < keep_fraction
    for i in range(n):  # one rectangular hole, up to half of each side: structure must bridge it
        hh, hw = (int(torch.randint(1, max(2, s // 2), (1,), generator=generator)) for s in (h, w))
        y, x = int(torch.randint(0, h - hh + 1, (1,), generator=generator)), int(
            torch.randint(0, w - hw + 1, (1,), generator=generator))
        keep[i, :, y:y + hh, x:x + hw] = False
    return depth * keep


def lr_maps(pairs: TrainingPairs) -> torch.Tensor:
    """(N,1,h,w) LR supervision of every readable training frame (0 = invalid), the teacher's whole training set."""
    cfg_data = pairs.data
    maps = [pairs.supervised_frame(i)[1] for i in range(len(pairs))]
    depth = torch.from_numpy(np.stack(maps).astype(np.float32))[:, None]
    return torch.where(valid_depth(depth, cfg_data.min_depth, cfg_data.max_depth), depth, torch.zeros_like(depth))


def pretrain_teacher(pairs: TrainingPairs, cfg: Config, device: torch.device, progress: bool = True,
                     batch_size: int = 8) -> ReconstructionNet:
    """Train the teacher on its task for ``loss.teacher_steps`` steps, then freeze it (eval mode, no gradients).

    Its own seeded generators and forked global RNG: a run with a teacher draws the same student initialisation and
    data as the run without one, so the two are paired; its gradients are clipped at ``train.teacher_grad_clip``."""
    generator = torch.Generator().manual_seed(cfg.train.seed + 7919)
    depth = lr_maps(pairs)
    h, w = (min(c, s) for c, s in zip(CROP, depth.shape[-2:]))
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(cfg.train.seed + 7919)
        teacher = ReconstructionNet(cfg.model.min_depth, cfg.model.max_depth).to(device).train()
    steps = cfg.loss.teacher_steps
    optimizer = torch.optim.AdamW(teacher.parameters(), lr=1e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(1, steps))
    bar = tqdm(range(steps), desc=f"teacher ({cfg.loss.teacher})", disable=not progress, dynamic_ncols=True)
    for _ in bar:
        y, x = (int(torch.randint(0, s - c + 1, (1,), generator=generator)) for s, c in zip(depth.shape[-2:], (h, w)))
        target = depth[torch.randint(0, len(depth), (batch_size,), generator=generator), :, y:y + h, x:x + w]
        flip = torch.rand(batch_size, generator=generator) < 0.5
        target = torch.where(flip[:, None, None, None], target.flip(-1), target)
        pred = teacher(teacher_input(target, cfg.loss.teacher, generator).to(device))
        loss = masked_depth_loss(pred, target.to(device), target.to(device) > 0, cfg.loss.form)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(teacher.parameters(), cfg.train.teacher_grad_clip or math.inf)
        optimizer.step()
        schedule.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    return freeze(teacher)


def image_teacher(cfg: Config, device: torch.device) -> nn.Module:
    """The frozen FastDepth teacher (``loss.teacher=fastdepth``) from ``loss.teacher_weights``."""
    if not cfg.loss.teacher_weights:
        raise ValueError("loss.teacher=fastdepth needs loss.teacher_weights=PATH/fast_depth_224.tflite")
    model_cfg = ModelConfig(min_depth=cfg.model.min_depth, max_depth=cfg.model.max_depth, arch="fastdepth",
                            mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), prior=cfg.loss.teacher_weights)
    teacher = FastDepth(model_cfg)
    load_fastdepth_prior(teacher, model_cfg)
    return freeze(teacher.to(device))


def freeze(teacher: nn.Module) -> nn.Module:
    teacher.eval()
    teacher.requires_grad_(False)
    return teacher
