"""Training from the robot log vs from the dataset folder (issue 5's evidence), same config and budget.

Rows: the folder with LR depth made by ``down`` x4, and the rosbag2 log (its pairs from the first 500 color frames,
i.e. 487 pairs: every 37th depth frame was dropped), each with several seeds (the spread between seeds is the
run-to-run noise). All are evaluated on frames 500-599 of the folder against full-resolution ground truth.

    python bench/bag_vs_folder.py --bag ../shared/data/bags/redkitchen_tof_x4 --folder ../shared/data/redkitchen \
        --steps 600 --out bench/results/bag_vs_folder [--reuse-folder-run bench/results/ablation_x4/full]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from depth_node_training.config import load_config
from depth_node_training.evaluation.evaluate import evaluate_frames, format_table, torch_predictor
from depth_node_training.learning.checkpoint import load_model
from depth_node_training.learning.datasets import open_frames
from depth_node_training.learning.train import fit
from depth_node_training.logs.extract import extract

from depth_node.network.checkpoint import read_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bag", default="../shared/data/bags/redkitchen_tof_x4")
    parser.add_argument("--folder", default="../shared/data/redkitchen")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--out", type=Path, default=Path("bench/results/bag_vs_folder"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--reuse-folder-run", type=Path, help="a finished folder run (seed 0) with the same settings")
    args = parser.parse_args()

    extracted = args.out / "extracted"
    start = time.time()
    summary = extract([args.bag], extracted, progress=True)
    extract_seconds = time.time() - start
    runs = {f"{source} (seed {seed})": ([f"{path}@0:500"], [f"train.seed={seed}"])
            for source, path in (("folder x4", args.folder), ("bag", extracted)) for seed in args.seeds}
    if args.reuse_folder_run:
        target = args.out / "folder x4 (seed 0)"
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(args.reuse_folder_run / "checkpoint.pt", target / "checkpoint.pt")
    frames = open_frames(f"{args.folder}@500:600")
    results = {}
    for name, (data, overrides) in runs.items():
        out = args.out / name
        ckpt = out / "checkpoint.pt"
        if not (ckpt.exists() and read_checkpoint(ckpt)["step"] >= args.steps):
            fit(load_config(None, [f"train.steps={args.steps}", *overrides]), data, out, resume=True)
        model, cfg, meta = load_model(ckpt)
        results[name] = evaluate_frames(torch_predictor(model, cfg.model.mean, cfg.model.std), frames,
                                        cfg.data.min_depth, cfg.data.max_depth, desc=name)
        results[name]["train_frames"] = meta["frames"]
    folder = [r["abs_rel"] for name, r in results.items() if name.startswith("folder")]
    bag = [r["abs_rel"] for name, r in results.items() if name.startswith("bag")]
    noise = max(max(folder) - min(folder), max(bag) - min(bag))  # seed-to-seed range of either source
    gap = abs(sum(bag) / len(bag) - sum(folder) / len(folder))
    report = {
        "extraction": {k: summary[k] for k in ("color_frames", "depth_frames", "pairs", "skipped")},
        "extract_seconds": extract_seconds,
        "rows": results,
        "seed_range_abs_rel": noise,
        "mean_abs_rel": {"folder": sum(folder) / len(folder), "bag": sum(bag) / len(bag)},
        "abs_mean_difference": gap,
        "bag_within_noise": gap <= noise,
    }
    (args.out / "bag_vs_folder.json").write_text(json.dumps(report, indent=2, default=str))
    print(format_table(results))
    print(f"seed range {noise:.4f}, |mean bag - mean folder| {gap:.4f}, within noise: {report['bag_within_noise']}")


if __name__ == "__main__":
    main()
