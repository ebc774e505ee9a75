"""The reduction operator, masked losses, affinities and metrics on hand-made numbers."""

import numpy as np
import pytest
import torch
from depth_node_training.evaluation.metrics import depth_metrics
from depth_node_training.learning.affinity import affinity, affinity_loss
from depth_node_training.learning.losses import FORMS, masked_depth_loss

from depth_node.network.reduce import area_mean, area_weights, down, down_depth_np, lr_size, valid_depth


def test_down_matches_lr_sensor_definition():
    """Each LR pixel = mean of the valid HR pixels of its 2x2 footprint; invalid when fewer than half are valid."""
    hr = np.array([[1.0, 3.0, 0.0, 0.0],
                   [2.0, 2.0, 0.0, 5.0],
                   [4.0, 0.0, 6.0, 6.0],
                   [0.0, 0.0, 6.0, np.nan]], dtype=np.float32)
    lr = down_depth_np(hr, 2, min_valid_fraction=0.5)
    expected = np.array([[2.0, 0.0],  # 1 of 4 valid -> invalid
                         [0.0, 6.0]], dtype=np.float32)  # 1 of 4 valid; NaN counts as invalid
    np.testing.assert_allclose(lr, expected)
    np.testing.assert_allclose(down_depth_np(hr, 2, min_valid_fraction=0.25), [[2.0, 5.0], [4.0, 6.0]])


def test_down_sizes_and_plain_average():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    np.testing.assert_allclose(down(x, (2, 2))[0, 0].numpy(), [[2.5, 4.5], [10.5, 12.5]])
    assert lr_size(480, 640, 4) == (120, 160) and lr_size(480, 640, 8) == (60, 80)
    assert down(torch.rand(1, 3, 480, 640), lr_size(480, 640, 3.2)).shape[-2:] == (150, 200)


def test_down_with_a_non_integer_factor_weighs_hr_pixels_by_area():
    """Factor 2.5: LR pixel 0 covers HR [0, 2.5), LR pixel 1 covers [2.5, 5); HR pixel 2 is split half and half."""
    hr = torch.tensor([[[[1.0, 2.0, 3.0, 4.0, 5.0]]]])
    np.testing.assert_allclose(down(hr, (1, 2))[0, 0].numpy(), [[(1 + 2 + 0.5 * 3) / 2.5, (0.5 * 3 + 4 + 5) / 2.5]],
                               rtol=1e-6)
    valid = torch.tensor([[[[True, False, True, True, True]]]])
    # LR pixel 0: valid area 1 + 0.5 of 2.5 (60%), mean (1 + 0.5 * 3) / 1.5
    np.testing.assert_allclose(down(hr * valid, (1, 2), valid)[0, 0].numpy(), [[2.5 / 1.5, 4.2]], rtol=1e-6)
    assert down(hr * valid, (1, 2), valid, min_valid_fraction=0.7)[0, 0, 0, 0] == 0  # 60% < 70%: invalid


def test_area_weights_count_every_hr_pixel_once():
    w = area_weights(640, 124, 0, 640).numpy()
    np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-12)  # each LR pixel is a mean
    np.testing.assert_allclose(w.sum(0), 124 / 640, atol=1e-12)  # each HR pixel contributes one pixel's area in all
    assert (np.count_nonzero(w, axis=0) <= 2).all()  # a straddled HR pixel is shared by two footprints, never more


def test_integer_factor_is_the_block_mean():
    x = torch.rand(2, 3, 48, 64)
    np.testing.assert_allclose(down(x, (12, 16)).numpy(), torch.nn.functional.avg_pool2d(x, 4).numpy(), atol=1e-6)
    # the general (area-matrix) path gives the same numbers as the block-mean shortcut
    general = area_weights(48, 12, 0, 48).float() @ x @ area_weights(64, 16, 0, 64).float().T
    np.testing.assert_allclose(general.numpy(), torch.nn.functional.avg_pool2d(x, 4).numpy(), atol=1e-6)


def test_a_window_of_whole_lr_pixels_reduces_to_the_same_lr_pixels():
    """Crops: down of the exact HR footprint of an LR window equals that window of the LR image (factor 5.16)."""
    x = torch.rand(1, 1, 480, 640)
    full = down(x, (93, 124))
    fy, fx = 480 / 93, 640 / 124
    y0, x0, lh, lw = 17, 30, 47, 62
    window = area_mean(x, (lh, lw), (y0 * fy, x0 * fx, (y0 + lh) * fy, (x0 + lw) * fx))
    np.testing.assert_allclose(window.numpy(), full[..., y0:y0 + lh, x0:x0 + lw].numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="not inside"):
        area_mean(x, (2, 2), (0, 0, 481, 10))


def test_valid_depth_rejects_zero_nan_inf_and_out_of_range():
    d = torch.tensor([0.0, float("nan"), float("inf"), 0.05, 1.0, 20.0])
    assert valid_depth(d, 0.1, 10.0).tolist() == [False, False, False, False, True, False]


@pytest.mark.parametrize("form", FORMS)
def test_loss_zero_on_perfect_grows_with_error_and_ignores_invalid(form):
    gt = torch.rand(2, 1, 8, 8) * 3 + 0.5
    mask = torch.rand(2, 1, 8, 8) > 0.3
    assert masked_depth_loss(gt.clone(), gt, mask, form).item() == pytest.approx(0.0, abs=1e-3)
    small = masked_depth_loss(gt * 1.1, gt, mask, form).item()
    large = masked_depth_loss(gt * 1.5 + 0.2, gt, mask, form).item()
    assert 0 < small < large
    garbage = torch.where(mask, gt * 1.1, torch.full_like(gt, 1e3))
    assert masked_depth_loss(garbage, gt, mask, form).item() == pytest.approx(small, rel=1e-5)


