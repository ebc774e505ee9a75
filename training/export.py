"""ONNX export: the estimator plus its input normalisation as one graph, with everything a runtime needs as metadata.

The graph takes what a camera gives after a layout change, float32 (N,3,H,W) RGB in 0..255, and returns depth in metres
(N,1,H,W), so ONNX Runtime and TensorRT need no Python-side normalisation and no knowledge of the training config.
``--uint8-input`` makes it take the camera's bytes as they are, uint8 (N,H,W,3) RGB, converting inside the graph (a
quarter of the bytes to copy to a GPU). ``--precision fp16`` stores the network in fp16 for TensorRT's strongly typed
fp16 engines, keeping inputs, outputs, the input normalisation and the depth head (logits -> metres) in fp32.
"""

from __future__ import annotations

import argparse
import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from depth_node.estimator import file_sha256, onnx_metadata

from .confidence import Calibration, ConfidenceHead, load_calibration
from .config import Config
from .networks import DepthEstimator

OPSET = 17
PRECISIONS = ("fp32", "fp16")
INPUT_NAME = "image"
OUTPUT_NAME = "depth"
CONFIDENCE_NAME = "confidence"


class DeployModel(nn.Module):
    """Normalisation folded into one multiply-add in front of the network: 0..255 RGB in, metres out.

    With a ``confidence`` head it returns (depth, confidence), the head run only while ``with_confidence`` is set (so
    the PyTorch backend pays for it only when asked).
    """

    def __init__(self, net: DepthEstimator, mean: tuple[float, ...], std: tuple[float, ...],
                 uint8_nhwc: bool = False, confidence: ConfidenceHead | None = None) -> None:
        super().__init__()
        self.net = net
        self.uint8_nhwc = uint8_nhwc
        self.confidence = confidence
        self.with_confidence = confidence is not None
        std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.register_buffer("scale", 1.0 / (255.0 * std_t))  # (x/255 - mean)/std == x*scale + shift
        self.register_buffer("shift", -mean_t / std_t)

    def forward(self, image: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if self.uint8_nhwc:  # camera bytes: (N,H,W,3) uint8 -> (N,3,H,W) float
            image = image.permute(0, 3, 1, 2).float()
        x = image * self.scale + self.shift
        depth = self.net(x)
        if self.confidence is None or not self.with_confidence:
            return depth
        return depth, self.confidence(self.net, x, depth)


def deployment_metadata(cfg: Config, meta: dict[str, Any], checkpoint: Path, height: int, width: int,
                        dynamic: bool, precision: str = "fp32", uint8_input: bool = False,
                        calibration: Calibration | None = None) -> dict[str, str]:
    """The string key/values stored in the ONNX file (and reported by every backend as ``Estimator.metadata``)."""
    m = cfg.model
    conf = {} if calibration is None else {
        "confidence": calibration.to_json(),
        "confidence_output": f"{CONFIDENCE_NAME}: float32 (N,1,H,W) in [0,1], {calibration.meaning()}"}
    return {
        "input_height": str(height),
        "input_width": str(width),
        "dynamic": "true" if dynamic else "false",
        "input_format": "uint8_nhwc" if uint8_input else "float32_nchw",
        "precision": precision,
        "input": f"{INPUT_NAME}: uint8 (N,H,W,3) RGB" if uint8_input else f"{INPUT_NAME}: float32 (N,3,H,W) RGB 0..255",
        "output": f"{OUTPUT_NAME}: float32 (N,1,H,W) metres",
        "mean": json.dumps(list(m.mean)),
        "std": json.dumps(list(m.std)),
        "min_depth": str(m.min_depth),
        "max_depth": str(m.max_depth),
        "factor": str(m.factor),
        "training_data": json.dumps(meta.get("data", [])),
        "git_rev": str(meta.get("git_rev", "unknown")),
        "step": str(meta.get("step", "")),
        "source_checkpoint": checkpoint.name,
        "source_sha256": file_sha256(checkpoint),
        **conf,
    }


def default_checkpoint() -> Path:
    from depth_node.default_model import default_model_path

    return Path(default_model_path())


def export_onnx(model_path: str | None, onnx_path: Path, height: int | None = None, width: int | None = None,
                dynamic: bool = False, precision: str = "fp32", uint8_input: bool = False,
                confidence: bool = True) -> Path:
    """Export a checkpoint (default: the packaged model) to ``onnx_path``, check it, and return the path.

    Without ``height``/``width`` the size is the checkpoint's ``model.input_height/width``. A fixed size keeps every
    shape static inside the graph (what TensorRT builds fastest engines for); ``dynamic`` makes batch, height and width
    free (TensorRT then needs an optimisation profile). The file is written atomically, so a cache never holds half
    a model. ``precision`` fp16 and ``uint8_input``: see the module docstring. With ``confidence`` and a calibration
    beside the checkpoint (``depth-train calibrate-confidence``) the graph has a second output ``confidence``; a
    dynamic export has none (its LR pass size would be fixed at the traced size).
    """
    import onnx

    from .checkpoint import load_model

    checkpoint = Path(model_path) if model_path else default_checkpoint()
    net, cfg, meta = load_model(checkpoint, "cpu")
    height = height or cfg.model.input_height
    width = width or cfg.model.input_width
    if height <= 0 or width <= 0:
        raise ValueError(f"export size must be positive, got {height}x{width}")
    if precision not in PRECISIONS:
        raise ValueError(f"export precision must be one of {', '.join(PRECISIONS)}, got {precision!r} "
                         "(INT8: `depth-train quantize` an fp32 export)")
    calibration = load_calibration(checkpoint) if confidence and not dynamic else None
    head = ConfidenceHead(calibration, cfg.model.factor) if calibration else None
    wrapper = DeployModel(net, cfg.model.mean, cfg.model.std, uint8_input, head).eval()
    if uint8_input:
        example = torch.full((1, height, width, 3), 128, dtype=torch.uint8)
        spatial = {0: "batch", 1: "height", 2: "width"}
    else:
        example = torch.full((1, 3, height, width), 128.0)
        spatial = {0: "batch", 2: "height", 3: "width"}
    axes = {INPUT_NAME: spatial, OUTPUT_NAME: {0: "batch", 2: "height", 3: "width"}}
    outputs = [OUTPUT_NAME, CONFIDENCE_NAME] if head else [OUTPUT_NAME]
    onnx_path = Path(onnx_path)
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = onnx_path.with_name(f".{onnx_path.name}.{os.getpid()}.tmp")
    try:
        with warnings.catch_warnings():
            # The TorchScript exporter is deprecated in favour of torch.export, which needs onnxscript; its graphs
            # (BatchNorm folded into Conv, static shapes) are what TensorRT parses best, so it is used on purpose.
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            with torch.no_grad():
                torch.onnx.export(wrapper, (example,), str(tmp), dynamo=False, opset_version=OPSET,
                                  input_names=[INPUT_NAME], output_names=outputs,
                                  dynamic_axes=axes if dynamic else None, do_constant_folding=True)
        if not dynamic:
            fold_static_shapes(tmp)
        model = onnx.load(str(tmp))
        if precision == "fp16":
            model = to_fp16(model)
        model.doc_string = "depth_node monocular metric depth estimator"
        save_checked(model, tmp, deployment_metadata(cfg, meta, checkpoint, height, width, dynamic, precision,
                                                     uint8_input, calibration))
        tmp.replace(onnx_path)
    finally:
        tmp.unlink(missing_ok=True)
    return onnx_path


def save_checked(model: Any, path: Path, metadata: dict[str, str]) -> None:
    """Set an ONNX model's metadata to ``metadata`` (what runtimes read), check the model fully and write it."""
    import onnx

    del model.metadata_props[:]
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))


