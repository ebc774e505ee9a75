"""(6) Planarity from the LR depth: where the sensor sees a plane, the HR estimate inside it is a plane.

Why: (2) fixes only the mean of each LR footprint, so the detail inside one is free, and the network fills it with
image texture (printed text, table grain, poster edges). The inverse depth of a plane is linear in the pixel
coordinates of any pinhole camera (1/Z = a u + b v + c), so its second differences vanish on any pixel grid. An LR
pixel whose second differences of 1/G_lr, relative to 1/G_lr, are under ``tolerance`` along both axes (its 3x3
neighbourhood valid) lies on a plane, and the HR estimate's inverse depth over its footprint is penalised for its own
relative second differences: texture painted on a plane costs, while depth edges and curved surfaces fail the test and
stay free. Training only: the deployed graph is unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def relative_second_differences(inverse: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """|d2/dx2| and |d2/dy2| of an inverse-depth map (B, 1, H, W), each over its own value: (B,1,H,W-2), (B,1,H-2,W)."""
    dxx = (inverse[..., 2:] - 2 * inverse[..., 1:-1] + inverse[..., :-2]).abs() / inverse[..., 1:-1]
    dyy = (inverse[..., 2:, :] - 2 * inverse[..., 1:-1, :] + inverse[..., :-2, :]).abs() / inverse[..., 1:-1, :]
    return dxx, dyy


def planar_mask(depth_lr: torch.Tensor, valid_lr: torch.Tensor, tolerance: float) -> torch.Tensor:
    """LR pixels (B, 1, h, w) on a plane by the sensor's own depth: relative second differences of 1/G_lr centred on
    the pixel under ``tolerance`` along both axes, its 3x3 neighbourhood valid (borders: never)."""
    inverse = torch.where(valid_lr, 1.0 / depth_lr.clamp(min=1e-6), 1.0)
    dxx, dyy = relative_second_differences(inverse)
    flat_x = F.pad(dxx < tolerance, (1, 1, 0, 0), value=False)
    flat_y = F.pad(dyy < tolerance, (0, 0, 1, 1), value=False)
    all_valid = -F.max_pool2d(-valid_lr.float(), 3, stride=1, padding=1) > 0.5  # min-pool: every neighbour valid
    return flat_x & flat_y & all_valid


def planarity_loss(d_hr: torch.Tensor, planar_lr: torch.Tensor) -> torch.Tensor:
    """Mean relative second difference of the HR estimate's inverse depth over the footprints of planar LR pixels."""
    planar = F.interpolate(planar_lr.float(), size=d_hr.shape[-2:], mode="nearest") > 0.5
    dxx, dyy = relative_second_differences(1.0 / d_hr)
    on_x, on_y = planar[..., 1:-1], planar[..., 1:-1, :]
    count = on_x.sum() + on_y.sum()
    if count == 0:
        return d_hr.sum() * 0.0
    return (dxx[on_x].sum() + dyy[on_y].sum()) / count
