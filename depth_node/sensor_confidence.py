"""The confidence map sharpened by a live LR depth sensor: where the prediction disagrees with the sensor, it is wrong.

The model's own confidence (computed inside the exported graph from the image alone) ranks held-out errors weakly:
there they are region-wide and shared by independently trained models (docs/method.md, Confidence). A robot that
carries the LR sensor the model was trained from sees those regions: the relative disagreement between the
prediction, area-averaged over each sensor footprint, and the sensor's reading, averaged over ``window`` x
``window`` footprints that have a reading. ``depth-train calibrate-confidence`` fits, against HR ground truth,

    confidence = sigmoid(w_model * logit(model confidence) + w_sensor * log(disagreement + EPS) + bias)

and stores it as ``SensorStage`` in the calibration (the export's ``confidence`` metadata, key ``lr_depth``). Pixels
whose window has no reading keep the model's confidence. The log disagreement is upsampled to the image by
bilinear interpolation normalised over the footprints that have a value, so near a hole only real readings count.
The LR depth must be registered to the colour camera (same view, same aspect ratio), as for ``scale_align``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np

from .scale_align import reduce_to

EPS = 1e-3  # log floor of the relative disagreement: below 0.1% the sensor's own noise dominates
WINDOW = 1  # LR footprints (a side); 1 ranked best on the validation block, 3 and 5 next (docs/benchmarks.md, 8)


@dataclass(frozen=True)
class SensorStage:
    """The calibrated combination of the model's confidence with the sensor disagreement (module docstring)."""

    weights: tuple[float, float]  # on logit(model confidence), on log(disagreement + EPS)
    bias: float
    window: int = WINDOW
    pixels: int = 0  # pixels it was fitted on

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> SensorStage:
        if len(d["weights"]) != 2 or int(d.get("window", WINDOW)) < 1:
            raise ValueError(f"lr_depth stage: need two weights and a window >= 1, got {d}")
        return SensorStage((float(d["weights"][0]), float(d["weights"][1])), float(d["bias"]),
                           int(d.get("window", WINDOW)), int(d.get("pixels", 0)))


def sensor_stage(metadata: dict[str, str]) -> SensorStage | None:
    """The stage in an exported model's metadata (None: calibrated without one, or no confidence at all)."""
    stage = json.loads(metadata.get("confidence", "{}")).get("lr_depth")
    return SensorStage.from_dict(stage) if stage else None


def log_disagreement(depth: np.ndarray, lr: np.ndarray, valid_range: tuple[float, float], window: int = WINDOW
                     ) -> np.ndarray:
    """log(mean |down(depth) - lr| / lr + EPS) over ``window``^2 footprints with a reading, on the LR grid (h, w);
    NaN where none has one. ``depth``: HxW metres; ``lr``: hxw metres, NaN / out of ``valid_range``: no reading."""
    import cv2

    pred = reduce_to(depth, lr.shape)
    lo, hi = valid_range
    with np.errstate(invalid="ignore", divide="ignore"):
        valid = np.isfinite(lr) & (lr >= lo) & (lr <= hi) & np.isfinite(pred)
        residual = np.where(valid, np.abs(pred - lr) / np.where(valid, lr, 1.0), 0.0).astype(np.float32)
    box = dict(ddepth=-1, ksize=(window, window), normalize=False, borderType=cv2.BORDER_CONSTANT)
    total = cv2.boxFilter(residual, **box)
    count = cv2.boxFilter(valid.astype(np.float32), **box)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0.5, np.log(total / np.maximum(count, 1.0) + EPS), np.nan).astype(np.float32)


def upsample(values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling of an LR map with NaN holes, normalised over the neighbours that have a value (NaN where
    none has)."""
    import cv2

    seen = np.isfinite(values)
    size = (shape[1], shape[0])
    total = cv2.resize(np.where(seen, values, 0.0).astype(np.float32), size, interpolation=cv2.INTER_LINEAR)
    weight = cv2.resize(seen.astype(np.float32), size, interpolation=cv2.INTER_LINEAR)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(weight > 1e-6, total / weight, np.nan).astype(np.float32)


def combine(confidence: np.ndarray, log_d: np.ndarray, stage: SensorStage) -> np.ndarray:
    """The stage applied to the model's HxW ``confidence`` and the HxW upsampled ``log_disagreement`` (NaN: keep)."""
    c = np.clip(confidence, 1e-6, 1 - 1e-6)
    logit = stage.weights[0] * np.log(c / (1 - c)) + stage.weights[1] * np.nan_to_num(log_d) + stage.bias
    sharpened = 1.0 / (1.0 + np.exp(-logit))
    return np.where(np.isfinite(log_d), sharpened, confidence).astype(np.float32)


def sharpen(confidence: np.ndarray, depth: np.ndarray, lr: np.ndarray, valid_range: tuple[float, float],
            stage: SensorStage) -> np.ndarray:
    """The model's confidence sharpened by the LR depth of the same frame (what the node publishes)."""
    return combine(confidence, upsample(log_disagreement(depth, lr, valid_range, stage.window), depth.shape), stage)
