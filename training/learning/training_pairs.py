"""Training samples: HR colour crops with their LR supervision (and HR depth for the oracle), augmented.

Every random choice of a sample is drawn from a generator seeded by (seed, epoch, frame index), and the order and
kind of batches from one seeded by (seed, epoch): a sample is the same whichever worker loads it and whatever
``num_workers`` is, differs between frames, workers and epochs, and a resumed run can skip straight to where it
stopped (``EpochBatches.set_position``).

Geometry (docs/method.md, "Training samples"): a crop is chosen in LR pixels and the HR crop is the exact HR
footprint of those LR pixels, resampled by area (``reduce.area_mean``) to a whole number of HR pixels; for an integer
factor that is a plain slice. Scale jitter zooms by ``s``: the window is ``1/s`` as large, both depths are resampled
over it and divided by ``s``, which makes the sample exactly what the deployment camera (focal length f) would see of
the scene with every depth divided by ``s``.

Hole experiment (``data.lr_holes``): ``lr_supervision`` removes blobs from the full-frame LR grid, seeded by the
frame's name alone, so every crop, epoch and seed of a frame misses the same footprints and evaluation
(``abs_rel_holes``) finds them again.
"""

from __future__ import annotations

import logging
import math
import zlib
from collections.abc import Iterator
from typing import NamedTuple

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from depth_node.network.reduce import Box, down, down_depth_np, valid_depth

from ..config import DataConfig, LossConfig
from ..frames import Frame, FrameSource
from ..skipped import FrameError
from .neighbours import colour_K, crop_intrinsics, neighbour_views

log = logging.getLogger(__name__)
ORDER_STREAM, SAMPLE_STREAM, HOLES_STREAM = 0, 1, 2  # first seed word: keeps the kinds of generators apart


class SampleKey(NamedTuple):
    """What the batch sampler hands the dataset: which frame, in which epoch, cropped or full frame."""

    index: int
    epoch: int = 0
    full_frame: bool = False


def lr_supervision(frame: Frame, data: DataConfig) -> np.ndarray:
    """The LR depth a frame supervises with: the logged sensor depth, or down(HR ground truth) by the factor; with
    ``data.lr_holes``, 0 (invalid) in the frame's ``hole_blobs``, on the full-frame grid before any crop."""
    if frame.depth_lr is not None:
        lr = frame.depth_lr
    elif frame.depth_hr is None:
        raise ValueError(f"frame {frame.name} has neither LR nor HR depth")
    else:
        lr = down_depth_np(frame.depth_hr, data.factor, data.min_valid_fraction, data.min_depth, data.max_depth)
    if data.lr_holes > 0:
        lr = lr.copy()  # never the reader's own array
        lr[hole_blobs(lr.shape, data.lr_holes, frame.name)] = 0
    return lr


