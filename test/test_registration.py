"""Registration of LR depth into the color camera: LR grid, pass-through, footprint splatting, z-buffer, holes."""

from __future__ import annotations

import numpy as np
import pytest
from depth_node_training.logs.registration import coincident, lr_grid, register_depth, scale_intrinsics, splat_depth

K_HR = np.array([[585.0, 0.0, 320.0], [0.0, 585.0, 240.0], [0.0, 0.0, 1.0]])


def translation(x: float, y: float = 0.0, z: float = 0.0) -> np.ndarray:
    T = np.eye(4)
    T[:3, 3] = (x, y, z)
    return T


def test_scale_intrinsics_pixel_centre_convention():
    """The real bag's depth CameraInfo: fx 585 / 4, cx = (320 + 0.5) / 4 - 0.5."""
    K = scale_intrinsics(K_HR, 0.25, 0.25)
    np.testing.assert_allclose(K, [[146.25, 0, 79.625], [0, 146.25, 59.625], [0, 0, 1]])
    np.testing.assert_allclose(scale_intrinsics(K, 4.0, 4.0), K_HR)


def test_lr_grid_integer_factor():
    factor, K_lr, size = lr_grid(K_HR, (640, 480), scale_intrinsics(K_HR, 0.25, 0.25))
    assert (factor, size) == (4.0, (160, 120))
    np.testing.assert_allclose(K_lr, scale_intrinsics(K_HR, 0.25, 0.25))


def test_lr_grid_non_integer_factor_and_finer_depth():
    factor, K_lr, size = lr_grid(K_HR, (640, 480), np.diag([175.5, 175.5, 1.0]))  # 585 / 175.5 = 3.33
    assert size == (192, 144) and factor == pytest.approx(640 / 192)
    np.testing.assert_allclose(K_lr[0, 0], 585 * 192 / 640)
    factor, _, size = lr_grid(K_HR, (640, 480), np.diag([1000.0, 1000.0, 1.0]))  # depth finer than color
    assert (factor, size) == (1.0, (640, 480))


def test_identity_geometry_is_exact_pass_through():
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.5, 4.0, (30, 40)).astype(np.float32)
    depth[rng.random(depth.shape) < 0.1] = 0.0
    depth[0, 0] = np.nan
    K = np.array([[30.0, 0, 19.5], [0, 30.0, 14.5], [0, 0, 1]])
    assert coincident(K, (40, 30), np.eye(4), K, (40, 30))
    out = register_depth(depth, K, np.eye(4), K, (40, 30))
    expected = np.nan_to_num(depth)
    np.testing.assert_array_equal(out, expected)
    # The splatting path itself maps an identical grid one-to-one (each footprint covers exactly its own pixel).
    np.testing.assert_array_equal(splat_depth(depth, K, np.eye(4), K, (40, 30)), expected)


def test_coarser_depth_grid_leaves_no_lattice_of_holes():
    """A 2x coarser depth grid on a plane fills every target pixel; projecting centres alone fills a quarter."""
    K_target = np.array([[60.0, 0, 39.5], [0, 60.0, 29.5], [0, 0, 1]])
    K_depth = scale_intrinsics(K_target, 0.5, 0.5)
    depth = np.full((30, 40), 2.0, np.float32)
    T = translation(0.01)
    out = splat_depth(depth, K_depth, T, K_target, (80, 60))
    assert np.all(out[:, :-1] > 0), "holes inside the covered area"
    np.testing.assert_allclose(out[out > 0], 2.0, atol=1e-6)
    v, u = np.mgrid[0:30, 0:40]
    x = (u - K_depth[0, 2]) / K_depth[0, 0] * 2.0 + 0.01
    centres = np.round(K_target[0, 0] * x / 2.0 + K_target[0, 2]).astype(int)
    rows = np.round(K_target[1, 1] * (v - K_depth[1, 2]) / K_depth[1, 1] + K_target[1, 2]).astype(int)
    assert len(set(zip(rows.ravel(), centres.ravel(), strict=True))) < 0.3 * 80 * 60


def test_translation_shifts_plane_by_disparity_and_leaves_uncovered_edge_empty():
    K = np.array([[50.0, 0, 24.5], [0, 50.0, 19.5], [0, 0, 1]])
    depth = np.full((40, 50), 2.5, np.float32)
    out = register_depth(depth, K, translation(0.15), K, (50, 40))  # 50 * 0.15 / 2.5 = 3 px to the right
    np.testing.assert_array_equal(out[:, :3], 0.0)
    np.testing.assert_allclose(out[:, 3:], 2.5)


def test_occlusion_keeps_nearest_surface_and_leaves_disocclusion_invalid():
    """Foreground square at 1 m before a wall at 3 m, depth sensor 0.2 m to the left of the color camera."""
    K = np.array([[40.0, 0, 39.5], [0, 40.0, 29.5], [0, 0, 1]])
    depth = np.full((60, 80), 3.0, np.float32)
    depth[20:40, 30:50] = 1.0
    out = register_depth(depth, K, translation(-0.2), K, (80, 60))
    # Disparity 40 * 0.2 / z: the square moves 8 px left, the wall 2.67 px: a 5-6 px strip right of the square
    # shows wall the depth sensor never saw.
    np.testing.assert_allclose(out[22:38, 23:41], 1.0)
    assert np.all(out[25:35, 43:47] == 0.0), "disoccluded wall must stay invalid"
    assert np.all(out[25:35, 50:75] == pytest.approx(3.0))
    assert not np.any((out > 1.0) & (out < 3.0)), "no blend of foreground and background"


def test_wider_rotated_depth_sensor_covers_the_color_view():
    """A wider-angle sensor turned by 2 degrees still covers every color LR pixel it sees, with exact plane depth."""
    K_lr = np.array([[65.0, 0, 39.5], [0, 65.0, 29.5], [0, 0, 1]])
    K_depth = np.array([[65.0, 0, 47.5], [0, 65.0, 35.5], [0, 0, 1]])
    a = np.radians(2.0)
    T = np.eye(4)
    T[:3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
    v, u = np.mgrid[0:72, 0:96]
    rays = np.stack([(u - 47.5) / 65.0, (v - 35.5) / 65.0, np.ones_like(u, dtype=float)], -1) @ T[:3, :3].T
    depth = (3.0 / rays[..., 2]).astype(np.float32)  # the plane z = 3 m in the color camera
    out = register_depth(depth, K_depth, T, K_lr, (80, 60))
    assert np.all(out > 0)
    np.testing.assert_allclose(out, 3.0, rtol=2e-3)  # each footprint carries its centre's depth
