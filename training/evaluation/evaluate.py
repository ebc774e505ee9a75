"""Evaluation at the ground truth's full resolution: per-frame CSV, summary JSON, preview PNGs.

Works on any ``predict(rgb uint8 HxWx3) -> depth HxW metres``: a PyTorch model here, or any runtime backend through
``depth_node.estimator.load_estimator`` (the CLI), so every backend is measured on the same data and metrics.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from ..config import DataConfig
from ..frames import Frame, FrameSource
from ..learning.training_pairs import lr_supervision
from ..skipped import Skipped, scorable_frames, skipped_of
from .metrics import (
    EDGE_BAND,
    EDGE_JUMP,
    FLAT_TOLERANCE,
    METRICS,
    PART_METRICS,
    TEXTURE_SPACINGS,
    depth_metrics,
    nan_mean,
    part_regions,
    texture_error,
    valid_gt,
)
from .previews import preview_row, save_rows
from .sparsification import mean_curves, plot, reliability, reliability_counts, sparsification

Predictor = Callable[[np.ndarray], np.ndarray]
Sharpener = Callable[[np.ndarray, np.ndarray, Frame], np.ndarray]
log = logging.getLogger(__name__)


def torch_predictor(model: torch.nn.Module, mean, std) -> Predictor:
    """Wrap an estimator (through the same normalising wrapper as the export): uint8 RGB in, metres out."""
    from depth_node.network.deploy_model import DeployModel

    device = next(model.parameters()).device
    deploy = DeployModel(model, mean, std).to(device)

    @torch.no_grad()
    def predict(rgb: np.ndarray) -> np.ndarray:
        return deploy(torch.from_numpy(rgb).to(device).permute(2, 0, 1)[None].float())[0, 0].float().cpu().numpy()

    return predict


def evaluate_frames(predict: Predictor, frames: FrameSource, min_depth: float = 0.1, max_depth: float = 10.0,
                    median_scaling: bool = False, csv_path: Path | None = None, previews_dir: Path | None = None,
                    previews: int = 4, desc: str = "evaluate", confidence: bool = False,
                    confidence_threshold: float = 0.1, sharpen: Sharpener | None = None,
                    data: DataConfig | None = None) -> dict:
    """Mean metrics over frames with HR ground truth; predictions of another size are resized to the ground truth.

    Besides METRICS, each frame gets PART_METRICS (``metrics.part_regions``): AbsRel in the band around the ground
    truth's depth edges, and inside the holes of the LR supervision ``data`` makes (``lr_supervision``: the frame's
    logged LR depth, else the ground truth reduced by ``data.factor``, less the blobs ``data.lr_holes`` removes in
    training; default: factor 4, no blobs), and ``texture`` (``metrics.texture_error``: relief where the ground truth
    is flat). A frame without such pixels has NaN there; the summary's mean skips NaN
    and ``<metric>_frames`` says how many frames it averages.

    Frames that cannot be read or have no ground truth are skipped and counted by reason in ``skipped`` (with what
    the reader left out when it opened); only when no frame remains is it an error. With ``confidence`` the predictor
    returns (depth, confidence) and the summary gets the frame-averaged sparsification curves under ``confidence``, and
    how often pixels of each confidence had a relative error below ``confidence_threshold`` (the calibration's).
    ``sharpen(confidence, depth, frame)``: the confidence with the frame's live LR depth, scored likewise under
    ``confidence_lr_depth`` (and shown in the previews).
    """
    data = data or DataConfig(min_depth=min_depth, max_depth=max_depth)
    rows, picked, curves, counts = [], [], [], 0.0
    sharp_curves, sharp_counts = [], 0.0
    skipped = Skipped()  # while scoring (the reader warned about its own when it opened)
    preview_at = set(np.linspace(0, len(frames) - 1, previews).round().astype(int).tolist()) if previews else set()
    for i, frame in scorable_frames(frames, tqdm(range(len(frames)), desc=desc, dynamic_ncols=True), skipped):
        pred, conf = predict(frame.color) if confidence else (predict(frame.color), None)
        gt = frame.depth_hr
        if pred.shape != gt.shape:
            pred = cv2.resize(pred, (gt.shape[1], gt.shape[0]), interpolation=cv2.INTER_LINEAR)
            conf = None if conf is None else cv2.resize(conf, (gt.shape[1], gt.shape[0]))
        regions = part_regions(gt, lr_supervision(frame, data), min_depth, max_depth)
        metrics = depth_metrics(pred, gt, min_depth, max_depth, median_scaling, regions)
        rows.append({"frame": frame.name, **metrics, "texture": texture_error(pred, gt, min_depth, max_depth)})
        if conf is not None:
            valid = valid_gt(gt, min_depth, max_depth)
            scored = np.clip(np.nan_to_num(pred[valid], nan=min_depth), min_depth, max_depth)
            rel_err = np.abs(scored - gt[valid]) / gt[valid]
            curves.append(sparsification(scored, gt[valid], conf[valid]))
            counts = counts + reliability_counts(rel_err, conf[valid], confidence_threshold)
            if sharpen is not None:
                conf = sharpen(conf, pred, frame)
                sharp_curves.append(sparsification(scored, gt[valid], conf[valid]))
                sharp_counts = sharp_counts + reliability_counts(rel_err, conf[valid], confidence_threshold)
        if i in preview_at:
            picked.append(preview_row(frame.color, gt, pred, min_depth, max_depth, conf))
    skipped.warn(log, desc)
    skipped.update(skipped_of(frames))
    if not rows:
        raise ValueError(f"no frame to evaluate: {'; '.join(skipped.lines()) or 'the data holds no frame'}")
    summary = {m: float(np.mean([r[m] for r in rows])) for m in METRICS}
    for m in PART_METRICS:
        summary[m] = nan_mean(r[m] for r in rows)
        summary[f"{m}_frames"] = sum(not np.isnan(r[m]) for r in rows)
    summary["parts"] = {"edge_band_px": EDGE_BAND, "edge_jump": round(EDGE_JUMP - 1, 6), "lr_factor": data.factor,
                        "lr_holes": data.lr_holes, "texture_spacings_px": list(TEXTURE_SPACINGS),
                        "flat_tolerance": FLAT_TOLERANCE}
    summary["frames"] = len(rows)
    summary["skipped"] = skipped.as_dict()
    if curves:
        summary["confidence"] = mean_curves(curves)
        summary["confidence"]["reliability"] = reliability(counts, confidence_threshold)
    if sharp_curves:
        summary["confidence_lr_depth"] = mean_curves(sharp_curves)
        summary["confidence_lr_depth"]["reliability"] = reliability(sharp_counts, confidence_threshold)
    if csv_path:
        Path(csv_path).parent.mkdir(parents=True, exist_ok=True)
        with open(csv_path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    if previews_dir and picked:
        save_rows(picked, Path(previews_dir) / "previews.png")
    return summary


def validation_metrics(predict: Predictor, frames: FrameSource, data: DataConfig, max_frames: int = 20) -> dict:
    """Quick held-out check during training: AbsRel/delta1 of the HR prediction reduced to the LR ground truth (needs
    no HR ground truth, so it works on robot logs), plus HR AbsRel where HR ground truth exists."""
    lr_rows, hr_rows = [], []
    for i in np.linspace(0, len(frames) - 1, min(max_frames, len(frames))).round().astype(int):
        frame = frames[int(i)]
        pred = predict(frame.color)
        lr = lr_supervision(frame, data)
        pred_lr = cv2.resize(pred, (lr.shape[1], lr.shape[0]), interpolation=cv2.INTER_AREA)
        lr_rows.append(depth_metrics(pred_lr, np.where(lr > 0, lr, np.nan), data.min_depth, data.max_depth))
        if frame.depth_hr is not None:
            hr_rows.append(depth_metrics(pred, frame.depth_hr, data.min_depth, data.max_depth))
    result = {f"val_lr_{m}": float(np.mean([r[m] for r in lr_rows])) for m in ("abs_rel", "delta1")}
    if hr_rows:
        result["val_hr_abs_rel"] = float(np.mean([r["abs_rel"] for r in hr_rows]))
    return result


def format_table(results: dict[str, dict]) -> str:
    """Markdown table, one row per run (PART_METRICS: nan where no frame had such pixels)."""
    columns = METRICS + PART_METRICS
    head = "| run | " + " | ".join(columns) + " |"
    lines = [head, "|" + " --- |" * (len(columns) + 1)]
    for name, r in results.items():
        lines.append(f"| {name} | " + " | ".join(f"{r.get(m, np.nan):.3f}" for m in columns) + " |")
    return "\n".join(lines)


def run(args) -> None:
    """``depth-train evaluate``: any model file through the runtime interface, on any dataset reader."""
    from depth_node.estimator import load_estimator

    from ..learning.datasets import open_frames

    frames = open_frames(args.data)
    try:
        estimator = load_estimator(args.model, backend=args.backend)
    except (FileNotFoundError, ImportError):
        raise
    except Exception as err:  # a damaged or foreign file fails in whatever way its loader does
        cause = f"{type(err).__name__}: {(str(err).splitlines() or [''])[0]}"  # e.g. a broken calibration beside it
        raise ValueError(f"{args.model or 'the shipped model'}: cannot be loaded as a model ({cause}); damaged, "
                         "truncated, or not a depth_node checkpoint, ONNX model or TensorRT engine") from err
    factor = args.factor
    if args.confidence and not estimator.has_confidence:
        raise ValueError(f"{args.model or 'the shipped model'}: has no confidence output; calibrate it "
                         "(`depth-train calibrate-confidence`) and re-export it (`depth-train export`)")

    def predict(rgb: np.ndarray):
        if args.confidence:
            return estimator.infer_with_confidence(rgb, "rgb8")[:2]
        return estimator.infer(rgb, "rgb8")[0]

    threshold = json.loads(estimator.metadata.get("confidence", "{}")).get("threshold", 0.1)
    data = evaluation_data(args)
    summary = evaluate_frames(predict, frames, args.min_depth, args.max_depth, args.median_scaling, args.csv,
                              args.previews, desc=f"evaluate ({estimator.backend})", confidence=args.confidence,
                              confidence_threshold=threshold, sharpen=lr_depth_sharpener(estimator, args, data),
                              data=data)
    summary.update({"model": str(args.model or "default"), "backend": estimator.backend, "data": args.data,
                    "factor": factor})
    print(format_table({Path(str(args.model or "default")).name: summary}))
    print(f"frames scored {summary['frames']}, skipped: {summary['skipped'] or 'none'}")
    print(f"abs_rel_edges: within {EDGE_BAND} px of a depth jump > {EDGE_JUMP - 1:.0%}, "
          f"{summary['abs_rel_edges_frames']} frames; abs_rel_holes: in holes of the LR supervision (factor "
          f"{data.factor:g}, removed blobs {data.lr_holes:g}), {summary['abs_rel_holes_frames']} frames; texture: "
          f"relief where the ground truth is flat (second differences of 1/depth at {TEXTURE_SPACINGS} px), "
          f"{summary['texture_frames']} frames")
    if args.confidence:
        for key, label in (("confidence", "confidence"), ("confidence_lr_depth", "with the live LR depth")):
            if key in summary:
                print_confidence(label, summary[key])
        plot_path = args.confidence_plot or (args.json.with_suffix(".sparsification.png") if args.json else None)
        if plot_path:
            Path(plot_path).parent.mkdir(parents=True, exist_ok=True)
            plot(summary["confidence"], plot_path, extra=summary.get("confidence_lr_depth"))
            print(f"sparsification plot: {plot_path}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(summary, indent=2))


def evaluation_data(args) -> DataConfig:
    """The LR supervision evaluation assumes: ``--factor`` and the depth range, with the blobs that ``--lr-holes``
    removes, by default those the checkpoint's training removed (its ``data.lr_holes``; none for other model files),
    so ``abs_rel_holes`` scores exactly the footprints training had no target in."""
    holes = args.lr_holes
    if holes is None:
        from depth_node.model_files import model_kind
        from depth_node.network.checkpoint import read_checkpoint

        trained = args.model and model_kind(Path(args.model)) == "checkpoint"
        holes = (read_checkpoint(args.model)["config"].get("data") or {}).get("lr_holes", 0.0) if trained else 0.0
    return DataConfig(factor=args.factor, min_depth=args.min_depth, max_depth=args.max_depth, lr_holes=float(holes))


def lr_depth_sharpener(estimator, args, data: DataConfig) -> Sharpener | None:
    """With ``--lr-depth``: the model's live LR depth stage on each frame's LR depth ``data`` makes (the logged sensor
    depth, else the HR ground truth reduced by ``--factor`` as training does, with the blobs training removed)."""
    from depth_node.sensor_confidence import sharpen

    if not args.lr_depth:
        return None
    if not args.confidence:
        raise ValueError("--lr-depth sharpens the confidence: give --confidence too")
    stage = estimator.sensor_stage
    if stage is None:
        raise ValueError(f"{args.model or 'the shipped model'}: its confidence has no live LR depth stage; calibrate "
                         "it against HR ground truth (`depth-train calibrate-confidence`) and re-export it")
    valid_range = (args.min_depth, args.max_depth)
    return lambda conf, depth, frame: sharpen(conf, depth, lr_supervision(frame, data), valid_range, stage)


def print_confidence(label: str, c: dict) -> None:
    """One evaluated confidence, in two lines."""
    print(f"{label}: AUSE {c['ause']:.4f}, AURG {c['aurg']:.4f} (AbsRel); AbsRel all {c['abs_rel_all']:.4f}, "
          f"80% most confident {c['abs_rel_kept_80']:.4f} ({c['abs_rel_kept_80'] / c['abs_rel_all'] - 1:+.1%})")
    r = c["reliability"]
    print(f"  mean confidence {r['mean_confidence']:.3f}; pixels with relative error < {r['threshold']:g}: "
          f"{r['observed_within_threshold']:.3f}")


def register(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="metrics of a model against HR ground truth")
    p.add_argument("--model", help="checkpoint (.pt), ONNX (.onnx) or TensorRT engine; default: the shipped model")
    p.add_argument("--backend", default="auto", help="auto | tensorrt | onnxruntime | torch")
    p.add_argument("--data", required=True, help="dataset path, optionally PATH@START:STOP")
    p.add_argument("--factor", type=float, default=4.0, help="HR/LR factor the data's LR supervision used (recorded)")
    p.add_argument("--min-depth", type=float, default=0.1)
    p.add_argument("--max-depth", type=float, default=10.0)
    p.add_argument("--median-scaling", action="store_true")
    p.add_argument("--lr-holes", type=float, metavar="FRACTION",
                   help="blobs removed from the LR supervision (data.lr_holes) whose footprints abs_rel_holes also "
                        "scores; default: the checkpoint's training config (0 for ONNX and engines)")
    p.add_argument("--csv", type=Path, help="per-frame metrics CSV")
    p.add_argument("--json", type=Path, help="summary JSON")
    p.add_argument("--previews", type=Path, help="folder for preview PNGs")
    p.add_argument("--confidence", action="store_true",
                   help="also score the model's confidence: sparsification curves, AUSE, AURG (JSON `confidence`)")
    p.add_argument("--lr-depth", action="store_true", help="with --confidence: also score it sharpened by each "
                   "frame's LR depth (logged, else the ground truth reduced by --factor), as the node does with "
                   "confidence.use_lr_depth (JSON `confidence_lr_depth`)")
    p.add_argument("--confidence-plot", type=Path,
                   help="PNG of the sparsification curves (default with --json: JSON.sparsification.png)")
    p.set_defaults(func=run)
