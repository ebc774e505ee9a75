"""``depth-train calibrate-confidence``: fit the confidence map's calibration (the map itself, its signals and how the
graph computes it: ``depth_node.network.confidence_head``).

Tried and left out (``docs/method.md``, Confidence): the depth itself (nearness to the range limits; it ranked well
on training frames and worse than random on held-out ones), the signed disagreement, per-pixel and 5x5 windows,
image texture and distance to the image border.

Calibration (``depth-train calibrate-confidence``): a logistic regression on the log of the chosen signals, fitted on
training frames, so that the confidence estimates the probability of a relative error below ``threshold`` on data
like the calibration data. Against HR ground truth where the frames have it (a dataset: ``reference`` "hr", per
input pixel), else against the LR supervision on the LR depth's grid (a robot log, which has no HR ground truth:
"lr", per LR-sensor footprint; on our data both rank the held-out frames alike, docs/method.md, Confidence). It is
stored as JSON beside the checkpoint (``model.confidence.json`` for ``model.pt``) and baked into the exported graph and
its metadata by ``depth-train export``.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from depth_node.network.confidence_head import FEATURES, REFERENCES, Calibration, calibration_path, resize, signals
from depth_node.network.reduce import area_mean
from depth_node.sensor_confidence import WINDOW as SENSOR_WINDOW
from depth_node.sensor_confidence import SensorStage, combine, log_disagreement, upsample

from ..skipped import FrameError, Skipped, scorable_frames

CANDIDATES = (("disagreement",), ("edge",), ("disagreement", "edge"))
log = logging.getLogger(__name__)


def fit_logistic(features: np.ndarray, target: np.ndarray, iterations: int = 25, ridge: float = 1e-6
                 ) -> tuple[np.ndarray, float]:
    """Logistic regression (Newton / IRLS) of boolean ``target`` on (n, k) ``features``: (weights, bias)."""
    X = np.concatenate([features.astype(np.float64), np.ones((len(features), 1))], 1)
    y = target.astype(np.float64)
    beta = np.zeros(X.shape[1])
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(X @ beta, -30, 30)))
        hessian = (X * (p * (1 - p))[:, None]).T @ X + ridge * np.eye(X.shape[1])
        step = np.linalg.solve(hessian, X.T @ (y - p))
        beta += step
        if np.abs(step).max() < 1e-8:
            break
    return beta[:-1], float(beta[-1])


@dataclass
class Samples:
    """Pixels sampled for calibration: log signals, prediction, reference depth and frame index, one entry each, and
    the upsampled log disagreement with the frame's LR depth (``sensor``; NaN: none in the window, or "lr" reference).
    """

    logs: dict[str, np.ndarray]
    pred: np.ndarray
    ref: np.ndarray
    frame: np.ndarray
    reference: str
    sensor: np.ndarray


def reference_of(frames) -> str | None:
    """"hr" when the frames carry HR ground truth (a dataset), else "lr" (a robot log: LR sensor depth only); None
    when no frame can be read."""
    for i in range(len(frames)):
        try:
            return "hr" if frames[i].depth_hr is not None else "lr"
        except FrameError:
            continue
    return None


def collect(net: nn.Module, cfg, data: str, pixels_per_frame: int, frames_stride: int, reference: str | None = None,
            seed: int = 0, sensor_window: int = SENSOR_WINDOW) -> Samples:
    """Pixels sampled from ``data``'s frames: against HR ground truth at the input's pixels (``reference`` "hr"), or
    against the LR supervision (logged sensor depth, else down(HR)) on its grid, the prediction area-averaged over each
    footprint ("lr"); None: "hr" when the frames have HR ground truth. With "hr", the LR supervision also gives the
    sensor disagreement over ``sensor_window``^2 footprints."""
    from depth_node.network.deploy_model import DeployModel

    from ..learning.datasets import open_frames
    from ..learning.training_pairs import lr_supervision

    deploy = DeployModel(net, cfg.model.mean, cfg.model.std).eval()
    frames = open_frames(data, cfg)
    reference = reference or reference_of(frames)
    wanted = {"hr": "HR ground truth", "lr": "LR depth"}.get(reference, "depth")  # None: no frame could be read
    reference = reference or "hr"
    rng = np.random.default_rng(seed)
    columns: dict[str, list[np.ndarray]] = {name: [] for name in FEATURES}
    preds, refs, index, sensor = [], [], [], []
    valid_range = (cfg.data.min_depth, cfg.data.max_depth)
    skipped = Skipped()
    indices = tqdm(range(0, len(frames), frames_stride), desc="calibrate-confidence", dynamic_ncols=True)
    for i, frame in scorable_frames(frames, indices, skipped, need_hr=reference == "hr"):
        image = torch.from_numpy(frame.color).permute(2, 0, 1)[None].float()
        ref = frame.depth_hr if reference == "hr" else lr_supervision(frame, cfg.data)
        with torch.no_grad():
            x = image * deploy.scale + deploy.shift
            depth = net(x)
            s = signals(net, x, depth, cfg.model.factor)
            pred = resize(depth, ref.shape) if reference == "hr" else area_mean(depth, ref.shape)
            s = {name: resize(t, ref.shape) for name, t in s.items()}
        valid = np.flatnonzero(np.isfinite(ref) & (ref >= cfg.data.min_depth) & (ref <= cfg.data.max_depth))
        pick = rng.choice(valid, min(pixels_per_frame, valid.size), replace=False)
        preds.append(pred[0, 0].numpy().ravel()[pick])
        refs.append(ref.ravel()[pick])
        for name in FEATURES:
            columns[name].append(s[name][0, 0].numpy().ravel()[pick])
        index.append(np.full(pick.size, i))
        if reference == "hr":
            log_d = log_disagreement(depth[0, 0].numpy(), lr_supervision(frame, cfg.data), valid_range, sensor_window)
            sensor.append(upsample(log_d, ref.shape).ravel()[pick])
        else:
            sensor.append(np.full(pick.size, np.nan, np.float32))
    skipped.warn(log, "calibrate-confidence")
    if not preds:
        raise ValueError(f"{data}: no frame with {wanted} to calibrate confidence on "
                         f"({'; '.join(skipped.lines()) or 'no frames'})")
    return Samples({k: np.concatenate(v) for k, v in columns.items()}, np.concatenate(preds), np.concatenate(refs),
                   np.concatenate(index), reference, np.concatenate(sensor))


def calibrate(checkpoint: Path, data: str, threshold: float = 0.1, pixels_per_frame: int = 20000,
              frames_stride: int = 4, select: str | None = None, features: tuple[str, ...] | None = None,
              reference: str | None = None, sensor_window: int = SENSOR_WINDOW) -> tuple[Calibration, dict[str, float]]:
    """Fit each candidate signal set on ``data`` (training frames) and keep the one whose confidence ranks pixels best:
    the highest mean AURG of AbsRel over the frames of ``select`` (held-out frames with ground truth: the validation
    block), or over ``data``'s own frames without it. Which set ranks best depends on the frames (for our recipe: both
    on the training frames and, against disagreement alone, on the test frames; disagreement alone on validation;
    docs/method.md, Confidence). ``features`` fixes the set instead (e.g. one chosen with another model of the same
    recipe); it is still scored. ``reference``: see ``collect`` (``select`` is scored against its own frames'
    reference). Against HR ground truth it also fits the sharpening by a live LR depth over ``sensor_window``^2
    footprints (``depth_node.sensor_confidence``; scored as "+lr_depth"); against the LR depth it cannot (the sensor
    would be judged against itself). Returns the calibration and each candidate's AURG."""
    from ..learning.checkpoint import load_model

    if sensor_window < 1:
        raise ValueError(f"the live LR depth window must be at least 1 LR footprint, got {sensor_window}")
    net, cfg, _ = load_model(checkpoint, "cpu")
    candidates = [features] if features else CANDIDATES
    fit_on = collect(net, cfg, data, pixels_per_frame, frames_stride, reference, sensor_window=sensor_window)
    scored_on = collect(net, cfg, select, pixels_per_frame, 1, sensor_window=sensor_window) if select else fit_on
    good = np.abs(fit_on.pred - fit_on.ref) / fit_on.ref < threshold
    scores, fits = {}, {}
    for names in candidates:
        weights, bias = fit_logistic(np.stack([fit_on.logs[n] for n in names], 1), good)
        scores["+".join(names)] = ranking_score(model_confidence(names, weights, bias, scored_on), scored_on)
        fits["+".join(names)] = (names, weights, bias)
    best = max(scores, key=scores.get)
    names, weights, bias = fits[best]
    stage = None
    seen = np.isfinite(fit_on.sensor)
    if fit_on.reference == "hr" and seen.any():
        own = model_confidence(names, weights, bias, fit_on)[seen]
        w, b = fit_logistic(np.stack([np.log(own / (1 - own)), fit_on.sensor[seen]], 1), good[seen])
        stage = SensorStage((float(w[0]), float(w[1])), b, sensor_window, int(seen.sum()))
        conf = combine(model_confidence(names, weights, bias, scored_on), scored_on.sensor, stage)
        scores[f"{best}+lr_depth"] = ranking_score(conf, scored_on)
    selected_on = "given" if features else (select or data)
    return (Calibration(tuple(names), tuple(float(w) for w in weights), bias, threshold, data, int(good.size),
                        selected_on, fit_on.reference, stage), scores)