def hole_blobs(shape: tuple[int, int], fraction: float, key: str) -> np.ndarray:
    """Boolean (h, w) mask of the LR pixels the hole experiment removes: the ``round(fraction h w)`` highest pixels of
    Gaussian noise smoothed with sigma = max(1, min(h, w) / 30) LR pixels, i.e. a few dozen connected blobs of tens to
    hundreds of pixels, scaled with the frame rather than the factor. Seeded by ``key`` (the frame's name) alone, so
    training (any crop, step or seed) and evaluation remove the same footprints."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"data.lr_holes must be in [0, 1), got {fraction}")
    h, w = shape
    rng = np.random.default_rng([HOLES_STREAM, zlib.crc32(key.encode())])
    noise = cv2.GaussianBlur(rng.standard_normal((h, w)), (0, 0), max(1.0, min(h, w) / 30),
                             borderType=cv2.BORDER_REFLECT)
    mask = np.zeros(h * w, bool)
    mask[np.argsort(-noise, axis=None, kind="stable")[:round(fraction * h * w)]] = True
    return mask.reshape(h, w)


def crop_size(hr: tuple[int, int], lr: tuple[int, int], data: DataConfig, full_frame: bool = False
              ) -> tuple[tuple[int, int], tuple[int, int]]:
    """((LR height, width), (HR height, width)) of a training sample: the configured HR crop rounded to whole LR
    pixels, and the HR size nearest to their footprint (the whole frame for ``full_frame`` or a crop size of 0)."""
    (H, W), (h, w) = hr, lr
    if full_frame:
        return (h, w), (H, W)
    lh = min(h, max(1, round(data.crop_height / (H / h)))) if data.crop_height else h
    lw = min(w, max(1, round(data.crop_width / (W / w)))) if data.crop_width else w
    return (lh, lw), (round(lh * H / h), round(lw * W / w))


def window(image: np.ndarray, box: Box) -> tuple[np.ndarray, Box]:
    """The whole pixels of ``image`` that real-valued ``box`` touches, and ``box`` relative to them."""
    top, left, bottom, right = box
    y0, x0 = math.floor(top), math.floor(left)
    return image[y0:math.ceil(bottom), x0:math.ceil(right)], (top - y0, left - x0, bottom - y0, right - x0)


class TrainingPairs(Dataset):
    """HR colour crops with the matching LR depth crop (and HR depth for the oracle), augmented.

    Indexed by a frame index (epoch 0, a crop) or a ``SampleKey``. Photometric jitter changes the image only; flip and
    scale jitter change image and depths together.
    """

    def __init__(self, frames: FrameSource, data: DataConfig, seed: int = 0, loss: LossConfig | None = None) -> None:
        self.frames, self.data, self.seed = frames, data, seed
        self.motion = loss if loss is not None and loss.w_motion > 0 else None  # samples carry neighbour views
        self.unreadable: set[int] = set()  # frames whose file exists but cannot be decoded (this process's view)
        self.cache: dict[int, tuple[Frame, np.ndarray]] | None = {} if data.cache_frames else None

    def readable_frame(self, index: int) -> Frame:
        """Frame ``index``, or the next readable one: a corrupt file is warned about once, with its reason, and its
        samples are drawn from its successor instead (training goes on; only an all-unreadable set stops it)."""
        for offset in range(len(self.frames)):
            k = (index + offset) % len(self.frames)
            if k in self.unreadable:
                continue
            try:
                return self.frames[k]
            except FrameError as error:
                self.unreadable.add(k)
                log.warning("training skips frame %s: %s (%d unreadable so far)", error.path, error.reason,
                            len(self.unreadable))
        raise ValueError(f"no readable frame among the {len(self.frames)} training frames")

    def supervised_frame(self, index: int) -> tuple[Frame, np.ndarray]:
        """A readable frame and its LR supervision, kept in memory under ``data.cache_frames`` (reading a 640x480
        frame's files alone is half of a sample's time, which starves a GPU)."""
        if self.cache is not None and index in self.cache:
            return self.cache[index]
        frame = self.readable_frame(index)
        pair = frame, lr_supervision(frame, self.data)
        if self.cache is not None:
            self.cache[index] = pair
        return pair

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, key: int | SampleKey) -> dict[str, torch.Tensor]:
        index, epoch, full_frame = key if isinstance(key, tuple) else SampleKey(int(key))
        rng = np.random.default_rng([SAMPLE_STREAM, self.seed, epoch, index])
        frame, lr = self.supervised_frame(index)
        H, W = frame.color.shape[:2]
        h, w = lr.shape
        (lh, lw), hr_size = crop_size((H, W), (h, w), self.data, full_frame)
        zoom = 1.0 if full_frame else self._zoom(rng, lh / h, lw / w)
        wh, ww = lh / zoom, lw / zoom  # the window in LR pixels
        if zoom == 1.0:  # whole LR pixels: the sensor's own values, untouched
            y0, x0 = float(rng.integers(0, h - lh + 1)), float(rng.integers(0, w - lw + 1))
        else:
            y0, x0 = rng.uniform(0, h - wh), rng.uniform(0, w - ww)
        y1, x1 = min(h, y0 + wh), min(w, x0 + ww)
        fy, fx = H / h, W / w
        hr_box = (y0 * fy, x0 * fx, min(H, y1 * fy), min(W, x1 * fx))
        color, box = window(frame.color, hr_box)
        color = down(torch.from_numpy(color).permute(2, 0, 1)[None].float() / 255.0, hr_size, box=box)[0]
        depth_lr = self._depth(lr, (lh, lw), (y0, x0, y1, x1)) / zoom
        depth_hr = (self._depth(frame.depth_hr, hr_size, hr_box) / zoom if frame.depth_hr is not None
                    else torch.zeros((1, *hr_size)))
        flip = bool(self.data.hflip and rng.random() < 0.5)
        if flip:
            color, depth_lr, depth_hr = color.flip(-1), depth_lr.flip(-1), depth_hr.flip(-1)
        sample = {"image": self._jitter(color, rng), "depth_lr": depth_lr, "depth_hr": depth_hr,
                  "zoom": torch.tensor(zoom)}
        if self.motion is not None:  # the crop as seen (no colour jitter: it must match its neighbours) and geometry
            K = crop_intrinsics(colour_K(frame, self.data.color_focal), hr_box, hr_size, flip)
            sample.update(motion_target=color.contiguous(), motion_K=torch.from_numpy(K).float(),
                          **neighbour_views(lambda k: self.supervised_frame(k)[0], len(self), index, frame, zoom,
                                            flip, self.motion, self.data))
        return sample

    def _zoom(self, rng: np.random.Generator, min_h: float, min_w: float) -> float:
        """Log-uniform in [1/(1+j), 1+j], no smaller than the crop allows (the window must fit in the frame)."""
        j = self.data.scale_jitter
        if j <= 0:
            return 1.0
        zoom = math.exp(rng.uniform(-math.log1p(j), math.log1p(j)))
        return max(zoom, min_h, min_w)

    def _depth(self, depth: np.ndarray, size: tuple[int, int], box: Box) -> torch.Tensor:
        """Depth over ``box`` at ``size``: the mean of the valid part of each pixel's area, 0 where under-covered."""
        depth, box = window(depth, box)
        t = torch.from_numpy(np.ascontiguousarray(depth, dtype=np.float32))[None, None]
        valid = valid_depth(t, self.data.min_depth, self.data.max_depth)
        t = torch.where(valid, t, torch.zeros_like(t))
        return down(t, size, valid, self.data.min_valid_fraction, box)[0]

    def _jitter(self, color: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        s = self.data.color_jitter
        if s <= 0:
            return color.contiguous()
        brightness, contrast, saturation = (1 + rng.uniform(-s, s, 3)).tolist()
        gray = color.mean(dim=0, keepdim=True)
        color = gray + (color - gray) * saturation
        color = (color - color.mean()) * contrast + color.mean()
        return (color * brightness).clamp(0.0, 1.0).contiguous()


class EpochBatches(Sampler[list[SampleKey]]):
    """The batches of one epoch as a pure function of (seed, epoch): a seeded shuffle, this rank's share of it under
    DistributedDataParallel (padded to equal shares, as ``DistributedSampler`` does), and per batch whether it is full
    frames (with probability ``full_frame_fraction``; one kind per batch, so every batch stacks)."""

    def __init__(self, size: int, batch_size: int, seed: int = 0, full_frame_fraction: float = 0.0, rank: int = 0,
                 world: int = 1) -> None:
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.full_frame_fraction, self.rank, self.world = full_frame_fraction, rank, world
        self.epoch, self.start = 0, 0

    def set_position(self, epoch: int, start: int = 0) -> None:
        """Iterate epoch ``epoch`` from its batch number ``start`` (the batches before it were trained on)."""
        self.epoch, self.start = epoch, start

    def batches_per_epoch(self) -> int:
        return math.ceil(math.ceil(self.size / self.world) / self.batch_size)

    def __len__(self) -> int:
        return self.batches_per_epoch() - self.start

    def __iter__(self) -> Iterator[list[SampleKey]]:
        rng = np.random.default_rng([ORDER_STREAM, self.seed, self.epoch])
        order = rng.permutation(self.size)
        share = math.ceil(self.size / self.world)
        order = np.resize(order, share * self.world)[self.rank::self.world]
        full = rng.random(self.batches_per_epoch()) < self.full_frame_fraction
        for b in range(self.start, self.batches_per_epoch()):
            chunk = order[b * self.batch_size:(b + 1) * self.batch_size]
            yield [SampleKey(int(i), self.epoch, bool(full[b])) for i in chunk]
