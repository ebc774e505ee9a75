"""Preview pictures a newcomer can read: labelled panels (colour | prediction | ground truth | error) with colour bars.

Prediction and ground truth share one depth scale (TURBO, near blue, far red, as in the README's picture) whose bar is
labelled in metres; the error panel shows |prediction - ground truth| / ground truth on 0..50% (INFERNO). Pixels
without a valid value are black. Everything is drawn with OpenCV into one BGR image.
"""

from __future__ import annotations

import cv2
import numpy as np

PANEL_WIDTH = 320
TITLE_H = 26
BAR_H = 14
LABEL_H = 22
MAX_ERROR = 0.5
FONT = cv2.FONT_HERSHEY_SIMPLEX
WHITE = (255, 255, 255)


def colorize(values: np.ndarray, lo: float, hi: float, colormap: int = cv2.COLORMAP_TURBO) -> np.ndarray:
    """HxW values -> HxWx3 BGR on [lo, hi]; non-finite values black."""
    valid = np.isfinite(values)
    scaled = np.clip((np.where(valid, values, lo) - lo) / max(hi - lo, 1e-6), 0, 1)
    image = cv2.applyColorMap((255 * scaled).astype(np.uint8), colormap)
    image[~valid] = 0
    return image


def titled(panel: np.ndarray, title: str) -> np.ndarray:
    """The panel scaled to PANEL_WIDTH under a black title strip."""
    h, w = panel.shape[:2]
    panel = cv2.resize(panel, (PANEL_WIDTH, round(h * PANEL_WIDTH / w)), interpolation=cv2.INTER_AREA)
    strip = np.zeros((TITLE_H, PANEL_WIDTH, 3), np.uint8)
    cv2.putText(strip, title, (6, TITLE_H - 8), FONT, 0.55, WHITE, 1, cv2.LINE_AA)
    return np.concatenate([strip, panel], 0)


def colour_bar(width: int, lo: float, hi: float, colormap: int, label: str, fmt: str) -> np.ndarray:
    """A horizontal bar of ``colormap`` on [lo, hi] with 5 tick values (``fmt``) and a label, ``width`` wide."""
    ramp = np.linspace(lo, hi, width, dtype=np.float32)[None].repeat(BAR_H, 0)
    bar = colorize(ramp, lo, hi, colormap)
    text = np.zeros((LABEL_H, width, 3), np.uint8)
    for i, value in enumerate(np.linspace(lo, hi, 5)):
        tick = fmt.format(value)
        size = cv2.getTextSize(tick, FONT, 0.45, 1)[0][0]
        x = int(np.clip(i * (width - 1) / 4 - size / 2, 2, width - size - 2))
        cv2.putText(text, tick, (x, LABEL_H - 7), FONT, 0.45, WHITE, 1, cv2.LINE_AA)
    size = cv2.getTextSize(label, FONT, 0.45, 1)[0][0]
    caption = np.zeros((LABEL_H, width, 3), np.uint8)
    cv2.putText(caption, label, ((width - size) // 2, LABEL_H - 7), FONT, 0.45, WHITE, 1, cv2.LINE_AA)
    return np.concatenate([bar, text, caption], 0)


def preview(bgr: np.ndarray, prediction: np.ndarray, gt: np.ndarray | None = None) -> np.ndarray:
    """One labelled row: colour | prediction | ground truth | error (the last two only with ``gt``) + colour bars."""
    depths = [prediction] + ([gt] if gt is not None else [])
    valid = np.concatenate([d[np.isfinite(d) & (d > 0)] for d in depths])
    lo, hi = (float(v) for v in np.percentile(valid, [2, 98])) if valid.size else (0.0, 1.0)
    panels = [titled(bgr, "colour"), titled(colorize(prediction, lo, hi), "prediction")]
    if gt is not None:
        gt = np.where(gt > 0, gt, np.nan)
        error = np.abs(prediction - gt) / gt
        panels += [titled(colorize(gt, lo, hi), "ground truth"),
                   titled(colorize(error, 0.0, MAX_ERROR, cv2.COLORMAP_INFERNO), "error |pred - gt| / gt")]
    row = np.concatenate(panels, 1)
    depth_bar = colour_bar(PANEL_WIDTH * len(depths), lo, hi, cv2.COLORMAP_TURBO, "depth [m]  (black: no value)",
                           "{:.2f}")
    bars = [np.zeros((depth_bar.shape[0], PANEL_WIDTH, 3), np.uint8), depth_bar]
    if gt is not None:
        bars.append(colour_bar(PANEL_WIDTH, 0.0, 100 * MAX_ERROR, cv2.COLORMAP_INFERNO, "relative error [%]",
                               "{:.0f}"))
    return np.concatenate([row, np.concatenate(bars, 1)], 0)
