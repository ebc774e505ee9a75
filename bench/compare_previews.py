"""Put the predictions of several runs side by side, from the preview PNGs `depth-train evaluate` and the ablation write
(colour | ground truth | prediction | error per row; the same frames and the same depth range per row for every run of
one split):

    python bench/compare_previews.py --out docs/images/texture_test_x4.png \
        "+hr=bench/results/paper_parts_x4/+hr/seed0/previews_test/previews.png" \
        "default=bench/results/paper_parts_x4/+cons-charb/seed0/previews_test/previews.png" --rows 2 3

Writes colour | ground truth | one prediction per run, with the run's name over its column (``--rows``: which of the
previews' frames, from 0; default all).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from depth_node_training.evaluation.previews import PANEL_WIDTH

PANELS = 4  # colour, ground truth, prediction, error


def panels(path: Path, rows: list[int] | None, frames: int) -> list[np.ndarray]:
    image = cv2.imread(str(path))
    if image is None:
        raise SystemExit(f"{path}: not a readable image")
    if rows:
        if max(rows) >= frames or image.shape[0] % frames:
            raise SystemExit(f"{path}: {image.shape[0]} px high is not {frames} rows, or row {max(rows)} is not one")
        height = image.shape[0] // frames
        image = np.concatenate([image[r * height:(r + 1) * height] for r in rows], 0)
    if image.shape[1] % PANELS:
        raise SystemExit(f"{path}: {image.shape[1]} px wide, not {PANELS} panels (a preview with a confidence map?)")
    width = image.shape[1] // PANELS
    return [image[:, i * width:(i + 1) * width] for i in range(PANELS)]


def label(text: str, width: int) -> np.ndarray:
    strip = np.full((28, width, 3), 255, np.uint8)
    cv2.putText(strip, text, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    return strip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="NAME=PNG")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rows", type=int, nargs="*", help="which frames of the previews, from 0 (default: all)")
    parser.add_argument("--frames", type=int, default=4, help="frames in each preview (evaluation's default: 4)")
    args = parser.parse_args()
    runs = [(name, panels(Path(png), args.rows, args.frames))
            for name, _, png in (spec.partition("=") for spec in args.runs)]
    first = runs[0][1]
    if any(p[0].shape != first[0].shape for _, p in runs):
        raise SystemExit("the previews differ in size: not the same frames of the same split")
    columns = [("colour", first[0]), ("ground truth", first[1])] + [(name, p[2]) for name, p in runs]
    picture = np.concatenate([np.concatenate([label(n, c.shape[1]), c], 0) for n, c in columns], 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), picture)
    print(f"wrote {args.out} ({len(runs)} runs, {PANEL_WIDTH} px panels)")


if __name__ == "__main__":
    main()
