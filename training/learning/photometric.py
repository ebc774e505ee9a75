"""Photometric reprojection: the robot's own motion as HR supervision where the LR sensor only gives footprint means.

A target pixel is back-projected with the predicted depth and the target's K, moved by the relative pose
T_src<-tgt = inv(pose_src) @ pose_tgt, projected with the source's K and the source colour sampled there. Where the
depth is right the two colours agree, so detail inside an LR footprint (an edge, a slope) is constrained by how the
image moves. As in Monodepth2 (Godard et al. 2019): the error is 0.85 (1 - SSIM) / 2 + 0.15 |L1| (3x3 SSIM), the
per-pixel minimum over source frames (a pixel occluded in one source is usually seen in another), and auto-masked:
a pixel whose error without warping (the source as it is) is lower than with warping gives no signal, so a camera
that stands still, or an object moving with it, teaches nothing false. Pixels projected outside a source are
invalid for that source.

Everything is pure torch and differentiable w.r.t. depth. Crops: pass the target's K adjusted for its crop/resize;
sources may be other sizes (full frames) with their own K.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

ALPHA = 0.85  # SSIM's share of the photometric error (Monodepth2)
SSIM_C1, SSIM_C2 = 0.01**2, 0.03**2
MIN_Z = 1e-3  # metres in front of a camera for a point to project
AUTO_MASK_MARGIN = 1e-4  # warping must beat not warping by more than float32 grid rounding (~1e-5 for a zero
#                           baseline); real motion differs by 1e-3 and more


@dataclass
class Source:
    """One neighbour frame for a batch of targets."""

    image: torch.Tensor  # (B, 3, Hs, Ws) RGB in [0, 1]
    K: torch.Tensor  # (B, 3, 3) intrinsics of ``image``
    T_src_tgt: torch.Tensor  # (B, 4, 4) maps target camera points into this source's camera (``relative_pose``)
    available: torch.Tensor | None = None  # (B,) bool: the batch items that have this neighbour (None: all)


@dataclass
class Reprojection:
    """The loss and what it is made of, per pixel, for inspection and tests."""

    loss: torch.Tensor  # scalar: photometric + smoothness weight x smoothness
    photometric: torch.Tensor  # scalar: mean over valid pixels of the reprojection error where ``signal``, else of
    #                            the identity error (a constant: no gradient)
    smoothness: torch.Tensor  # scalar: edge-aware smoothness (0 when its weight is 0)
    error: torch.Tensor  # (B, 1, H, W) minimum reprojection error over the sources that see the pixel, else inf
    identity: torch.Tensor  # (B, 1, H, W) minimum error without warping, else inf
    signal: torch.Tensor  # (B, 1, H, W) bool: valid depth, seen by a source, and warping beats not warping
    valid: torch.Tensor  # (B, 1, H, W) bool: the pixels the photometric mean is over


def relative_pose(pose_src: torch.Tensor | np.ndarray, pose_tgt: torch.Tensor | np.ndarray) -> torch.Tensor:
    """T_src<-tgt = inv(pose_src) @ pose_tgt from two camera-to-world poses ((..., 4, 4)), in float64: world frames
    (odom) can be far from the origin, where float32 would lose the millimetres between nearby frames."""
    src, tgt = torch.as_tensor(pose_src, dtype=torch.float64), torch.as_tensor(pose_tgt, dtype=torch.float64)
    return torch.linalg.solve(src, tgt)


def pick_neighbours(poses: Sequence[np.ndarray | None], index: int, offsets: Sequence[int], min_baseline: float,
                    stamps_ns: Sequence[int] | None = None, max_gap_ns: int | None = None) -> list[int]:
    """The frames ``index + offset`` that can supervise frame ``index``: in range, with a pose, at least
    ``min_baseline`` metres from it (a static camera gives no parallax, only noise) and, given stamps, at most
    ``max_gap_ns`` apart in time (frames of another recording have unrelated poses)."""
    own = poses[index]
    if own is None:
        return []
    chosen = []
    for offset in offsets:
        k = index + offset
        if offset == 0 or not 0 <= k < len(poses) or poses[k] is None:
            continue
        if stamps_ns is not None and max_gap_ns is not None and abs(stamps_ns[k] - stamps_ns[index]) > max_gap_ns:
            continue
        if np.linalg.norm(np.asarray(poses[k])[:3, 3] - np.asarray(own)[:3, 3]) >= min_baseline:
            chosen.append(k)
    return chosen


def ssim_error(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(1 - SSIM) / 2 per channel over 3x3 windows (reflection padding), in [0, 1]."""
    x, y = F.pad(x, (1, 1, 1, 1), mode="reflect"), F.pad(y, (1, 1, 1, 1), mode="reflect")
    mu_x, mu_y = F.avg_pool2d(x, 3, 1), F.avg_pool2d(y, 3, 1)
    sigma_x = F.avg_pool2d(x * x, 3, 1) - mu_x * mu_x
    sigma_y = F.avg_pool2d(y * y, 3, 1) - mu_y * mu_y
    sigma_xy = F.avg_pool2d(x * y, 3, 1) - mu_x * mu_y
    ssim = ((2 * mu_x * mu_y + SSIM_C1) * (2 * sigma_xy + SSIM_C2)) / (
        (mu_x * mu_x + mu_y * mu_y + SSIM_C1) * (sigma_x + sigma_y + SSIM_C2))
    return ((1 - ssim) / 2).clamp(0.0, 1.0)


