"""Organized clouds: every point re-projects onto its depth pixel, NaN stays NaN, colours pack as RViz reads them."""

from __future__ import annotations

import numpy as np
import pytest

from depth_node.pointcloud import CloudBuilder, cloud_fields, decimated_size, pack_rgb, point_step

K = np.array([[525.0, 0.0, 319.5], [0.0, 520.0, 241.25], [0.0, 0.0, 1.0]])


def scene(h: int = 48, w: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    depth = rng.uniform(0.3, 5.0, (h, w)).astype(np.float32)
    depth[rng.random((h, w)) < 0.2] = np.nan
    color = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return depth, color


def project(points: np.ndarray, k: np.ndarray) -> np.ndarray:
    """(..., 3) camera points -> (..., 2) pixel coordinates (u, v)."""
    uvw = points @ k.T
    return uvw[..., :2] / uvw[..., 2:3]


@pytest.mark.parametrize("decimation", [1, 2, 3, 5])
def test_points_reproject_onto_their_depth_pixels(decimation: int) -> None:
    depth, color = scene()
    cloud = CloudBuilder().build(depth, K, decimation, color, "rgb8")
    rows, cols = decimated_size(*depth.shape, decimation)
    assert cloud.shape == (rows, cols, 4) and cloud.dtype == np.float32
    xyz = cloud[..., :3].astype(np.float64)
    kept = depth[::decimation, ::decimation]
    valid = np.isfinite(kept)
    np.testing.assert_allclose(xyz[..., 2][valid], kept[valid], rtol=1e-6)
    v, u = np.mgrid[0:rows, 0:cols] * decimation
    uv = project(xyz[valid], K)
    np.testing.assert_allclose(uv[:, 0], u[valid], atol=1e-3)
    np.testing.assert_allclose(uv[:, 1], v[valid], atol=1e-3)


def test_invalid_depth_gives_nan_points_and_keeps_the_grid() -> None:
    depth, _ = scene()
    cloud = CloudBuilder().build(depth, K)
    invalid = ~np.isfinite(depth)
    assert invalid.any()
    assert np.isnan(cloud[invalid]).all()
    assert np.isfinite(cloud[~invalid]).all()
    assert cloud.shape == (*depth.shape, 3)


@pytest.mark.parametrize("order", ["rgb8", "bgr8"])
def test_rgb_is_packed_as_the_float32_bits_rviz_reads(order: str) -> None:
    depth, color = scene()
    cloud = CloudBuilder().build(depth, K, 2, color, order)
    bits = np.ascontiguousarray(cloud[..., 3]).view(np.uint32)
    src = color[::2, ::2].astype(np.uint32)
    r, g, b = (src[..., 0], src[..., 1], src[..., 2]) if order == "rgb8" else (src[..., 2], src[..., 1], src[..., 0])
    np.testing.assert_array_equal(bits & 0xFFFFFF, (r << 16) | (g << 8) | b)
    np.testing.assert_array_equal(pack_rgb(color[::2, ::2], order).view(np.uint32), bits)


def test_packed_bytes_match_the_declared_fields() -> None:
    depth, color = scene()
    cloud = CloudBuilder().build(depth, K, 1, color, "bgr8")
    raw = cloud.tobytes()
    step = point_step(True)
    assert len(raw) == depth.size * step
    dtype = np.dtype({"names": [f[0] for f in cloud_fields(True)], "formats": ["<f4"] * 3 + ["<u4"],
                      "offsets": [f[1] for f in cloud_fields(True)], "itemsize": step})
    points = np.frombuffer(raw, dtype).reshape(depth.shape)
    valid = np.isfinite(depth)
    np.testing.assert_array_equal(points["z"][valid], depth[valid])
    np.testing.assert_array_equal(points["rgb"] >> 16 & 0xFF, color[..., 2])  # R of a BGR image
    assert [f[0] for f in cloud_fields(False)] == ["x", "y", "z"] and point_step(False) == 12


def test_rays_are_cached_per_camera_and_size() -> None:
    builder = CloudBuilder(cache_size=2)
    first = builder.rays(K, 48, 64, 1)
    assert builder.rays(K, 48, 64, 1)[0] is first[0]
    other = K.copy()
    other[0, 0] = 600.0
    assert builder.rays(other, 48, 64, 1)[0] is not first[0]
    assert builder.rays(K, 24, 32, 1)[0].shape == (24, 32)  # a size change is a new camera, not a stale ray set


def test_mismatched_colour_is_refused() -> None:
    depth, color = scene()
    with pytest.raises(ValueError, match="differ in size"):
        CloudBuilder().build(depth, K, 1, color[:-1])


def test_cloud_can_be_written_into_a_message_buffer() -> None:
    from depth_node.image_codec import byte_array_view

    depth, color = scene()
    expect = CloudBuilder().build(depth, K, 2, color)
    data, view = byte_array_view((*decimated_size(*depth.shape, 2), 4), np.float32)
    assert CloudBuilder().build(depth, K, 2, color, out=view) is view
    assert bytes(data) == expect.tobytes()
    with pytest.raises(ValueError, match="out must be C-contiguous float32"):
        CloudBuilder().build(depth, K, 1, color, out=view)
