"""Depth with and without the node's scale alignment to the live LR depth, frame by frame along the trajectory.

Each run's checkpoint sees its fold's frames in time order, as the node would, and ``depth_node.scale_align``'s
``ScaleAligner`` (the node's default parameters unless given) is fed each frame's LR supervision (the logged LR depth,
else down(G_hr) by the factor, as training had it). Paired per frame and seed: AbsRel aligned - raw, per fold and
pooled (moving-block bootstrap and t-interval over seeds), per 20-frame block, and the rule of
``bench/results/scale_align/rule.md``. ``--sensor SIGMA LOST`` degrades the LR depth like a noisier sensor
(``confidence_sensor_noise.degrade``); a sensor's own scale error passes into the output unchanged, by design. A PNG
shows AbsRel and the fitted scale along each fold.

    python bench/scale_align_blocks.py --fold val=bench/results/ablation_x4_fastdepth/default-hflip \\
        --fold early=bench/results/ablation_x4_early/default-hflip --seeds 0 1 2 3 4 5 \\
        --out bench/results/scale_align/summary_val.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from ablation import SPLITS
from confidence_sensor_noise import degrade
from depth_node_training.config import DataConfig
from depth_node_training.evaluation.metrics import depth_metrics
from depth_node_training.evaluation.statistics import block_means, paired_bootstrap, paired_t_interval
from depth_node_training.learning.datasets import open_frames
from depth_node_training.learning.training_pairs import lr_supervision
from tqdm import tqdm

from depth_node.estimator import load_estimator
from depth_node.scale_align import ScaleAligner

DATA = Path(__file__).parents[2] / "shared" / "data" / "redkitchen"


def stream(checkpoint: Path, frames, data: DataConfig, aligner: ScaleAligner, desc: str,
           sensor: tuple[float, float] = (0.0, 0.0)) -> dict[str, list]:
    """Per-frame AbsRel raw and aligned, and the scale each frame was published with, in time order; ``sensor``:
    (noise sigma, fraction lost) of the LR depth, as a noisier sensor than down(G_hr) would give it."""
    estimator = load_estimator(str(checkpoint), backend="torch")
    rng = np.random.default_rng(0)
    raw, aligned, scales, skipped = [], [], [], 0
    for i in tqdm(range(len(frames)), desc=desc, dynamic_ncols=True):
        frame = frames[i]
        prediction = estimator.infer(frame.color, "rgb8")[0]
        lr = lr_supervision(frame, data)
        if any(sensor):
            lr = degrade(np.where(lr > 0, lr, np.nan), *sensor, 1.0, rng)
        _, why = aligner.update(prediction, lr)
        skipped += why is not None
        raw.append(depth_metrics(prediction, frame.depth_hr, data.min_depth, data.max_depth)["abs_rel"])
        aligned.append(depth_metrics(aligner.apply(prediction), frame.depth_hr, data.min_depth,
                                     data.max_depth)["abs_rel"])
        scales.append(aligner.scale)
    return {"raw": raw, "aligned": aligned, "scale": scales, "lr_frames_skipped": skipped}


def compare(aligned: np.ndarray, raw: np.ndarray) -> dict:
    """Aligned - raw, (seeds, frames) paired: bootstrap over frame blocks and seeds, t-interval over seed means."""
    return {"aligned": float(aligned.mean()), "raw": float(raw.mean()),
            "bootstrap": paired_bootstrap(aligned, raw), "t": paired_t_interval(aligned.mean(1), raw.mean(1))}


def compare_fold(aligned: np.ndarray, raw: np.ndarray) -> dict:
    """``compare`` and the 20-frame blocks along the fold (seed means), the last the furthest along."""
    return {**compare(aligned, raw), "blocks_aligned": block_means(aligned.mean(0)),
            "blocks_raw": block_means(raw.mean(0))}


def plot(results: dict[str, dict[int, dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(results), figsize=(6 * len(results), 6), squeeze=False, sharex="col")
    for col, (fold, runs) in enumerate(results.items()):
        first = int(SPLITS[fold].split(":")[0])
        x = first + np.arange(len(next(iter(runs.values()))["raw"]))
        for key, colour in (("raw", "tab:red"), ("aligned", "tab:blue")):
            values = np.array([run[key] for run in runs.values()])
            axes[0, col].plot(x, values.mean(0), color=colour, label=f"{key} (mean of {len(runs)} seeds)")
        axes[0, col].set(title=f"{fold} block: AbsRel along the trajectory", ylabel="AbsRel")
        axes[0, col].legend()
        for seed, run in runs.items():
            axes[1, col].plot(x, run["scale"], lw=1, label=f"seed {seed}")
        axes[1, col].set(xlabel="frame", ylabel="scale applied (smoothed)")
        axes[1, col].axhline(1.0, color="grey", lw=0.5)
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fold", action="append", required=True, metavar="SPLIT=RUNS",
                   help=f"a split ({', '.join(SPLITS)}) and the folder of its runs (seedN/checkpoint.pt)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--factor", type=float, default=4.0)
    p.add_argument("--smoothing", type=float, default=0.9, help="the node's scale_align.smoothing")
    p.add_argument("--max-step", type=float, default=0.05, help="the node's scale_align.max_step")
    p.add_argument("--sensor", type=float, nargs=2, default=(0.0, 0.0), metavar=("SIGMA", "LOST"),
                   help="degrade the LR depth: multiplicative noise sigma per reading, fraction of readings lost")
    p.add_argument("--out", type=Path, required=True, help="summary JSON (and a PNG beside it)")
    args = p.parse_args()
    data = DataConfig(factor=args.factor)
    results: dict[str, dict[int, dict]] = {}
    for spec in args.fold:
        fold, runs = spec.split("=", 1)
        if fold not in SPLITS:
            p.error(f"--fold {spec}: unknown split {fold!r} (one of {', '.join(SPLITS)})")
        frames = open_frames(f"{args.data}@{SPLITS[fold]}")
        results[fold] = {}
        for seed in args.seeds:
            checkpoint = Path(runs) / f"seed{seed}" / "checkpoint.pt"
            if not checkpoint.is_file():
                sys.exit(f"{checkpoint}: no such checkpoint")
            aligner = ScaleAligner(smoothing=args.smoothing, max_step=args.max_step)
            results[fold][seed] = stream(checkpoint, frames, data, aligner, f"{fold} seed {seed}", tuple(args.sensor))
    arrays = {fold: {key: np.array([run[key] for run in runs.values()]) for key in ("raw", "aligned")}
              for fold, runs in results.items()}
    folds = {fold: compare_fold(a["aligned"], a["raw"]) for fold, a in arrays.items()}
    summary = {"command": "python bench/scale_align_blocks.py " + " ".join(sys.argv[1:]),
               "aligner": {"smoothing": args.smoothing, "max_step": args.max_step, "shift": False},
               "sensor": {"noise_sigma": args.sensor[0], "lost": args.sensor[1]},
               "seeds": args.seeds, "folds": folds,
               "lr_frames_skipped": {f: [r["lr_frames_skipped"] for r in runs.values()] for f, runs in results.items()},
               "runs": {f: {str(s): r for s, r in runs.items()} for f, runs in results.items()}}
    if len(arrays) > 1:  # per seed, each fold's frames side by side
        pooled = {key: np.concatenate([a[key] for a in arrays.values()], axis=1) for key in ("raw", "aligned")}
        summary["pooled"] = compare(pooled["aligned"], pooled["raw"])
        below = (summary["pooled"]["bootstrap"]["high"] < 0) and (summary["pooled"]["t"]["high"] < 0)
        against = [f for f, c in folds.items() if c["bootstrap"]["low"] > 0]
        summary["rule"] = {"adopt": bool(below and not against and len(args.seeds) >= 6),
                           "both_intervals_below_0": bool(below), "folds_against": against, "seeds": len(args.seeds)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2))
    plot(results, args.out.with_suffix(".png"))
    print("| fold | raw | aligned | aligned - raw [bootstrap] [t] | last 20-frame block raw -> aligned |")
    print("| --- | --- | --- | --- | --- |")
    for fold, c in {**folds, **({"pooled": summary["pooled"]} if "pooled" in summary else {})}.items():
        b, t = c["bootstrap"], c["t"]
        last = f"{c['blocks_raw'][-1]:.3f} -> {c['blocks_aligned'][-1]:.3f}" if "blocks_raw" in c else ""
        print(f"| {fold} | {c['raw']:.3f} | {c['aligned']:.3f} | {b['mean']:+.3f} [{b['low']:+.3f}, {b['high']:+.3f}] "
              f"[{t['low']:+.3f}, {t['high']:+.3f}] | {last} |")
    if "rule" in summary:
        print(f"rule (bench/results/scale_align/rule.md): {summary['rule']}")
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
