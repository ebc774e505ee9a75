"""How much the live LR depth sharpens the confidence map, and how much of that survives a noisy real sensor.

On held-out frames with HR ground truth, each model's AbsRel sparsification
(``training/evaluation/sparsification.py``) ranked by its image-only confidence and by that confidence sharpened with
the frame's LR depth (``depth_node/sensor_confidence.py``, the stage in the model's calibration). Our LR depth is
down(HR ground truth), cleaner than a real time-of-flight sensor; so the sharpening is also scored with the LR depth
degraded like one: multiplicative Gaussian noise per reading (``sigma``), readings lost at random (``dropout``) and a
systematic scale error (``bias``). Rough specifications for scale: phase ToF cameras about 1% of range, multizone
ToF rangers 5-8%.

Prints a table (change of AbsRel when the 20% least confident pixels are removed, AURG, and the mean confidence
against the fraction of pixels whose error is within the calibration's threshold, per model), writes JSON:

    python bench/confidence_sensor_noise.py --data ../shared/data/redkitchen@500:600 \
        --models bench/results/recipe_x4/+hr-noflip/seed{0,1,2}/checkpoint.pt \
        --calibrations bench/results/confidence/sensor/recipe_seed{0,1,2}.confidence.json \
        --json bench/results/confidence/sensor/noise_500_600.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from confidence_limits import load_models, print_row, start_results, summary_row  # noqa: E402
from depth_node_training.evaluation.sparsification import sparsification  # noqa: E402
from depth_node_training.learning.datasets import open_frames  # noqa: E402
from depth_node_training.learning.training_pairs import lr_supervision  # noqa: E402
from depth_node_training.skipped import Skipped, scorable_frames  # noqa: E402

from depth_node.sensor_confidence import sharpen  # noqa: E402

# name -> (sigma, dropout, bias) of the LR depth; None: the image-only confidence
SENSORS: dict[str, tuple[float, float, float] | None] = {
    "image only": None,
    "exact LR depth": (0.0, 0.0, 1.0),
    "1% noise, 5% lost": (0.01, 0.05, 1.0),
    "3% noise, 5% lost": (0.03, 0.05, 1.0),
    "5% noise, 10% lost": (0.05, 0.10, 1.0),
    "5% scale error": (0.0, 0.0, 1.05),
}


def degrade(lr: np.ndarray, sigma: float, dropout: float, bias: float, rng: np.random.Generator) -> np.ndarray:
    """The LR depth as a noisier sensor would give it (NaN: no reading)."""
    noisy = lr * bias * (1.0 + sigma * rng.standard_normal(lr.shape))
    return np.where(rng.random(lr.shape) < dropout, np.nan, noisy).astype(np.float32)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="held-out frames with HR ground truth, PATH@START:STOP")
    p.add_argument("--models", nargs="+", required=True, help="checkpoints (seeds of one recipe)")
    p.add_argument("--calibrations", nargs="+", required=True, help="each model's calibration JSON, with the stage")
    p.add_argument("--json", type=Path, required=True)
    args = p.parse_args()
    torch.set_grad_enabled(False)
    models, calibrations, cfg = load_models(args.models, args.calibrations)
    for path, calibration in zip(args.calibrations, calibrations):
        if calibration.lr_depth is None:
            raise SystemExit(f"{path}: no live LR depth stage (calibrate against HR ground truth)")
    stages, thresholds = [c.lr_depth for c in calibrations], [c.threshold for c in calibrations]
    frames = open_frames(args.data, cfg)
    valid_range = (cfg.data.min_depth, cfg.data.max_depth)
    curves: dict[str, list[list[dict]]] = {name: [[] for _ in models] for name in SENSORS}
    # per sensor and model: [pixels, sum of confidence, pixels within the calibration's threshold]
    sums = {name: np.zeros((len(models), 3)) for name in SENSORS}
    skipped = Skipped()
    for i, frame in scorable_frames(frames, tqdm(range(len(frames)), desc="sensor noise"), skipped):
        image = torch.from_numpy(frame.color).permute(2, 0, 1)[None].float()
        lr, gt = lr_supervision(frame, cfg.data), frame.depth_hr
        valid = np.isfinite(gt) & (gt >= cfg.data.min_depth) & (gt <= cfg.data.max_depth)
        for m, (model, stage) in enumerate(zip(models, stages)):
            depth, confidence = (t[0, 0].numpy() for t in model(image))
            pred = np.clip(depth, *valid_range)[valid]
            within = np.abs(pred - gt[valid]) / gt[valid] < thresholds[m]
            for k, (name, sensor) in enumerate(SENSORS.items()):
                rng = np.random.default_rng([i, k])  # the same degraded frame for every model
                ranked = confidence if sensor is None else sharpen(confidence, depth, degrade(lr, *sensor, rng),
                                                                   valid_range, stage)
                curves[name][m].append(sparsification(pred, gt[valid], ranked[valid]))
                sums[name][m] += (within.size, float(ranked[valid].sum()), int(within.sum()))
    results = start_results(args, skipped, bool(curves["image only"][0]), "sensor noise", "sensors")
    print(f"{'LR depth':<20}  {'AbsRel change, 80% kept':<30}  AURG")
    for name, sensor in SENSORS.items():
        rows = [{**summary_row(per_model), "mean_confidence": confidence / n, "observed_within": within / n}
                for per_model, (n, confidence, within) in zip(curves[name], sums[name])]
        results["sensors"][name] = {"sigma_dropout_bias": sensor, "per_model": rows}
        print_row(name, rows, 20)
        print(" " * 22 + "mean confidence (observed within the threshold): " +
              " / ".join(f"{r['mean_confidence']:.2f} ({r['observed_within']:.2f})" for r in rows))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
