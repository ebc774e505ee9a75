"""Ablation of the weak-supervision losses on real data (issue 2's evidence), same budget for every row.

Trains lr-only, +hr, +cons, full and hr-oracle on frames 0-499 of a 7-Scenes sequence with LR supervision made by
``--factor``, then evaluates every row (and upsampled-lr: bicubic upsampling of the lr-only model's LR output) on
frames 500-599 against the full-resolution ground truth. Prints a table, writes JSON and preview PNGs.

    python bench/ablation.py --data ../shared/data/redkitchen --factor 4 --steps 600 --out bench/results/ablation_x4

Rows already trained (checkpoint at the final step) are not trained again.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from depth_node_training.checkpoint import load_model, read_checkpoint
from depth_node_training.config import load_config
from depth_node_training.datasets import open_frames
from depth_node_training.evaluate import evaluate_frames, format_table, torch_predictor
from depth_node_training.reduce import lr_size
from depth_node_training.train import fit

ROWS = {
    "full": [],
    "lr-only": ["loss.w_hr=0", "loss.w_cons=0", "loss.w_affinity=0"],
    "hr-oracle": ["loss.supervision=hr", "loss.w_affinity=0"],
    "+hr": ["loss.w_cons=0", "loss.w_affinity=0"],
    "+cons": ["loss.w_affinity=0"],
}
ORDER = ("lr-only", "+hr", "+cons", "full", "hr-oracle", "upsampled-lr")


def upsampled_lr_predictor(model: torch.nn.Module, mean, std, factor: float):
    """The lr-only model at the LR resolution it was trained at, bicubically upsampled to the input size."""
    full = torch_predictor(model, mean, std)

    def predict(rgb: np.ndarray) -> np.ndarray:
        h, w = lr_size(*rgb.shape[:2], factor)
        small = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
        return cv2.resize(full(small), (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_CUBIC)

    return predict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/redkitchen")
    parser.add_argument("--factor", type=float, default=4.0)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--train-frames", default="0:500")
    parser.add_argument("--eval-frames", default="500:600")
    parser.add_argument("--rows", nargs="+", default=list(ORDER))
    parser.add_argument("--out", type=Path, default=Path("bench/results/ablation_x4"))
    parser.add_argument("--train-only", action="store_true")
    parser.add_argument("--set", nargs="*", default=[], help="extra config overrides for every row")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))

    common = [f"data.factor={args.factor}", f"model.factor={args.factor}", f"train.steps={args.steps}", *args.set]
    wall = {}
    for name in [r for r in ROWS if r in args.rows or (r == "lr-only" and "upsampled-lr" in args.rows)]:
        ckpt = args.out / name / "checkpoint.pt"
        if ckpt.exists() and read_checkpoint(ckpt)["step"] >= args.steps:
            continue
        cfg = load_config(None, common + ROWS[name])
        start = time.time()
        fit(cfg, [f"{args.data}@{args.train_frames}"], args.out / name, resume=True)
        wall[name] = time.time() - start
        (args.out / name / "wall.json").write_text(json.dumps({"train_seconds": wall[name]}))
    if args.train_only:
        return

    frames = open_frames(f"{args.data}@{args.eval_frames}")
    results = {}
    for name in [r for r in ORDER if r in args.rows]:
        source = "lr-only" if name == "upsampled-lr" else name
        model, cfg, meta = load_model(args.out / source / "checkpoint.pt")
        predict = (upsampled_lr_predictor(model, cfg.model.mean, cfg.model.std, args.factor) if name == "upsampled-lr"
                   else torch_predictor(model, cfg.model.mean, cfg.model.std))
        summary = evaluate_frames(predict, frames, cfg.data.min_depth, cfg.data.max_depth,
                                  csv_path=args.out / name / "eval_frames.csv",
                                  previews_dir=args.out / name / "previews", previews=4, desc=name)
        wall_file = args.out / source / "wall.json"
        summary["train_seconds"] = json.loads(wall_file.read_text())["train_seconds"] if wall_file.exists() else None
        results[name] = summary
    report = {
        "command": "python bench/ablation.py " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in
                                                          [("data", args.data), ("factor", args.factor),
                                                           ("steps", args.steps), ("out", args.out)]),
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch "
                   f"{torch.__version__}",
        "train_frames": args.train_frames, "eval_frames": args.eval_frames, "factor": args.factor,
        "rows": results,
    }
    if {"full", "lr-only", "hr-oracle", "upsampled-lr"} <= results.keys():
        full = results["full"]["abs_rel"]
        report["targets"] = {
            "full <= 0.9 x lr-only": full <= 0.9 * results["lr-only"]["abs_rel"],
            "full <= 1.1 x hr-oracle": full <= 1.1 * results["hr-oracle"]["abs_rel"],
            "full < upsampled-lr": full < results["upsampled-lr"]["abs_rel"],
        }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ablation.json").write_text(json.dumps(report, indent=2))
    print(format_table(results))
    print(json.dumps(report.get("targets", {}), indent=2))
    print(f"wrote {args.out / 'ablation.json'}")


if __name__ == "__main__":
    main()