def photometric_error(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W): ALPHA (1 - SSIM) / 2 + (1 - ALPHA) |x - y|, averaged over the colour channels."""
    return ALPHA * ssim_error(x, y).mean(1, keepdim=True) + (1 - ALPHA) * (x - y).abs().mean(1, keepdim=True)


def warp(image: torch.Tensor, K_src: torch.Tensor, depth: torch.Tensor, K_tgt: torch.Tensor,
         T_src_tgt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The source ``image`` resampled onto the target's pixels (B, 3, H, W), and where that is inside the source and
    in front of it (B, 1, H, W); ``depth`` (B, 1, H, W) is the target's z-depth in metres."""
    B, _, H, W = depth.shape
    Hs, Ws = image.shape[-2:]
    dtype, device = depth.dtype, depth.device
    v, u = torch.meshgrid(torch.arange(H, dtype=dtype, device=device), torch.arange(W, dtype=dtype, device=device),
                          indexing="ij")
    pixels = torch.stack([u, v, torch.ones_like(u)]).reshape(1, 3, H * W)
    rays = torch.linalg.inv(K_tgt.to(dtype)) @ pixels  # (B, 3, HW), z = 1
    T = T_src_tgt.to(dtype)
    points = T[:, :3, :3] @ (rays * depth.reshape(B, 1, H * W)) + T[:, :3, 3:]
    projected = K_src.to(dtype) @ points
    z = projected[:, 2:]
    uv = projected[:, :2] / z.clamp(min=MIN_Z)
    u, v = uv[:, 0], uv[:, 1]  # inside: within the pixels' area, [-0.5, size - 0.5] (centres at integers)
    inside = (z[:, 0] > MIN_Z) & (u >= -0.5) & (u <= Ws - 0.5) & (v >= -0.5) & (v <= Hs - 0.5)
    scale = torch.tensor([2.0 / max(Ws - 1, 1), 2.0 / max(Hs - 1, 1)], dtype=dtype, device=device).reshape(1, 2, 1)
    grid = (uv * scale - 1).permute(0, 2, 1).reshape(B, H, W, 2)
    warped = F.grid_sample(image.to(dtype), grid, mode="bilinear", padding_mode="border", align_corners=True)
    inside = inside.reshape(B, 1, H, W)
    # An outside pixel's colour still enters its neighbours' SSIM windows: it must not move its own depth.
    return torch.where(inside, warped, warped.detach()), inside


def smoothness_loss(depth: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Edge-aware smoothness of mean-normalised inverse depth: gradients of 1/depth cost less where the image has an
    edge; normalising by the mean keeps the term from favouring a far (flat) scene."""
    disparity = 1.0 / depth.clamp(min=MIN_Z)
    disparity = disparity / (disparity.mean((2, 3), keepdim=True) + 1e-7)
    dx = (disparity[..., :, :-1] - disparity[..., :, 1:]).abs()
    dy = (disparity[..., :-1, :] - disparity[..., 1:, :]).abs()
    image_dx = (image[..., :, :-1] - image[..., :, 1:]).abs().mean(1, keepdim=True)
    image_dy = (image[..., :-1, :] - image[..., 1:, :]).abs().mean(1, keepdim=True)
    return (dx * torch.exp(-image_dx)).mean() + (dy * torch.exp(-image_dy)).mean()


def reprojection_loss(target: torch.Tensor, depth: torch.Tensor, K: torch.Tensor, sources: Sequence[Source],
                      smoothness: float = 0.0) -> Reprojection:
    """The auto-masked minimum reprojection loss of ``depth`` (B, 1, H, W metres, <= 0 invalid) for the ``target``
    image (B, 3, H, W in [0, 1], intrinsics ``K`` (B, 3, 3) at this size) against its ``sources``; plus
    ``smoothness`` x the edge-aware smoothness of ``depth``.

    Per pixel the loss is min(warped error, identity error), as in Monodepth2: where not warping explains the pixel
    as well (within ``AUTO_MASK_MARGIN``), the value is the identity error, which does not depend on depth.
    """
    B = depth.shape[0]
    inf = torch.tensor(float("inf"), dtype=depth.dtype, device=depth.device)
    identity_depth = torch.ones_like(depth).detach()
    identity_pose = torch.eye(4, dtype=depth.dtype, device=depth.device).expand(B, 4, 4)
    warped_errors, identity_errors = [], []
    for source in sources:
        available = (torch.ones(B, dtype=torch.bool, device=depth.device) if source.available is None
                     else source.available.to(depth.device)).reshape(B, 1, 1, 1)
        warped, inside = warp(source.image, source.K, depth, K, source.T_src_tgt)
        warped_errors.append(torch.where(inside & available, photometric_error(warped, target), inf))
        with torch.no_grad():
            still, seen = warp(source.image, source.K, identity_depth, K, identity_pose)
            identity_errors.append(torch.where(seen & available, photometric_error(still, target), inf))
    if warped_errors:
        error = torch.cat(warped_errors, 1).min(1, keepdim=True).values
        identity = torch.cat(identity_errors, 1).min(1, keepdim=True).values
    else:  # no neighbour: nothing to compare, but the loss stays in the graph (a batch term must backpropagate)
        error = identity = depth * 0 + inf
    valid = (depth.detach() > 0) & (torch.isfinite(error) | torch.isfinite(identity))
    signal = valid & (error < identity - AUTO_MASK_MARGIN)
    per_pixel = torch.where(signal, error, torch.where(valid, identity, torch.zeros_like(identity)))
    photometric = per_pixel.sum() / valid.sum().clamp(min=1)
    smooth = smoothness_loss(depth, target) if smoothness else depth.new_zeros(())
    return Reprojection(loss=photometric + smoothness * smooth, photometric=photometric, smoothness=smooth,
                        error=error, identity=identity, signal=signal, valid=valid)
