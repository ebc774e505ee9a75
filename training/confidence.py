"""Per-pixel confidence from the method's own HR/LR consistency: where f(I) and f(down(I)) disagree, depth is unsure.

Signals (all on log depth, so they are relative and scale-free), computed inside the exported graph on the LR grid
(the model's training factor: what the LR pass gives anyway), over a ``WINDOW`` x ``WINDOW`` neighbourhood of input
pixels; their calibrated combination is upsampled bilinearly to the input size before the final sigmoid:

- ``disagreement``: local mean of |log down(D_hr) - log D_lr|, D_lr the network on the image reduced by the factor
  (``down``: area mean, as in training). The LR pass costs about 1/factor^2 of the HR pass. Averaged because the
  per-pixel difference is noisy while errors come in regions (per pixel ranked worse).
- ``edge``: max - min of log D_hr over the window: depth discontinuities, where depth is blurred, the camera's depth
  and colour are misregistered, and whose neighbourhood the network gets wrong most often.

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
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from depth_node.sensor_confidence import WINDOW as SENSOR_WINDOW
from depth_node.sensor_confidence import SensorStage, combine, log_disagreement, upsample

from .reduce import area_mean, lr_size
from .skipped import FrameError, Skipped, scorable_frames

FEATURES = ("disagreement", "edge")
EPS = 1e-4  # log floor of a signal: 0.01% relative difference counts as none
WINDOW = 17  # input pixels; 5 and 9 ranked worse on the calibration frames, 33 no better
CANDIDATES = (("disagreement",), ("edge",), ("disagreement", "edge"))
REFERENCES = ("hr", "lr")  # what the calibration compares the prediction with (module docstring)
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Calibration:
    """confidence = sigmoid(bias + sum_i weights[i] * log(features[i] + EPS)) ~ P(relative error < threshold)."""

    features: tuple[str, ...]
    weights: tuple[float, ...]
    bias: float
    threshold: float
    data: str = ""  # what it was fitted on
    pixels: int = 0
    selected_on: str = ""  # the frames whose ranking chose the signal set ("given" when fixed by the user)
    reference: str = "hr"  # "hr": P(|D - D_gt| / D_gt < threshold) per pixel; "lr": the same per LR-sensor footprint
    lr_depth: SensorStage | None = None  # the sharpening by a live LR depth (depth_node.sensor_confidence)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @staticmethod
    def from_json(text: str) -> Calibration:
        d = json.loads(text)
        unknown = [f for f in d["features"] if f not in FEATURES]
        if unknown or len(d["features"]) != len(d["weights"]):
            raise ValueError(f"confidence calibration: unknown features {unknown} or not one weight per feature")
        if d.get("reference", "hr") not in REFERENCES:
            raise ValueError(f"confidence calibration: reference {d['reference']!r} is not one of {REFERENCES}")
        return Calibration(tuple(d["features"]), tuple(float(w) for w in d["weights"]), float(d["bias"]),
                           float(d["threshold"]), str(d.get("data", "")), int(d.get("pixels", 0)),
                           str(d.get("selected_on", "")), str(d.get("reference", "hr")),
                           SensorStage.from_dict(d["lr_depth"]) if d.get("lr_depth") else None)

    def meaning(self) -> str:
        """What a confidence value estimates, in words (export metadata, CLI)."""
        error = ("|depth - true| / true" if self.reference == "hr"
                 else "|down(depth) - LR depth| / LR depth over an LR-sensor footprint")
        return f"P({error} < {self.threshold:g}) as calibrated on {self.data}"


def calibration_path(checkpoint: Path) -> Path:
    """Where a checkpoint's confidence calibration lives: ``model.confidence.json`` beside ``model.pt``."""
    return checkpoint.with_suffix(".confidence.json")


def load_calibration(checkpoint: Path) -> Calibration | None:
    path = calibration_path(checkpoint)
    if not path.exists():
        return None
    try:
        return Calibration.from_json(path.read_text())
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: not a confidence calibration ({error}); rerun `depth-train calibrate-confidence`") \
            from None


def signals(net: nn.Module, x: torch.Tensor, depth: torch.Tensor, factor: float) -> dict[str, torch.Tensor]:
    """The log of each signal (N,1,h,w) on the LR grid, for normalised input ``x`` and its HR prediction ``depth``."""
    size = lr_size(*(int(n) for n in x.shape[-2:]), factor)  # static sizes (a traced export fixes them anyway)
    log_lr = torch.log(net(area_mean(x, size)))
    log_hr = torch.log(area_mean(depth, size))
    k = max(3, round(WINDOW / factor) // 2 * 2 + 1)  # odd, in LR pixels
    edge = window_max(log_hr, k) + window_max(-log_hr, k)
    return {"disagreement": torch.log(window_mean((log_hr - log_lr).abs(), k) + EPS), "edge": torch.log(edge + EPS)}


def resize(t: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """Bilinear, as the exported graph upsamples the logit (the identity at the same size)."""
    return F.interpolate(t, size=tuple(size), mode="bilinear", align_corners=False)


class ConfidenceHead(nn.Module):
    """The calibrated map in [0, 1] from the network, the normalised input and its HR depth.

    The logit is linear in the signals, so upsampling it equals upsampling each signal first (what ``collect`` does
    to fit the calibration at the input's pixels).
    """

    def __init__(self, calibration: Calibration, factor: float) -> None:
        super().__init__()
        self.calibration, self.factor = calibration, factor

    def forward(self, net: nn.Module, x: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
        c = self.calibration
        s = signals(net, x, depth, self.factor)
        logit = c.bias + sum(w * s[name] for name, w in zip(c.features, c.weights))
        return torch.sigmoid(resize(logit, depth.shape[-2:]))


def window_max(t: torch.Tensor, k: int = WINDOW) -> torch.Tensor:
    """Max over a k x k window (same size out), as a row then a column pass."""
    return F.max_pool2d(F.max_pool2d(t, (1, k), 1, (0, k // 2)), (k, 1), 1, (k // 2, 0))


def window_mean(t: torch.Tensor, k: int = WINDOW) -> torch.Tensor:
    """Mean over a k x k window (same size out; only the pixels inside the image count at its borders)."""
    row = F.avg_pool2d(t, (1, k), 1, (0, k // 2), count_include_pad=False)
    return F.avg_pool2d(row, (k, 1), 1, (k // 2, 0), count_include_pad=False)


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
    from .datasets import open_frames
    from .export import DeployModel
    from .training_pairs import lr_supervision

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
    from .checkpoint import load_model

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
    from .sparsification import sparsification

    per_frame = [samples.frame == f for f in np.unique(samples.frame)]
    return float(np.mean([sparsification(samples.pred[m], samples.ref[m], confidence[m])["abs_rel"]["aurg"]
                          for m in per_frame]))


def _run(args: argparse.Namespace) -> None:
    from .export import default_checkpoint

    checkpoint = Path(args.model) if args.model else default_checkpoint()
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
