"""Neighbour views for the motion term (5): the frames that see a training crop's surfaces, and the crop's geometry.

A sample is a crop of frame t, resampled, maybe zoomed (depths divided by the zoom) and flipped. For the photometric
loss to judge the depth predicted for that crop, the crop's pixels must be re-projected exactly as the camera saw
them: ``crop_intrinsics`` gives the K of the crop, and ``neighbour_views`` the source frames (whole, as recorded, with
their own K) and the pose from the crop's camera to each, its translation divided by the zoom (the zoomed sample is
the scene shrunk by it) and mirrored with a flip. Each of the ``loss.motion_offsets`` is one slot; a slot whose frame
is out of range, has no pose, is closer than ``loss.motion_min_baseline`` or belongs to another recording is marked
unavailable, so batches always stack.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from depth_node.network.reduce import Box

from ..config import DataConfig, LossConfig
from ..frames import Frame, FrameSource
from .photometric import pick_neighbours, relative_pose

MAX_GAP_NS = 1_000_000_000  # frames further apart in time belong to another recording (several logs in one run)
MIRROR_X = np.diag([-1.0, 1.0, 1.0, 1.0])  # a horizontally flipped image is a camera with x mirrored


def colour_K(frame: Frame, focal: float) -> np.ndarray:
    """The frame's colour intrinsics, with fx = fy = ``focal`` when given (``data.color_focal``, 0: as read)."""
    K = np.array(frame.K, dtype=np.float64)
    if focal > 0:
        K[0, 0] = K[1, 1] = focal
    return K


def crop_intrinsics(K: np.ndarray, box: Box, size: tuple[int, int], flip: bool = False) -> np.ndarray:
    """K of the image that resamples ``box`` (top, left, bottom, right in the frame's pixel edges) to ``size``
    (height, width); pixel centres at integers, as K uses them. ``flip``: the crop mirrored left-right."""
    top, left, bottom, right = box
    sy, sx = (bottom - top) / size[0], (right - left) / size[1]  # frame pixels per crop pixel
    out = np.array(K, dtype=np.float64)
    out[0, 0], out[1, 1] = K[0, 0] / sx, K[1, 1] / sy
    out[0, 2] = (K[0, 2] + 0.5 - left) / sx - 0.5
    out[1, 2] = (K[1, 2] + 0.5 - top) / sy - 0.5
    if flip:
        out[0, 2] = size[1] - 1 - out[0, 2]
    return out


def neighbour_views(frame_at: Callable[[int], Frame], count: int, index: int, target: Frame, zoom: float, flip: bool,
                    loss: LossConfig, data: DataConfig) -> dict[str, torch.Tensor]:
    """The source slots of sample ``index`` (frame ``target``): images (S, 3, H, W) in [0, 1], their K (S, 3, 3),
    T_src<-crop (S, 4, 4) and which are available (S,). ``frame_at(k)`` reads frame k of the ``count`` frames."""
    offsets = loss.motion_offsets
    near = {k: frame_at(k) for k in (index + o for o in offsets) if 0 <= k < count}
    near[index] = target
    lo = min(near)
    window = range(lo, max(near) + 1)
    poses = [near[k].pose if k in near else None for k in window]
    stamps = [near[k].stamp_ns if k in near else 0 for k in window]
    chosen = set(pick_neighbours(poses, index - lo, offsets, loss.motion_min_baseline, stamps, MAX_GAP_NS))
    H, W = target.color.shape[:2]
    images, Ks, Ts, available = [], [], [], []
    for offset in offsets:
        k = index + offset
        source = near.get(k) if k - lo in chosen else None
        if source is None or source.color.shape[:2] != (H, W):
            images.append(torch.zeros(3, H, W))
            Ks.append(np.eye(3))
            Ts.append(np.eye(4))
            available.append(False)
            continue
        T = relative_pose(source.pose, target.pose).numpy()
        T[:3, 3] /= zoom
        images.append(torch.from_numpy(source.color).permute(2, 0, 1).float() / 255.0)
        Ks.append(colour_K(source, data.color_focal))
        Ts.append(T @ MIRROR_X if flip else T)
        available.append(True)
    return {"motion_sources": torch.stack(images), "motion_source_K": torch.from_numpy(np.stack(Ks)).float(),
            "motion_T": torch.from_numpy(np.stack(Ts)).float(), "motion_available": torch.tensor(available)}


def frame_poses(source: FrameSource) -> Sequence[np.ndarray | None] | None:
    """Every frame's pose without decoding images, where the readers keep them (None when one does not)."""
    if hasattr(source, "sources"):  # Concat
        parts = [frame_poses(s) for s in source.sources]
        return None if any(p is None for p in parts) else [pose for part in parts for pose in part]
    if hasattr(source, "indices"):  # Subset
        poses = frame_poses(source.source)
        return None if poses is None else [poses[i] for i in source.indices]
    return getattr(source, "poses", None)
