"""The HR -> LR reduction ``down``: how an LR depth sensor sees the scene, and how predictions are compared with it.

An LR pixel is the mean of the *valid* HR pixels in its footprint, and is itself invalid (0) when fewer than
``min_valid_fraction`` of it is covered by valid pixels: that is how the LR ground truth was made, so the estimator's HR
output is reduced the same way before it is compared.

Footprints have exact real-valued boundaries: with an (H, W) input and an (h, w) output, LR pixel (i, j) covers the
HR rectangle ``[i H/h, (i+1) H/h) x [j W/w, (j+1) W/w)``, the LR grid registration defines (``logs/registration.py``).
Each HR pixel is weighted by the area of it inside the footprint, so for a non-integer factor an HR pixel on a border
is shared between two LR pixels in proportion, footprints never overlap, and every HR pixel counts exactly once in
total. For an integer factor this is the plain block mean. The same area weighting resamples any real-valued window
(``box``) to any size, which is how training crops and scale jitter keep footprints aligned (``training_pairs.py``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

Box = tuple[float, float, float, float]  # (top, left, bottom, right) in input pixels, bottom/right exclusive


def lr_size(height: int, width: int, factor: float) -> tuple[int, int]:
    """LR size for an HR size and factor (rounded, at least 1 pixel)."""
    return max(1, round(height / factor)), max(1, round(width / factor))


def area_weights(n_in: int, n_out: int, start: float, stop: float) -> torch.Tensor:
    """(n_out, n_in) float64 matrix: row i holds how much of output pixel i's interval
    ``[start + i s, start + (i+1) s)``, ``s = (stop - start) / n_out``, each input pixel ``[k, k+1)`` covers (rows sum
    to 1 when the interval lies inside ``[0, n_in]``)."""
    edges = start + (stop - start) * torch.arange(n_out + 1, dtype=torch.float64) / n_out
    lo, hi = edges[:-1, None], edges[1:, None]
    k = torch.arange(n_in, dtype=torch.float64)[None]
    return (torch.minimum(hi, k + 1) - torch.maximum(lo, k)).clamp(min=0) / (hi - lo)


def area_mean(x: torch.Tensor, size: tuple[int, int], box: Box | None = None) -> torch.Tensor:
    """Mean of (..., H, W) ``x`` over each output pixel's exact rectangle, the output tiling ``box`` (default: all)."""
    H, W = x.shape[-2:]
    top, left, bottom, right = box if box is not None else (0, 0, H, W)
    if not (0 <= top < bottom <= H and 0 <= left < right <= W):
        raise ValueError(f"window {box} is not inside the {H}x{W} input")
    y0, x0, y1, x1 = math.floor(top), math.floor(left), math.ceil(bottom), math.ceil(right)
    x = x[..., y0:y1, x0:x1]
    h, w = size
    if (y0, x0, y1, x1) == (top, left, bottom, right) and (y1 - y0) % h == 0 and (x1 - x0) % w == 0:
        ky, kx = (y1 - y0) // h, (x1 - x0) // w  # whole blocks: the same numbers, computed faster
        return x if ky == kx == 1 else F.avg_pool2d(x, (ky, kx))
    rows = area_weights(y1 - y0, h, top - y0, bottom - y0).to(x)
    cols = area_weights(x1 - x0, w, left - x0, right - x0).to(x)
    return rows @ x @ cols.T


def down(x: torch.Tensor, size: tuple[int, int], valid: torch.Tensor | None = None,
         min_valid_fraction: float = 0.5, box: Box | None = None) -> torch.Tensor:
    """Area mean of (N,C,H,W) ``x`` over each LR footprint; with ``valid`` given, the mean of the valid part, and 0
    where less than ``min_valid_fraction`` of the footprint is valid."""
    if valid is None:
        return area_mean(x, size, box)
    valid = valid.to(x.dtype)
    total = area_mean(x * valid, size, box)
    fraction = area_mean(valid, size, box)
    keep = fraction >= min_valid_fraction - 1e-6  # area weights of a non-integer factor carry rounding error
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
