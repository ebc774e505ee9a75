"""ONNX export: the estimator plus its input normalisation as one graph, with everything a runtime needs as metadata.

The graph takes what a camera gives after a layout change, float32 (N,3,H,W) RGB in 0..255, and returns depth in metres
(N,1,H,W), so ONNX Runtime and TensorRT need no Python-side normalisation and no knowledge of the training config.
``--uint8-input`` makes it take the camera's bytes as they are, uint8 (N,H,W,3) RGB, converting inside the graph (a
quarter of the bytes to copy to a GPU). ``--precision fp16`` stores the network in fp16 for TensorRT's strongly typed
fp16 engines, keeping inputs, outputs, the input normalisation and the depth head (logits -> metres) in fp32.
"""

from __future__ import annotations

import argparse
import os
import warnings
from pathlib import Path

import torch

from depth_node.default_model import default_model_path
from depth_node.model_files import onnx_metadata
from depth_node.network.checkpoint import load_network
from depth_node.network.confidence_head import ConfidenceHead, load_calibration
from depth_node.network.deploy_model import CONFIDENCE_NAME, INPUT_NAME, OUTPUT_NAME, DeployModel, deployment_metadata

from .onnx_graph import float_nodes, save_checked

OPSET = 17
PRECISIONS = ("fp32", "fp16")


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

    checkpoint = Path(model_path) if model_path else default_model_path()
    net, model_cfg, meta = load_network(checkpoint, "cpu")
    height = height or model_cfg.input_height
    width = width or model_cfg.input_width
    if height <= 0 or width <= 0:
        raise ValueError(f"export size must be positive, got {height}x{width}")
    if precision not in PRECISIONS:
        raise ValueError(f"export precision must be one of {', '.join(PRECISIONS)}, got {precision!r} "
                         "(INT8: `depth-train quantize` an fp32 export)")
    calibration = load_calibration(checkpoint) if confidence and not dynamic else None
    head = ConfidenceHead(calibration, model_cfg.factor) if calibration else None
    wrapper = DeployModel(net, model_cfg.mean, model_cfg.std, uint8_input, head).eval()
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
        save_checked(model, tmp, deployment_metadata(model_cfg, meta, checkpoint, height, width, dynamic, precision,
                                                     uint8_input, calibration))
        tmp.replace(onnx_path)
    finally:
        tmp.unlink(missing_ok=True)
    return onnx_path


def to_fp16(model):
    """The network in fp16 with fp32 inputs/outputs; the input normalisation and the depth head and after stay fp32.

    ONNX Runtime's float16 converter inserts the casts; the head maps logits through sigmoid and exp to metres, where
    fp16's 3 significant digits would show directly in the depth.
    """
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

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
