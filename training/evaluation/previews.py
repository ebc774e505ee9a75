"""Preview pictures: color | ground truth | prediction | error, one colormap and one depth range per row."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

PANEL_WIDTH = 400  # pixels per panel, so a 4-panel row stays readable and small

def colorize(depth: np.ndarray, lo: float, hi: float, colormap: int = cv2.COLORMAP_TURBO) -> np.ndarray:
    """Depth (metres) to RGB with a fixed range; invalid (0/NaN) pixels black."""
    valid = np.isfinite(depth) & (depth > 0)
    scaled = np.clip((np.nan_to_num(depth) - lo) / max(hi - lo, 1e-6), 0, 1)
    rgb = cv2.cvtColor(cv2.applyColorMap((scaled * 255).astype(np.uint8), colormap), cv2.COLOR_BGR2RGB)
    rgb[~valid] = 0
    return rgb


def preview_row(color: np.ndarray, gt: np.ndarray, pred: np.ndarray, min_depth: float, max_depth: float,
                confidence: np.ndarray | None = None) -> np.ndarray:
    """One row: GT and prediction share the range (GT's 2-98th percentile); error is |pred-gt|/gt on 0..0.5; a
    confidence map, when given, goes between prediction and error on 0..1 (dark: unsure)."""
    valid = np.isfinite(gt) & (gt >= min_depth) & (gt <= max_depth)
    lo, hi = np.percentile(gt[valid], [2, 98]) if valid.any() else (min_depth, max_depth)
    error = np.where(valid, np.abs(pred - gt) / np.where(valid, gt, 1), 0)
    error_rgb = colorize(error, 0.0, 0.5, cv2.COLORMAP_INFERNO)
    error_rgb[~valid] = 0
    panels = [color, colorize(np.where(valid, gt, 0), lo, hi), colorize(pred, lo, hi), error_rgb]
    if confidence is not None:
        panels.insert(3, colorize(confidence, 0.0, 1.0, cv2.COLORMAP_VIRIDIS))
    h, w = gt.shape
    scale = min(1.0, PANEL_WIDTH / w)
    size = (round(w * scale), round(h * scale))
    return np.concatenate([cv2.resize(p, size, interpolation=cv2.INTER_AREA) for p in panels], 1)


def save_rows(rows: list[np.ndarray], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(rows, 0), cv2.COLOR_RGB2BGR))
    return path
