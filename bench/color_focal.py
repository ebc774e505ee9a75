"""The colour camera's focal length, measured from what a robot has: colour images, poses and LR depth.

7-Scenes' camera-intrinsics.txt (fx = fy = 585) is the depth camera's; its colour camera was never calibrated. The
photometric reprojection loss (``training/learning/photometric.py``) is only as right as the K it is given
(``test/test_photometric.py``: with 585 it prefers depth 1.25x too far), so ``data.color_focal`` must be measured.
Here each training-block target frame's LR depth (HR reduced by ``--factor``, nearest-upsampled, 0 invalid) is
warped into its neighbours with K = [[f, 0, cx], [0, f, cy], [0, 0, 1]] for each f; the focal with the lowest mean
loss is the choice. The same curve with HR ground-truth depth is printed as a check only (evaluation, never used).
At the chosen focal and at 585 it also prints the depth scale the loss prefers (1.0: the LR depth's own).

    OMP_NUM_THREADS=1 .venv/bin/python bench/color_focal.py --data ../shared/data/redkitchen --frames 0:400 \
        --every 20 --out bench/results/color_focal.json

On a shared 2-core CPU the default (up to 20 targets, ~0.3 s per loss call) takes about 11 minutes; the stored
``bench/results/color_focal.json`` was made with ``--every 40`` (9 targets with a neighbour, 5.4 minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from depth_node_training.learning.datasets import open_frames
from depth_node_training.learning.photometric import Source, pick_neighbours, relative_pose, reprojection_loss
from tqdm import tqdm

from depth_node.network.reduce import down_depth_np

DOCUMENTED_FOCAL = 585.0
SCALES = np.round(np.arange(0.80, 1.2501, 0.05), 2)


@dataclass
class Target:
    """One target frame, its depths (1, 1, H, W) and its neighbours' images and T_src<-tgt."""

    name: str
    image: torch.Tensor
    lr: torch.Tensor
    hr: torch.Tensor | None
    centre: tuple[float, float]
    sources: list[tuple[str, torch.Tensor, torch.Tensor]]


def tensor_image(color: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(color).permute(2, 0, 1)[None].float() / 255.0


def load_targets(frames, every: int, offsets: list[int], min_baseline: float, factor: float) -> list[Target]:
    """Every ``every``-th frame with at least one neighbour; the robot's LR depth where the reader has it, else
    ``down`` of the HR depth."""
    source, indices = getattr(frames, "source", frames), getattr(frames, "indices", range(len(frames)))
    poses = [source.poses[i] for i in indices] if hasattr(source, "poses") else [f.pose for f in frames]
    targets = []
    for i in range(0, len(frames), every):
        neighbours = pick_neighbours(poses, i, offsets, min_baseline)
        if not neighbours:
            continue
        frame = frames[i]
        h, w = frame.color.shape[:2]
        lr = frame.depth_lr if frame.depth_lr is not None else down_depth_np(frame.depth_hr, factor, 0.5, 0.1, 10.0)
        lr = cv2.resize(np.nan_to_num(lr), (w, h), interpolation=cv2.INTER_NEAREST)  # 0 stays invalid
        hr = None if frame.depth_hr is None else torch.from_numpy(frame.depth_hr)[None, None]
        sources = [(frames[k].name, tensor_image(frames[k].color), relative_pose(poses[k], frame.pose)[None])
                   for k in neighbours]
        targets.append(Target(frame.name, tensor_image(frame.color), torch.from_numpy(lr)[None, None], hr,
                              (float(frame.K[0, 2]), float(frame.K[1, 2])), sources))
    return targets


def mean_loss(targets: list[Target], focal: float, depth: str = "lr", scale: float = 1.0) -> float:
    """The photometric loss averaged over targets, with focal ``focal`` and ``scale`` x the ``depth`` ("lr"/"hr")."""
    values = []
    for t in targets:
        K = torch.tensor([[[focal, 0, t.centre[0]], [0, focal, t.centre[1]], [0, 0, 1]]], dtype=torch.float64)
        sources = [Source(image, K, T) for _, image, T in t.sources]
        values.append(reprojection_loss(t.image, scale * getattr(t, depth), K, sources).photometric.item())
    return float(np.mean(values))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data/redkitchen")
    p.add_argument("--frames", default="0:400", help="START:STOP, the training block (never validation/test)")
    p.add_argument("--every", type=int, default=20, help="target frame spacing")
    p.add_argument("--offsets", type=int, nargs="+", default=[-10, 10], help="neighbours' offsets from a target")
    p.add_argument("--min-baseline", type=float, default=0.02, help="metres")
    p.add_argument("--factor", type=float, default=4, help="HR -> LR depth reduction")
    p.add_argument("--focals", type=float, nargs="+", default=list(np.arange(480.0, 620.1, 5.0)))
    p.add_argument("--out", type=Path, default=Path("bench/results/color_focal.json"))
    args = p.parse_args()
    start = time.time()
    torch.set_grad_enabled(False)
    targets = load_targets(open_frames(f"{args.data}@{args.frames}"), args.every, args.offsets, args.min_baseline,
                           args.factor)
    if not targets:
        raise SystemExit(f"{args.data}@{args.frames}: no target frame has a neighbour (offsets {args.offsets}, "
                         f"baseline >= {args.min_baseline} m)")
    print(f"{len(targets)} target frames with a neighbour: {', '.join(t.name for t in targets)}")
    with_hr = all(t.hr is not None for t in targets)
    rows = [{"focal": f, "lr": mean_loss(targets, f), "hr": mean_loss(targets, f, "hr") if with_hr else None}
            for f in tqdm(args.focals, desc="focals")]
    chosen = min(rows, key=lambda r: r["lr"])["focal"]
    print("\n| focal | LR-depth loss | HR-depth loss (evaluation only) |\n| --- | --- | --- |")
    for r in rows:
        print(f"| {r['focal']:g} | {r['lr']:.5f} | " + (f"{r['hr']:.5f} |" if with_hr else "- |"))
    hr_argmin = min(rows, key=lambda r: r["hr"])["focal"] if with_hr else None
    print(f"\nargmin LR-depth loss: {chosen:g} (the measurement); argmin HR-depth loss: "
          f"{hr_argmin if hr_argmin is None else f'{hr_argmin:g}'} (evaluation only, not used)")
    scales = {}
    for focal in (chosen, DOCUMENTED_FOCAL):
        curve = {float(s): mean_loss(targets, focal, "lr", float(s)) for s in SCALES}
        scales[f"{focal:g}"] = {"loss": curve, "argmin": min(curve, key=curve.get)}
        print(f"focal {focal:g}: preferred scale of the LR depth {scales[f'{focal:g}']['argmin']:g}")
    threads = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} " if "OMP_NUM_THREADS" in os.environ else ""
    report = {"command": f"{threads}python {shlex.join(sys.argv)}",
              "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
                         f"torch {torch.__version__}",
              "wall_s": round(time.time() - start, 1), "data": args.data, "factor": args.factor,
              "frames": {t.name: [name for name, _, _ in t.sources] for t in targets},
              "per_focal": rows, "argmin_lr": chosen, "argmin_hr_evaluation_only": hr_argmin,
              "preferred_scales": scales}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wall time {report['wall_s']} s; wrote {args.out}")


if __name__ == "__main__":
    main()
