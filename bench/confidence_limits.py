"""What limits the confidence map: how well signals of different reach rank the errors of the same models.

For models of one recipe trained on the same frames (different seeds), on held-out frames with HR ground truth, the
AbsRel sparsification (``training/evaluation/sparsification.py``) of each model's depth ranked by:

- ``model``: the model's own calibrated confidence (HR/LR disagreement and depth edges,
  ``depth_node/network/confidence_head.py``);
- ``ensemble``: the spread (standard deviation of log depth, 17x17-pixel mean) of all the models' HR predictions: a
  deep ensemble, the usual stronger uncertainty estimate, at N times the inference cost;
- ``lr_sensor``: the disagreement with the LR depth of the same frame, as the node computes it for
  ``confidence.use_lr_depth`` (relative, per footprint; footprints without a reading get the frame's median),
  uncalibrated: what a robot whose depth sensor runs beside the camera could add.
  Here the LR depth is down(HR ground truth), so this is an upper bound for a real sensor, whose own errors it lacks;
- ``oracle_lr``: the true relative error averaged over each LR footprint: the best any signal at the LR sensor's
  resolution can do; ``oracle``: the true per-pixel error.

Prints a table (change of AbsRel when the 20% least confident pixels are removed, AURG), writes JSON and a PNG:

    OMP_NUM_THREADS=1 python bench/confidence_limits.py --data ../shared/data/redkitchen@500:600 \
        --models bench/results/recipe_x4/+hr/seed{0,1,2}/checkpoint.pt \
        --calibrations bench/results/confidence/reference/seed{0,1,2}_hr.confidence.json \
        --json bench/results/confidence/limits_500_600.json --png docs/images/confidence_limits.png
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from depth_node_training.evaluation.sparsification import FRACTIONS, mean_curves, sparsification
from depth_node_training.learning.checkpoint import load_model
from depth_node_training.learning.datasets import open_frames
from depth_node_training.learning.training_pairs import lr_supervision
from depth_node_training.skipped import Skipped, scorable_frames
from tqdm import tqdm

from depth_node.network.confidence_head import Calibration, ConfidenceHead, resize, window_mean
from depth_node.network.deploy_model import DeployModel
from depth_node.network.reduce import area_mean
from depth_node.sensor_confidence import WINDOW as SENSOR_WINDOW
from depth_node.sensor_confidence import log_disagreement

SIGNALS = ("model", "ensemble", "lr_sensor", "oracle_lr")
LABELS = {"model": "model (its own confidence)", "ensemble": "ensemble (spread of the models)",
          "lr_sensor": "live LR depth (upper bound)", "oracle_lr": "oracle at LR resolution",
          "oracle": "oracle (per pixel)"}
ENSEMBLE_WINDOW = 17  # input pixels, as the model's own signals
AT_20 = int(np.flatnonzero(np.isclose(FRACTIONS, 0.2))[0])


def lr_sensor_agreement(depth: torch.Tensor, lr: np.ndarray, valid_range: tuple[float, float],
                        window: int = SENSOR_WINDOW) -> torch.Tensor:
    """Minus the sensor disagreement of ``depth`` (1,1,H,W) with LR depth ``lr`` (h, w; 0 = no reading) that the node
    uses (``depth_node.sensor_confidence.log_disagreement`` over ``window``^2 footprints), on the LR grid (higher =
    more confident); footprints without a reading in their window get the frame's median."""
    log_d = log_disagreement(depth[0, 0].numpy(), lr, valid_range, window)
    seen = np.isfinite(log_d)
    fill = np.median(log_d[seen]) if seen.any() else 0.0
    return -torch.from_numpy(np.where(seen, log_d, fill))[None, None]


def load_models(checkpoints: list[str], calibrations: list[str]) -> tuple[list[DeployModel], list[Calibration], Any]:
    """Each checkpoint with its calibration's confidence head (eval mode), the calibrations, and the last config."""
    if len(checkpoints) != len(calibrations):
        raise SystemExit(f"{len(checkpoints)} models but {len(calibrations)} calibrations: give one each")
    models, fits = [], []
    for checkpoint, path in zip(checkpoints, calibrations):
        fits.append(Calibration.from_json(Path(path).read_text()))
        net, cfg, _ = load_model(checkpoint, "cpu")
        head = ConfidenceHead(fits[-1], cfg.model.factor)
        models.append(DeployModel(net.eval(), cfg.model.mean, cfg.model.std, confidence=head).eval())
    return models, fits, cfg


def summary_row(curves: list[dict]) -> dict:
    """One model's per-frame curves as a table row: AbsRel of all and of the 80% most confident pixels, AURG, AUSE."""
    c = mean_curves(curves)
    return {"abs_rel_all": c["abs_rel_all"], "abs_rel_kept_80": c["abs_rel_kept_80"],
            "change_kept_80": c["abs_rel_kept_80"] / c["abs_rel_all"] - 1, "aurg": c["aurg"], "ause": c["ause"],
            "curve": [r["abs_rel"] for r in c["curve"]]}


