"""Training samples on frames made here: footprint-aligned crops at any factor, scale jitter, per-sample seeding
(workers, epochs) and the batch sampler (full-frame batches, DDP shares, resuming mid-epoch)."""

import numpy as np
import pytest
import torch
from depth_node_training.config import DataConfig
from depth_node_training.frames import Frame
from depth_node_training.learning.training_pairs import EpochBatches, SampleKey, TrainingPairs
from torch.utils.data import DataLoader

from depth_node.network.reduce import down

PLAIN = DataConfig(crop_height=240, crop_width=320, hflip=False, color_jitter=0.0, min_depth=0.1, max_depth=50.0)


def ramp_frames(n: int, lr_size: tuple[int, int], hr_size: tuple[int, int] = (480, 640), twist: float = 2e-6
                ) -> list[Frame]:
    """Frames whose HR depth is bilinear in pixel coordinates (``twist`` makes every LR crop unique) and whose LR
    depth is its exact area mean on an (h, w) grid: any footprint misalignment shows as slope x offset."""
    H, W = hr_size
    v, u = np.mgrid[0:H, 0:W] + 0.5
    frames = []
    for k in range(n):
        depth = (1.0 + 0.1 * k + 0.004 * u + 0.003 * v + twist * u * v).astype(np.float32)
        lr = down(torch.from_numpy(depth)[None, None], lr_size)[0, 0].numpy()
        color = np.stack([u % 256, v % 256, np.full_like(u, 40 * k)], -1).astype(np.uint8)
        frames.append(Frame(f"{k}", color, np.eye(3), depth_lr=lr, depth_hr=depth))
    return frames


def offsets_of(crop: np.ndarray, full: np.ndarray) -> list[tuple[int, int]]:
    """Where ``crop`` occurs in ``full`` as an exact slice."""
    lh, lw = crop.shape
    return [(y, x) for y in range(full.shape[0] - lh + 1) for x in range(full.shape[1] - lw + 1)
            if np.array_equal(full[y:y + lh, x:x + lw], crop)]


def test_non_integer_factor_crops_stack_and_keep_footprints_aligned():
    """HR 640x480, LR 124x93 (factor 5.16, the SR300 log of issue 9): every crop of a batch has one size, the LR crop
    is whole sensor pixels, and the HR crop reduces onto it."""
    frames = ramp_frames(4, (93, 124))
    pairs = TrainingPairs(frames, PLAIN, seed=1)
    batch = next(iter(DataLoader(pairs, batch_sampler=EpochBatches(len(pairs), 4, seed=1))))
    assert batch["image"].shape == (4, 3, 237, 320) and batch["depth_hr"].shape == (4, 1, 237, 320)
    assert batch["depth_lr"].shape == (4, 1, 46, 62)
    for i in range(4):
        k = int(batch["image"][i, 2, 0, 0] * 255 / 40 + 0.5)  # which frame (blue channel)
        assert len(offsets_of(batch["depth_lr"][i, 0].numpy(), frames[k].depth_lr)) == 1
        error = (down(batch["depth_hr"][i:i + 1], (46, 62)) - batch["depth_lr"][i:i + 1]).abs()
        # depth rises 3-5 mm per HR pixel: a footprint shifted by half a pixel would be off by > 1.5 mm; what
        # remains (0.2 mm at most, 0.05 mm on average) is the blur of resampling 237.4 HR rows to 237
        assert float(error.max()) < 5e-4 and float(error.mean()) < 1e-4


def test_integer_factor_crops_are_plain_slices():
    frames = ramp_frames(1, (120, 160))
    sample = TrainingPairs(frames, PLAIN, seed=0)[0]
    assert sample["image"].shape == (3, 240, 320) and sample["depth_lr"].shape == (1, 60, 80)
    (y, x), = offsets_of(sample["depth_lr"][0].numpy(), frames[0].depth_lr)
    hr_crop = frames[0].depth_hr[4 * y:4 * y + 240, 4 * x:4 * x + 320]
    np.testing.assert_array_equal(sample["depth_hr"][0].numpy(), hr_crop)
    np.testing.assert_array_equal((sample["image"] * 255).round().byte().permute(1, 2, 0).numpy(),
                                  frames[0].color[4 * y:4 * y + 240, 4 * x:4 * x + 320])