def test_loss_gradient_never_reaches_invalid_pixels():
    pred = (torch.rand(1, 1, 4, 4) + 1).requires_grad_()
    gt = torch.ones(1, 1, 4, 4)
    mask = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    mask[..., :2, :] = True
    masked_depth_loss(pred, gt, mask, "l1").backward()
    assert torch.all(pred.grad[..., 2:, :] == 0) and torch.all(pred.grad[..., :2, :] != 0)
    assert masked_depth_loss(pred, gt, torch.zeros_like(mask)).item() == 0.0


def test_affinity_is_cosine_similarity_of_pooled_cells():
    f = torch.zeros(1, 2, 2, 2)
    f[0, 0, 0, 0] = 1.0  # cell 0 along channel 0
    f[0, 1, 0, 1] = 2.0  # cell 1 along channel 1
    f[0, :, 1, 0] = torch.tensor([1.0, 1.0])  # cell 2 at 45 degrees
    f[0, 0, 1, 1] = -3.0  # cell 3 opposite to cell 0
    a = affinity(f, (2, 2))[0]
    assert a.shape == (4, 4)
    assert a[0, 0] == pytest.approx(1.0) and a[0, 1] == pytest.approx(0.0)
    assert a[0, 2] == pytest.approx(2**-0.5, rel=1e-5) and a[0, 3] == pytest.approx(-1.0)
    assert torch.allclose(a, a.T)


def test_affinity_loss_invariant_to_width_and_masks_invalid_cells():
    torch.manual_seed(0)
    student = torch.randn(1, 8, 16, 16)
    teacher = torch.cat([student, student], 1)  # another width, same structure
    valid = torch.ones(1, 1, 8, 8, dtype=torch.bool)
    assert affinity_loss(student, teacher, valid, (4, 4)).item() == pytest.approx(0.0, abs=1e-5)
    other = torch.randn(1, 3, 16, 16)  # unrelated structure
    assert affinity_loss(student, other, valid, (4, 4)).item() > 0.1
    assert affinity_loss(student, other, torch.zeros_like(valid), (4, 4)).item() == 0.0
    teacher.requires_grad_()
    affinity_loss(student.requires_grad_(), teacher, valid, (4, 4)).backward()
    assert teacher.grad is None  # the teacher is not pulled towards the student


def test_metrics_against_hand_computed_values():
    gt = np.array([[1.0, 2.0], [4.0, 0.0]])
    pred = np.array([[1.0, 3.0], [2.0, 7.0]])  # last pixel has no ground truth
    m = depth_metrics(pred, gt, 0.1, 10.0)
    assert m["abs_rel"] == pytest.approx((0 + 0.5 + 0.5) / 3)
    assert m["sq_rel"] == pytest.approx((0 + 1 / 2 + 4 / 4) / 3)
    assert m["rmse"] == pytest.approx(np.sqrt((0 + 1 + 4) / 3))
    assert m["rmse_log"] == pytest.approx(np.sqrt((0 + np.log(1.5) ** 2 + np.log(0.5) ** 2) / 3))
    assert m["log10"] == pytest.approx((0 + np.log10(1.5) + np.log10(2)) / 3)
    assert m["delta1"] == pytest.approx(1 / 3) and m["delta2"] == pytest.approx(2 / 3)
    assert m["delta3"] == pytest.approx(2 / 3)  # ratio 2.0 > 1.25^3 = 1.953
    scaled = depth_metrics(gt * 2.5, gt, 0.1, 10.0, median_scaling=True)
    assert scaled["abs_rel"] == pytest.approx(0.0)


def test_charbonnier_is_zero_at_zero_like_l1_far_away_and_smooth():
    t = torch.full((1, 1, 2, 2), 2.0)
    mask = torch.ones_like(t, dtype=torch.bool)
    assert masked_depth_loss(t, t, mask, "charbonnier") == 0
    far = masked_depth_loss(t + 1.0, t, mask, "charbonnier")
    assert abs(far.item() - (1.0 - 0.01 + 0.01**2 / 2)) < 1e-3  # ~ |error| - eps for |error| >> eps
    near = (t + 1e-3).requires_grad_()
    masked_depth_loss(near, t, mask, "charbonnier").backward()
    assert 0 < near.grad.abs().max() < 0.1 / 4  # gradient ~ error / eps, not L1's constant 1/n


def test_reference_affinity_form_is_squared_and_uncentred():
    torch.manual_seed(0)
    student, teacher = torch.rand(1, 8, 12, 16), torch.rand(1, 4, 12, 16)
    valid = torch.ones(1, 1, 12, 16, dtype=torch.bool)
    assert affinity_loss(student, student[:, :4], valid[:, :, :, :], (3, 4), "reference") >= 0
    assert affinity_loss(teacher, teacher, valid, (3, 4), "reference") == 0
    ours, reference = (affinity_loss(student, teacher, valid, (3, 4), form) for form in ("centred_l1", "reference"))
    assert 0 < reference < ours  # squared differences of cosines below 1, and uncentred post-ReLU-like features agree
    with pytest.raises(ValueError, match="unknown loss.affinity_form 'l2'"):
        affinity_loss(student, teacher, valid, (3, 4), "l2")