def to_fp16(model):
    """The network in fp16 with fp32 inputs/outputs; the input normalisation and the depth head and after stay fp32.

    ONNX Runtime's float16 converter inserts the casts; the head maps logits through sigmoid and exp to metres, where
    fp16's 3 significant digits would show directly in the depth.
    """
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    from .quantize import float_nodes

    converted = OnnxModel(convert_float_to_float16(model, keep_io_types=True,
                                                   node_block_list=float_nodes(model, keep_depthwise=False)))
    converted.topological_sort()  # the converter appends its I/O casts at the end of the node list
    return converted.model


def fold_static_shapes(path: Path) -> None:
    """Fold the traced shape arithmetic (Shape/Gather/Mod for padding and resize sizes) into constants in place.

    With a fixed input size every shape is known, so ONNX Runtime's basic level (constant folding and redundant-node
    removal, standard ONNX ops only) leaves a graph of plain Conv/Clip/Resize/... with static shapes throughout.
    """
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    folded = path.with_name(path.name + ".folded")
    options.optimized_model_filepath = str(folded)
    try:
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        model = onnx.load(str(folded))
    finally:
        folded.unlink(missing_ok=True)
    used = {node.domain for node in model.graph.node}
    kept = [op for op in model.opset_import if op.domain in used]  # ORT lists every domain it knows; drop unused ones
    del model.opset_import[:]
    model.opset_import.extend(kept)
    onnx.save(model, str(path))


def _run(args: argparse.Namespace) -> None:
    path = export_onnx(args.model, Path(args.onnx), args.height, args.width, args.dynamic, args.precision,
                       args.uint8_input, not args.no_confidence)
    meta = onnx_metadata(path)
    size = "dynamic" if args.dynamic else f"{meta['input_height']}x{meta['input_width']}"
    confidence = "with confidence" if "confidence" in meta else (
        "no confidence: " + ("not asked for" if args.no_confidence else "dynamic size" if args.dynamic else
                             "no calibration beside the checkpoint (depth-train calibrate-confidence)"))
    print(f"wrote {path} ({size}, {args.precision}, input {meta['input_format']}, opset {OPSET}, "
          f"depth {meta['min_depth']}..{meta['max_depth']} m, {confidence})")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("export", help="export a checkpoint to ONNX (normalisation inside the graph)")
    p.add_argument("--model", help="checkpoint (.pt); default: the packaged default model")
    p.add_argument("--onnx", required=True, help="output .onnx file")
    p.add_argument("--height", type=int, help="input height (default: the checkpoint's model.input_height)")
    p.add_argument("--width", type=int, help="input width (default: the checkpoint's model.input_width)")
    p.add_argument("--dynamic", action="store_true", help="free batch/height/width instead of a fixed input size")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="fp16: network weights and activations in fp16 (fp32 I/O and depth head), for TensorRT")
    p.add_argument("--uint8-input", action="store_true",
                   help="take uint8 (N,H,W,3) RGB camera bytes; conversion and normalisation run inside the graph")
    p.add_argument("--no-confidence", action="store_true",
                   help="leave out the confidence output even when the checkpoint has a calibration")
    p.set_defaults(func=_run)
