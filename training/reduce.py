"""The HR -> LR reduction ``down``: how an LR depth sensor sees the scene, and how predictions are compared with it.

An LR pixel is the mean of the *valid* HR pixels in its footprint, and is itself invalid (0) when fewer than
``min_valid_fraction`` of them are valid: that is how the LR ground truth was made, so the estimator's HR output is
reduced the same way before it is compared. For a non-integer factor the footprints are ``adaptive_avg_pool2d``'s
bins (start = floor(i*H/h), end = ceil((i+1)*H/h)): neighbouring footprints then overlap by at most one HR pixel.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def lr_size(height: int, width: int, factor: float) -> tuple[int, int]:
    """LR size for an HR size and factor (rounded, at least 1 pixel)."""
    return max(1, round(height / factor)), max(1, round(width / factor))


def down(x: torch.Tensor, size: tuple[int, int], valid: torch.Tensor | None = None,
         min_valid_fraction: float = 0.5) -> torch.Tensor:
    """Masked mean of (N,C,H,W) ``x`` over each LR footprint; with ``valid`` given, under-covered LR pixels become 0."""
    if valid is None:
        return F.adaptive_avg_pool2d(x, size)
    valid = valid.to(x.dtype)
    total = F.adaptive_avg_pool2d(x * valid, size)
    fraction = F.adaptive_avg_pool2d(valid, size)
    keep = fraction >= min_valid_fraction
    return torch.where(keep, total / fraction.clamp(min=1e-6), torch.zeros_like(total))


def valid_depth(depth: torch.Tensor, min_depth: float, max_depth: float) -> torch.Tensor:
    """Boolean mask of usable depth: finite and inside [min_depth, max_depth] (0, NaN, inf and out-of-range are not)."""
    return torch.isfinite(depth) & (depth >= min_depth) & (depth <= max_depth)


def down_depth_np(depth: np.ndarray, factor: float, min_valid_fraction: float = 0.5, min_depth: float = 1e-3,
                  max_depth: float = np.inf) -> np.ndarray:
    """NumPy entry point: HR depth (metres, 0/NaN invalid) to simulated LR sensor depth (metres, 0 invalid)."""
    t = torch.from_numpy(np.ascontiguousarray(depth, dtype=np.float32))[None, None]
    valid = valid_depth(t, min_depth, max_depth)
    t = torch.where(valid, t, torch.zeros_like(t))
    return down(t, lr_size(*depth.shape, factor), valid, min_valid_fraction)[0, 0].numpy()