def model_confidence(names: tuple[str, ...], weights: np.ndarray, bias: float, samples: Samples) -> np.ndarray:
    """The calibrated image-only confidence of the sampled pixels (what the exported graph computes)."""
    logit = np.stack([samples.logs[n] for n in names], 1) @ weights + bias
    return 1.0 / (1.0 + np.exp(-np.clip(logit, -30, 30)))


def ranking_score(confidence: np.ndarray, samples: Samples) -> float:
    """Mean over frames of the AURG of AbsRel of a confidence of the sampled pixels."""
    from ..evaluation.sparsification import sparsification

    per_frame = [samples.frame == f for f in np.unique(samples.frame)]
    return float(np.mean([sparsification(samples.pred[m], samples.ref[m], confidence[m])["abs_rel"]["aurg"]
                          for m in per_frame]))


def _run(args: argparse.Namespace) -> None:
    from depth_node.default_model import default_model_path

    checkpoint = Path(args.model) if args.model else default_model_path()
    features = tuple(args.features.split("+")) if args.features else None
    calibration, scores = calibrate(checkpoint, args.data, args.threshold, args.pixels, args.stride, args.select,
                                    features, args.reference, args.lr_window)
    out = Path(args.out) if args.out else calibration_path(checkpoint)
    out.write_text(calibration.to_json() + "\n")
    for name, score in scores.items():
        print(f"  {name}: AURG of AbsRel {score:.4f} on {args.select or args.data}")
    print(f"wrote {out}: {'+'.join(calibration.features)}, weights {calibration.weights}, bias {calibration.bias:.3f} "
          f"(confidence = {calibration.meaning()}); re-export the model to use it")
    stage = calibration.lr_depth
    print(f"  live LR depth stage: weights {stage.weights}, bias {stage.bias:.3f}, window {stage.window}" if stage else
          "  no live LR depth stage: calibrated against the LR depth itself (--reference lr)")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("calibrate-confidence", help="fit the confidence calibration of a checkpoint")
    p.add_argument("--model", help="checkpoint (.pt); default: the packaged default model")
    p.add_argument("--data", required=True, help="training frames, PATH@START:STOP: a dataset with HR ground truth or "
                   "a robot log (rosbag2) with LR depth only")
    p.add_argument("--select", help="held-out frames, PATH@START:STOP, on which the signal set is chosen and scored "
                   "(the validation block); default: the calibration frames themselves")
    p.add_argument("--features", choices=["+".join(c) for c in CANDIDATES],
                   help="use this signal set (chosen on validation with another model of the same recipe)")
    p.add_argument("--threshold", type=float, default=0.1, help="confidence = P(|D - D_gt| / D_gt < THRESHOLD)")
    p.add_argument("--reference", choices=REFERENCES, help="compare with HR ground truth per pixel (hr) or with the LR "
                   "supervision per LR footprint (lr); default: hr when the frames have HR ground truth, else lr")
    p.add_argument("--lr-window", type=int, default=SENSOR_WINDOW, help="LR footprints (a side) over which the "
                   "live LR depth stage averages the disagreement")
    p.add_argument("--pixels", type=int, default=20000, help="pixels sampled per frame")
    p.add_argument("--stride", type=int, default=4, help="use every STRIDE-th frame")
    p.add_argument("--out", help="output JSON (default: MODEL.confidence.json beside the checkpoint)")
    p.set_defaults(func=_run)