def test_scale_jitter_zooms_image_and_depths_together_and_divides_depth_by_the_zoom():
    frames = ramp_frames(1, (93, 124), twist=0.0)
    data = DataConfig(crop_height=240, crop_width=320, hflip=False, color_jitter=0.0, scale_jitter=0.4,
                      min_depth=0.1, max_depth=50.0)
    pairs = TrainingPairs(frames, data, seed=0)
    zooms = []
    for epoch in range(12):
        s = pairs[SampleKey(0, epoch)]
        zoom = float(s["zoom"])
        zooms.append(zoom)
        assert 1 / 1.4 - 1e-9 <= zoom <= 1.4 + 1e-9 and s["depth_lr"].shape == (1, 46, 62)
        # aligned: no bias (a half-pixel shift would be > 1 mm everywhere); what remains is the LR sensor's own
        # blockiness, resampled over windows that cut its pixels (< a quarter of its 2 cm step per pixel)
        error = down(s["depth_hr"][None], (46, 62))[0] - s["depth_lr"]
        assert abs(float(error.mean())) < 2e-4 and float(error.abs().max()) < 5e-3
        # the frame's LR depth rises 0.004 * 640/124 m per LR pixel; zoomed by z, a crop pixel spans 1/z of one and
        # its depth is divided by z: slope / z**2
        slope = np.diff(s["depth_lr"][0].numpy(), axis=1).mean()
        assert slope == pytest.approx(0.004 * 640 / 124 / zoom**2, rel=1e-2)
    assert min(zooms) < 0.9 and max(zooms) > 1.1


def test_samples_differ_per_worker_and_epoch_yet_are_deterministic():
    """Eight identical frames: any difference between samples is augmentation. Two workers, two epochs."""
    frames = ramp_frames(1, (12, 16), (48, 64)) * 8
    data = DataConfig(crop_height=32, crop_width=32, hflip=True, color_jitter=0.3, scale_jitter=0.2)
    pairs = TrainingPairs(frames, data, seed=5)

    def epoch_images(epoch: int, workers: int) -> torch.Tensor:
        sampler = EpochBatches(len(pairs), 2, seed=5)
        sampler.set_position(epoch)
        return torch.cat([b["image"] for b in DataLoader(pairs, batch_sampler=sampler, num_workers=workers)])

    first, second = epoch_images(0, 2), epoch_images(1, 2)
    assert first.shape == (8, 3, 32, 32)
    both = torch.cat([first, second]).flatten(1)
    assert all(not torch.equal(both[i], both[j]) for i in range(16) for j in range(i))  # 16 different samples
    assert torch.equal(first, epoch_images(0, 0))  # the same samples whatever loads them


def test_epoch_batches_shares_order_full_frames_and_resume_position():
    a, b = EpochBatches(10, 3, seed=2, rank=0, world=2), EpochBatches(10, 3, seed=2, rank=1, world=2)
    first = [k.index for batch in a for k in batch]
    assert len(a) == 2 and sorted(first + [k.index for batch in b for k in batch]) == list(range(10))
    a.set_position(1)
    assert [k.index for batch in a for k in batch] != first and all(k.epoch == 1 for batch in a for k in batch)
    a.set_position(0, start=1)
    assert [k.index for batch in a for k in batch] == first[3:]  # resuming mid-epoch: the rest of the same order
    kinds = set()
    for epoch in range(8):
        mixed = EpochBatches(8, 2, seed=0, full_frame_fraction=0.5)
        mixed.set_position(epoch)
        for batch in mixed:
            assert len({k.full_frame for k in batch}) == 1  # one kind per batch, so a batch always stacks
            kinds.add(batch[0].full_frame)
    assert kinds == {True, False}
    assert not any(k.full_frame for batch in EpochBatches(8, 2) for k in batch)


def test_full_frame_batches_are_whole_frames_at_the_native_grid():
    frames = ramp_frames(2, (93, 124))
    pairs = TrainingPairs(frames, PLAIN, seed=0)
    s = pairs[SampleKey(1, 0, True)]
    assert s["image"].shape == (3, 480, 640) and s["depth_lr"].shape == (1, 93, 124)
    np.testing.assert_array_equal(s["depth_lr"][0].numpy(), frames[1].depth_lr)