def start_results(args: argparse.Namespace, skipped: Skipped, scored: bool, desc: str, key: str) -> dict:
    """Warn about the frames that could not be scored, refuse when none was, and start the results JSON."""
    skipped.warn(logging.getLogger(desc), desc)
    if not scored:
        raise SystemExit(f"{args.data}: no frame with HR ground truth ({'; '.join(skipped.lines())})")
    return {"data": args.data, "models": args.models, "calibrations": args.calibrations,
            "skipped": skipped.as_dict(), key: {}}


def print_row(name: str, rows: list[dict], width: int = 10) -> None:
    """``name``, then each model's AbsRel change at 80% kept and AURG."""
    changes = " / ".join(f"{r['change_kept_80']:+.1%}" for r in rows)
    print(f"{name:<{width}}  {changes:<30}  " + " / ".join(f"{r['aurg']:.4f}" for r in rows))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="held-out frames with HR ground truth, PATH@START:STOP")
    p.add_argument("--models", nargs="+", required=True, help="checkpoints of one recipe (seeds)")
    p.add_argument("--calibrations", nargs="+", required=True, help="each model's confidence calibration JSON")
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--png", type=Path)
    args = p.parse_args()
    if len(args.models) < 2:
        raise SystemExit("one model: the ensemble row needs the spread of at least two (seeds of one recipe)")
    torch.set_grad_enabled(False)
    models, _, cfg = load_models(args.models, args.calibrations)
    frames = open_frames(args.data, cfg)
    valid_range = (cfg.data.min_depth, cfg.data.max_depth)
    curves: dict[str, list[list[dict]]] = {s: [[] for _ in models] for s in SIGNALS}
    skipped = Skipped()
    for _, frame in scorable_frames(frames, tqdm(range(len(frames)), desc="confidence limits"), skipped):
        image = torch.from_numpy(frame.color).permute(2, 0, 1)[None].float()
        outputs = [model(image) for model in models]
        spread = torch.stack([torch.log(depth) for depth, _ in outputs]).std(0)
        ensemble = -window_mean(spread, ENSEMBLE_WINDOW)
        lr = lr_supervision(frame, cfg.data)
        gt = frame.depth_hr
        valid = np.isfinite(gt) & (gt >= cfg.data.min_depth) & (gt <= cfg.data.max_depth)
        g = torch.from_numpy(np.where(valid, gt, 1.0))[None, None]
        scored = torch.from_numpy(valid)[None, None].float()
        for m, (depth, confidence) in enumerate(outputs):
            pred = depth.clamp(cfg.data.min_depth, cfg.data.max_depth)
            error = (pred - g).abs() / g * scored
            footprint_error = area_mean(error, lr.shape) / area_mean(scored, lr.shape).clamp(min=1e-6)
            ranked = {"model": confidence, "ensemble": ensemble,
                      "lr_sensor": resize(lr_sensor_agreement(depth, lr, valid_range), gt.shape),
                      "oracle_lr": resize(-footprint_error, gt.shape)}
            for name, score in ranked.items():
                curves[name][m].append(sparsification(pred[0, 0].numpy()[valid], gt[valid],
                                                      score[0, 0].numpy()[valid]))
    results = start_results(args, skipped, bool(curves["model"][0]), "confidence limits", "signals")
    print(f"{'signal':<10}  {'AbsRel change, 80% kept':<30}  AURG")
    for name in SIGNALS:
        results["signals"][name] = [summary_row(per_model) for per_model in curves[name]]
        print_row(name, results["signals"][name])
    oracle = []
    for per_model in curves["model"]:
        c = mean_curves(per_model)
        kept = c["curve"][AT_20]["abs_rel_oracle"]
        oracle.append({"abs_rel_all": c["abs_rel_all"], "abs_rel_kept_80": kept,
                       "change_kept_80": kept / c["abs_rel_all"] - 1,
                       "aurg": float(np.mean([r["abs_rel_random"] - r["abs_rel_oracle"] for r in c["curve"]])),
                       "curve": [r["abs_rel_oracle"] for r in c["curve"]]})
    results["signals"]["oracle"] = oracle
    print_row("oracle", oracle)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1))
    print(f"wrote {args.json}")
    if args.png:
        plot(results, args.png)
        print(f"wrote {args.png}")


def plot(results: dict, path: Path) -> None:
    """AbsRel of the kept pixels against the fraction removed, each signal averaged over the models."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for name, rows in results["signals"].items():
        ax.plot(FRACTIONS, np.mean([r["curve"] for r in rows], 0), label=LABELS[name],
                linestyle="--" if name.startswith("oracle") else "-")
    ax.axhline(np.mean([r["abs_rel_all"] for r in results["signals"]["model"]]), color="gray", linestyle=":",
               label="random")
    ax.set_xlabel("fraction of pixels removed (least confident first)")
    ax.set_ylabel("AbsRel of the remaining pixels")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(f"{len(results['models'])} models, {results['data'].split('/')[-1]}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
