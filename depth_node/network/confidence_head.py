"""The calibrated confidence computed with the depth, inside the exported graph (see
``depth_node_training.deployment.calibrate_confidence`` for how the calibration is fitted).

Signals (all on log depth, so they are relative and scale-free), computed on the LR grid (the model's training
factor: what the LR pass gives anyway), over a ``WINDOW`` x ``WINDOW`` neighbourhood of input pixels; their calibrated
combination is upsampled bilinearly to the input size before the final sigmoid:

- ``disagreement``: local mean of |log down(D_hr) - log D_lr|, D_lr the network on the image reduced by the factor
  (``down``: area mean, as in training). The LR pass costs about 1/factor^2 of the HR pass. Averaged because the
  per-pixel difference is noisy while errors come in regions (per pixel ranked worse).
- ``edge``: max - min of log D_hr over the window: depth discontinuities, where depth is blurred, the camera's depth
  and colour are misregistered, and whose neighbourhood the network gets wrong most often.

The calibration is stored as JSON beside the checkpoint (``model.confidence.json`` for ``model.pt``) and baked into
the exported graph and its metadata.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from depth_node.sensor_confidence import SensorStage

from .reduce import area_mean, lr_size

FEATURES = ("disagreement", "edge")
EPS = 1e-4  # log floor of a signal: 0.01% relative difference counts as none
WINDOW = 17  # input pixels; 5 and 9 ranked worse on the calibration frames, 33 no better
REFERENCES = ("hr", "lr")  # compared with: HR ground truth per pixel, or the LR depth per sensor footprint


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
