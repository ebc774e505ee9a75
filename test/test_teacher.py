"""The distillation teacher: its pre-training tasks are not identities, it learns them, it is frozen, and the
student/teacher feature levels it is compared at cover the same image area."""

import numpy as np
import pytest
import torch
from depth_node_training.config import Config, DataConfig, LossConfig, TrainConfig
from depth_node_training.frames import Frame
from depth_node_training.learning.losses import masked_depth_loss
from depth_node_training.learning.networks import ReconstructionNet
from depth_node_training.learning.objective import STUDENT_STRIDES, matched_levels
from depth_node_training.learning.teacher import pretrain_teacher, teacher_input
from depth_node_training.learning.training_pairs import TrainingPairs


def planes(n: int, h: int = 48, w: int = 64, seed: int = 0) -> list[Frame]:
    """Depth maps of two slanted planes meeting at a random vertical edge (structure a teacher can learn)."""
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n):
        x = np.arange(w)[None, :].repeat(h, 0)
        edge = rng.integers(w // 4, 3 * w // 4)
        depth = np.where(x < edge, 1.0 + 0.02 * x, 3.0 - 0.01 * x).astype(np.float32)
        depth += 0.005 * np.arange(h)[:, None]
        frames.append(Frame(name=str(i), color=np.zeros((h * 4, w * 4, 3), np.uint8), K=np.eye(3), depth_lr=depth))
    return frames


def test_completion_input_only_removes_pixels_and_is_identity_at_distillation_time():
    depth = torch.rand(4, 1, 30, 40) + 1.0
    degraded = teacher_input(depth, "completion", torch.Generator().manual_seed(0))
    kept = degraded > 0
    assert torch.equal(degraded[kept], depth[kept]) and kept.float().mean() < 0.9
    assert torch.equal(teacher_input(depth, "completion"), depth)


def test_super_resolution_input_is_blocky_and_deterministic():
    depth = torch.rand(2, 1, 32, 40) + 1.0
    coarse = teacher_input(depth, "super_resolution")
    assert coarse.shape == depth.shape
    assert torch.equal(coarse, teacher_input(depth, "super_resolution", torch.Generator().manual_seed(1)))
    assert torch.equal(coarse[..., 0:4, 0:4], coarse[..., :1, :1].expand(2, 1, 4, 4))  # one value per 4x4 block
    assert torch.allclose(coarse[..., 0, 0], depth[..., :4, :4].mean((-1, -2)))


def test_unknown_task_is_refused_by_name():
    with pytest.raises(ValueError, match="loss.teacher 'copy'"):
        teacher_input(torch.ones(1, 1, 4, 4), "copy")


@pytest.mark.parametrize("task", ["completion", "super_resolution"])
def test_pretraining_learns_the_task_and_freezes_the_teacher(task):
    torch.manual_seed(0)
    frames = planes(12)
    cfg = Config(data=DataConfig(min_depth=0.1, max_depth=10.0), loss=LossConfig(teacher=task, teacher_steps=60),
                 train=TrainConfig(seed=0))
    held_out = torch.from_numpy(np.stack([f.depth_lr for f in planes(4, seed=9)]))[:, None]
    degraded = teacher_input(held_out, task, torch.Generator().manual_seed(5))
    untrained = ReconstructionNet(0.1, 10.0).eval()
    with torch.no_grad():
        before = masked_depth_loss(untrained(degraded), held_out, held_out > 0).item()
    teacher = pretrain_teacher(TrainingPairs(frames, cfg.data), cfg, torch.device("cpu"), progress=False)
    with torch.no_grad():
        after = masked_depth_loss(teacher(degraded), held_out, held_out > 0).item()
    assert after < 0.5 * before, (before, after)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())


@pytest.mark.parametrize("scale", [1.0, 4.0, 8.0, 5.16])
def test_matched_levels_cover_the_same_image_area(scale):
    pairs = matched_levels(scale)
    assert len(pairs) == 2 and pairs[0][1] < pairs[1][1]
    for level, stride, t_level in pairs:
        assert STUDENT_STRIDES[level] == stride
        ratio = stride / (ReconstructionNet.FEATURE_STRIDES[t_level] * scale)
        assert 0.5 <= ratio <= 2.0
    if scale in (1.0, 4.0, 8.0):  # an exact match exists for every pair
        assert all(s == ReconstructionNet.FEATURE_STRIDES[t] * scale for _, s, t in pairs)
