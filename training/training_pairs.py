"""Training samples: HR colour crops with their LR supervision (and HR depth for the oracle), augmented."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from .config import DataConfig
from .frames import Frame, FrameSource
from .reduce import down_depth_np


def lr_supervision(frame: Frame, data: DataConfig) -> np.ndarray:
    """The LR depth a frame supervises with: the logged sensor depth, or down(HR ground truth) by the factor."""
    if frame.depth_lr is not None:
        return frame.depth_lr
    if frame.depth_hr is None:
        raise ValueError(f"frame {frame.name} has neither LR nor HR depth")
    return down_depth_np(frame.depth_hr, data.factor, data.min_valid_fraction, data.min_depth, data.max_depth)


class TrainingPairs(Dataset):
    """HR color crops with the matching LR depth crop (and HR depth for the oracle), augmented.

    Crops are aligned to the LR grid so each LR pixel's footprint stays whole. Photometric jitter changes the image
    only; a horizontal flip changes image and depths together.
    """

    def __init__(self, frames: FrameSource, data: DataConfig, seed: int = 0) -> None:
        self.frames, self.data = frames, data
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        frame = self.frames[index]
        lr = lr_supervision(frame, self.data)
        hr = frame.depth_hr if frame.depth_hr is not None else np.zeros(frame.color.shape[:2], np.float32)
        H, W = frame.color.shape[:2]
        h, w = lr.shape
        fy, fx = H / h, W / w
        ch, cw = (self.data.crop_height or H), (self.data.crop_width or W)
        lh, lw = min(h, round(ch / fy)), min(w, round(cw / fx))
        y0, x0 = self.rng.integers(0, h - lh + 1), self.rng.integers(0, w - lw + 1)
        Y0, X0, Y1, X1 = round(y0 * fy), round(x0 * fx), round((y0 + lh) * fy), round((x0 + lw) * fx)
        color = frame.color[Y0:Y1, X0:X1].astype(np.float32) / 255.0
        lr, hr = lr[y0:y0 + lh, x0:x0 + lw], hr[Y0:Y1, X0:X1]
        if self.data.hflip and self.rng.random() < 0.5:
            color, lr, hr = color[:, ::-1], lr[:, ::-1], hr[:, ::-1]
        color = self._jitter(color)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(color.transpose(2, 0, 1))),
            "depth_lr": torch.from_numpy(np.ascontiguousarray(lr, dtype=np.float32))[None],
            "depth_hr": torch.from_numpy(np.ascontiguousarray(hr, dtype=np.float32))[None],
        }

    def _jitter(self, color: np.ndarray) -> np.ndarray:
        s = self.data.color_jitter
        if s <= 0:
            return color
        brightness, contrast, saturation = 1 + self.rng.uniform(-s, s, 3)
        gray = color.mean(axis=2, keepdims=True)
        color = gray + (color - gray) * saturation
        color = (color - color.mean()) * contrast + color.mean()
        return np.clip(color * brightness, 0.0, 1.0).astype(np.float32)
