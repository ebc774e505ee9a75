"""The photometric reprojection loss, on the rendered sample log (exact depth and poses) and on real 7-Scenes frames.

Measured (photometric term; lower is better):

* sample log, target 000002, sources 000000 and 000004 (7 cm either side): true depth 0.0153, x0.8 0.0757,
  x1.25 0.0675, blurred (sigma 2 px) 0.0166, texture painted into depth (3 % of the median depth) 0.0194;
* redkitchen frame 100, sources 90 and 110 (7 and 9 cm), colour focal length 525: true 0.0541, x0.8 0.0714,
  x1.25 0.0620, blurred 0.0553, texture-painted 0.0559. With the 585 of camera-intrinsics.txt (the depth camera's;
  7-Scenes never calibrated its colour camera) x1.25 scores 0.0684 and the texture-painted depth 0.0736, both better
  than the true depth's 0.0740: the loss is only as right as the colour intrinsics it is given.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from depth_node_training.learning.datasets import open_frames
from depth_node_training.learning.photometric import (
    Source,
    pick_neighbours,
    relative_pose,
    reprojection_loss,
    warp,
)
from depth_node_training.logs import sample_bag
from depth_node_training.logs.extract import extract
from depth_node_training.logs.extracted_set import ExtractedSet

KINECT_COLOR_K = np.array([[525.0, 0, 320.0], [0, 525.0, 240.0], [0, 0, 1]])  # nominal Kinect v1 colour camera


def image(frame) -> torch.Tensor:
    return torch.from_numpy(frame.color).permute(2, 0, 1)[None].float() / 255.0


def batch(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(array, dtype=np.float64))[None]


def depth_tensor(depth: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(depth.astype(np.float32))[None, None]


def candidates(frame) -> dict[str, np.ndarray]:
    """The true depth and wrong ones: scaled, blurred, and with the image's texture painted into it."""
    depth, valid = frame.depth_hr, frame.depth_hr > 0
    gray = cv2.cvtColor(frame.color, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    high_pass = gray - cv2.GaussianBlur(gray, (0, 0), 2)
    painted = depth + 0.03 * np.median(depth[valid]) * high_pass / high_pass.std()
    return {"true": depth, "x0.8": 0.8 * depth, "x1.25": 1.25 * depth,
            "blurred": np.where(valid, cv2.GaussianBlur(depth, (0, 0), 2), 0),
            "texture": np.where(valid, painted, 0)}


def losses(target, sources, K: np.ndarray) -> dict[str, float]:
    srcs = [Source(image(s), batch(K), relative_pose(s.pose, target.pose)[None]) for s in sources]
    return {name: reprojection_loss(image(target), depth_tensor(depth), batch(K), srcs).photometric.item()
            for name, depth in candidates(target).items()}


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    root = tmp_path_factory.mktemp("photometric")
    extract([sample_bag.write_sample_bag(root / "log", frames=8)], root / "set", progress=False)
    return ExtractedSet(root / "set")


def test_sample_log_true_depth_scores_best(sample):
    neighbours = pick_neighbours(sample.poses, 2, (-2, -1, 1, 2), min_baseline=0.05)
    assert [sample[k].name for k in neighbours] == ["000000", "000004"]  # 1 frame apart is under 5 cm
    target = sample[2]
    assert target.pose is not None and target.depth_hr is not None
    scores = losses(target, [sample[k] for k in neighbours], target.K)
    assert scores["true"] < 0.02
    assert all(scores["true"] < scores[name] for name in ("x0.8", "x1.25", "blurred", "texture")), scores
    assert min(scores["x0.8"], scores["x1.25"]) > 3 * scores["true"]


def test_real_frames_true_depth_scores_best(redkitchen):
    frames = open_frames(f"{redkitchen}@90:111")
    target, sources = frames[10], [frames[0], frames[20]]
    assert target.name == "frame-000100" and target.pose is not None
    scores = losses(target, sources, KINECT_COLOR_K)
    assert all(scores["true"] < scores[name] for name in ("x0.8", "x1.25", "blurred", "texture")), scores
    documented = losses(target, sources, target.K)  # the depth camera's K: the colour looks farther than it is
    assert documented["x1.25"] < documented["true"]


def test_zero_baseline_gives_no_signal(sample):
    frame = sample[2]
    depth = depth_tensor(frame.depth_hr).requires_grad_()
    same = Source(image(frame), batch(frame.K), relative_pose(frame.pose, frame.pose)[None])
    result = reprojection_loss(image(frame), depth, batch(frame.K), [same], smoothness=0.0)
    assert result.valid.float().mean() > 0.99 and not result.signal.any()
    result.loss.backward()
    assert torch.count_nonzero(depth.grad) == 0
    assert pick_neighbours([frame.pose, frame.pose.copy()], 0, (1,), min_baseline=0.01) == []


def test_out_of_view_pixels_are_masked():
    """A plane 2 m away seen from 0.4 m to the right: with f = 100 the view shifts 20 px, so the target's last 20
    columns fall outside the 64-pixel-wide source."""
    rng = np.random.default_rng(0)
    K = batch([[100.0, 0, 31.5], [0, 100.0, 23.5], [0, 0, 1]])
    source = torch.from_numpy(rng.random((1, 3, 48, 64))).float()
    target = torch.from_numpy(rng.random((1, 3, 48, 64))).float()
    target[..., :44] = source[..., 20:]
    T = torch.eye(4, dtype=torch.float64)[None]
    T[0, 0, 3] = 0.4  # target camera points -> source camera points
    depth = torch.full((1, 1, 48, 64), 2.0, requires_grad=True)
    _, inside = warp(source, K, depth, K, T)
    assert inside[0, 0, 0].tolist() == [True] * 44 + [False] * 20
    result = reprojection_loss(target, depth, K, [Source(source, K, T)])
    assert torch.isinf(result.error[..., 44:]).all() and not result.signal[..., 44:].any()
    assert result.error[..., 1:-1, 1:43].max() < 1e-4 and result.signal[..., 1:-1, 1:43].all()
    result.loss.backward()
    assert torch.count_nonzero(depth.grad[..., 44:]) == 0 and torch.count_nonzero(depth.grad[..., :43]) > 0
    assert result.valid.all()  # out of view counts at its identity error, a constant: no pull either way


def test_gradients_flow_to_depth_and_point_to_the_true_scale(sample):
    target, sources = sample[2], [sample[0], sample[4]]
    srcs = [Source(image(s), batch(s.K), relative_pose(s.pose, target.pose)[None]) for s in sources]
    slopes = []
    for start in (0.9, 1.1):
        scale = torch.tensor(start, requires_grad=True)
        depth = depth_tensor(target.depth_hr) * scale
        depth.retain_grad()
        result = reprojection_loss(image(target), depth, batch(target.K), srcs, smoothness=0.1)
        result.loss.backward()
        assert torch.isfinite(depth.grad).all() and torch.count_nonzero(depth.grad[result.signal]) > 0
        assert result.smoothness > 0
        slopes.append(scale.grad.item())
    assert slopes[0] < 0 < slopes[1]  # gradient descent moves either wrong scale towards the true depth


def test_a_crop_with_its_intrinsics_sees_what_the_full_frame_sees(sample):
    """The target cropped (K's principal point moved), the sources full frames: the same errors inside the crop."""
    target, sources = sample[2], [sample[0], sample[4]]
    srcs = [Source(image(s), batch(s.K), relative_pose(s.pose, target.pose)[None]) for s in sources]
    depth = depth_tensor(target.depth_hr)
    full = reprojection_loss(image(target), depth, batch(target.K), srcs)
    top, left, h, w = 40, 96, 120, 160
    K = target.K.copy()
    K[0, 2] -= left
    K[1, 2] -= top
    crop = (..., slice(top, top + h), slice(left, left + w))
    cropped = reprojection_loss(image(target)[crop], depth[crop], batch(K), srcs)
    inner = (..., slice(1, -1), slice(1, -1))  # SSIM's 3x3 window reaches past the crop's edge
    torch.testing.assert_close(cropped.error[inner], full.error[crop][inner], atol=1e-4, rtol=0)
    assert torch.equal(cropped.signal[inner], full.signal[crop][inner])


def test_pick_neighbours():
    def at(x: float) -> np.ndarray:
        pose = np.eye(4)
        pose[0, 3] = x
        return pose

    poses = [at(0.0), at(0.08), None, at(0.1), at(0.2), at(0.3)]
    assert pick_neighbours(poses, 3, (-3, -2, -1, 1, 2, 3), min_baseline=0.05) == [0, 4, 5]  # 1: 2 cm, 2: no pose
    assert pick_neighbours(poses, 0, (-1, 1, 3), min_baseline=0.05) == [1, 3]
    assert pick_neighbours(poses, 2, (-1, 1), min_baseline=0.0) == []  # no pose of its own
    stamps = [0, 1, 2, 3, 4, 10**10]  # the last frame is from another recording
    assert pick_neighbours(poses, 4, (-1, 1), 0.05, stamps_ns=stamps, max_gap_ns=10**9) == [3]


def test_batch_items_without_a_neighbour_are_left_out():
    K = batch([[10.0, 0, 3.5], [0, 10.0, 3.5], [0, 0, 1]]).repeat(2, 1, 1)
    source = Source(torch.rand(2, 3, 8, 8), K, torch.eye(4, dtype=torch.float64).repeat(2, 1, 1),
                    available=torch.tensor([True, False]))
    depth = torch.full((2, 1, 8, 8), 2.0, requires_grad=True)
    result = reprojection_loss(torch.rand(2, 3, 8, 8), depth, K, [source])
    assert result.valid[0].all() and not result.valid[1].any()
    alone = reprojection_loss(torch.rand(1, 3, 8, 8), depth[:1], K[:1], [])  # no neighbour at all
    alone.loss.backward()
    assert alone.loss.item() == 0 and torch.count_nonzero(depth.grad) == 0
