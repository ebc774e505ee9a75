"""The node's ROS parameters, declared in one place: names, defaults, descriptions, ranges and run-time behaviour.

``NodeParams`` is the single source of truth: ``config/estimator.yaml`` holds exactly its defaults (a test proves it),
the node declares every field with a ``ParameterDescriptor`` built from the field's metadata, and a run-time change is
validated here before the node applies it. Each field says what a change at run time does:

* ``read_only``: fixed after start (QoS, transport, topics); rclpy refuses a change with its own reason;
* ``reload``: the estimator is rebuilt with the new value (model, backend, input size) and the change is refused with
  the loader's error when that fails;
* otherwise the value applies from the next frame on.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

BACKENDS = ("auto", "tensorrt", "onnxruntime", "torch")
TRANSPORTS = ("raw", "compressed")
DEPTH_ENCODINGS = ("32FC1", "16UC1")
RELIABILITIES = ("best_effort", "reliable")
INPUT_RELIABILITIES = ("auto", *RELIABILITIES)
NETWORK_STRIDE = 32  # depth_node.network.depth_estimator.STRIDE (not imported: that module needs torch)
MAX_INPUT_SIZE = 4096  # a 4K frame's width: a larger input only upsamples the image, at many times the memory and time


def _param(default: Any, description: str, *, name: str | None = None, choices: tuple[str, ...] = (),
           lo: float | None = None, hi: float | None = None, least: int | None = None, read_only: bool = False,
           reload: bool = False) -> Any:
    """A field with its ROS metadata; ``least``: the smallest value other than 0 (which keeps its own meaning)."""
    meta = {"description": description, "name": name, "choices": choices, "lo": lo, "hi": hi, "least": least,
            "read_only": read_only, "reload": reload}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class NodeParams:
    """Values of every parameter of the estimator node (defaults = config/estimator.yaml)."""

    model: str = _param("", "ONNX model, TensorRT engine or PyTorch checkpoint; empty: the package's default model",
                        reload=True)
    backend: str = _param("auto", "inference backend; auto picks TensorRT, then ONNX Runtime, then PyTorch",
                          choices=BACKENDS, reload=True)
    engine_cache_dir: str = _param("", "where built TensorRT engines are cached; empty: the backend's default",
                                   reload=True)
    input_width: int = _param(0, f"network input width in pixels, {NETWORK_STRIDE}..{MAX_INPUT_SIZE}; 0: the model's "
                              "own width", lo=0, hi=MAX_INPUT_SIZE, least=NETWORK_STRIDE, reload=True)
    input_height: int = _param(0, f"network input height in pixels, {NETWORK_STRIDE}..{MAX_INPUT_SIZE}; 0: the "
                               "model's own height", lo=0, hi=MAX_INPUT_SIZE, least=NETWORK_STRIDE, reload=True)
    min_depth: float = _param(0.0, "nearest valid depth in metres, nearer is published invalid; 0: the model's minimum",
                              lo=0.0, hi=1000.0)
    max_depth: float = _param(0.0, "farthest valid depth in metres, farther is published invalid; 0: the model's "
                              "maximum", lo=0.0, hi=1000.0)
    min_confidence: float = _param(0.0, "depth whose confidence (the model's P(relative error < its threshold)) is "
                                   "below this is published invalid and gets no point; 0: off (needs a model with "
                                   "a confidence output)", lo=0.0, hi=1.0)
    confidence_use_lr_depth: bool = _param(False, "sharpen the confidence with a live LR depth on topic lr_depth "
                                           "(needs a model calibrated with that stage; frames without an LR depth "
                                           "keep the image-only confidence, counted)",
                                           name="confidence.use_lr_depth", read_only=True)
    image_transport: str = _param("raw", "subscribe to image_raw (raw) or image_raw/compressed (compressed)",
                                  choices=TRANSPORTS, read_only=True)
    output_encoding: str = _param("32FC1", "depth/image encoding: 32FC1 metres (NaN invalid) or 16UC1 millimetres "
                                  "(0 invalid), REP 118", choices=DEPTH_ENCODINGS)
    publish_points: bool = _param(True, "publish depth/points (only computed while someone subscribes)")
    points_color: bool = _param(True, "xyzrgb cloud with the image colours; false: xyz only")
    points_decimation: int = _param(2, "keep every n-th row and column in the organized cloud", lo=1, hi=16)
    camera_info_tolerance_ms: float = _param(1.0, "largest stamp difference at which a camera_info matches an image",
                                             lo=0.0, hi=1000.0)
    camera_info_wait: float = _param(1.0, "seconds a frame waits for its camera_info when no earlier one can stand in "
                                     "(cut short when a newer frame arrives)", lo=0.0, hi=10.0)
    queue_size: int = _param(1, "frames waiting for inference; 1 = always the newest, older ones are dropped", lo=1,
                             hi=30)
    diagnostics_period: float = _param(1.0, "seconds between statistics on /diagnostics", lo=0.1, hi=3600.0,
                                       read_only=True)
    qos_input_reliability: str = _param("auto", "input subscriptions' reliability; auto: reliable when every "
                                        "publisher of the topic offers reliable, else best_effort (re-checked as "
                                        "publishers come and go)", name="qos.input_reliability",
                                        choices=INPUT_RELIABILITIES, read_only=True)
    qos_input_depth: int = _param(5, "input subscriptions' keep-last depth", name="qos.input_depth", lo=1, hi=1000,
                                  read_only=True)
    qos_output_reliability: str = _param("reliable", "publishers' reliability (reliable also serves best-effort "
                                         "subscribers)", name="qos.output_reliability", choices=RELIABILITIES,
                                         read_only=True)
    qos_output_depth: int = _param(10, "publishers' keep-last depth (ROS's default 10: a reliable reader whose "
                                   "fragments are being repaired still gets its frame)", name="qos.output_depth", lo=1,
                                   hi=1000, read_only=True)
    scale_align_enabled: bool = _param(False, "align the predicted depth's scale to a live LR depth on topic lr_depth",
                                       name="scale_align.enabled", read_only=True)
    scale_align_shift: bool = _param(False, "also fit a shift (depth = scale * prediction + shift)",
                                     name="scale_align.shift")
    scale_align_smoothing: float = _param(0.9, "weight of the previous scale in the running estimate (0: none)",
                                          name="scale_align.smoothing", lo=0.0, hi=0.999)
    lr_depth_tolerance_ms: float = _param(50.0, "largest stamp difference between an image and its LR depth",
                                          name="lr_depth.tolerance_ms", lo=0.0, hi=10000.0)
    lr_depth_wait: float = _param(0.1, "seconds a frame waits for its LR depth to arrive while the sensor is "
                                  "publishing (its driver may deliver it after the image)", name="lr_depth.wait",
                                  lo=0.0, hi=10.0)
    lr_depth_min_depth: float = _param(0.05, "LR readings nearer than this (metres) are invalid",
                                       name="lr_depth.min_depth", lo=0.0, hi=1000.0)
    lr_depth_max_depth: float = _param(20.0, "LR readings farther than this (metres) are invalid",
                                       name="lr_depth.max_depth", lo=0.0, hi=1000.0)
    scale_align_max_step: float = _param(0.05, "largest change of the scale per frame (fraction; the shift: metres)",
                                         name="scale_align.max_step", lo=0.0, hi=10.0)


FIELDS = {f.metadata["name"] or f.name: f for f in dataclasses.fields(NodeParams)}
"""ROS parameter name -> dataclass field."""


def reload_names() -> set[str]:
    """Parameters whose change rebuilds the estimator."""
    return {name for name, f in FIELDS.items() if f.metadata["reload"]}


def check_value(name: str, value: Any) -> str | None:
    """Why ``value`` is not acceptable for parameter ``name`` (None when it is): choices and ranges."""
    f = FIELDS.get(name)
    if f is None:
        return f"unknown parameter {name!r}"
    meta = f.metadata
    if meta["choices"] and value not in meta["choices"]:
        return f"{name} must be one of {', '.join(meta['choices'])}, got {value!r}"
    if meta["lo"] is not None and not meta["lo"] <= value <= meta["hi"]:
        return f"{name} must be in [{meta['lo']}, {meta['hi']}], got {value!r}"
    if meta["least"] and value and value < meta["least"]:
        return (f"{name} {value} is below {meta['least']}, the network's stride (it pads a smaller input up to that: "
                f"nothing is saved, the depth is only coarser); use {meta['least']}..{meta['hi']} or 0 for the model's "
                "own")
    return None


def params_from_values(values: dict[str, Any]) -> NodeParams:
    """NodeParams from ROS names -> values (missing names keep their defaults); ValueError on a bad value."""
    kwargs = {}
    for name, value in values.items():
        problem = check_value(name, value)
        if problem:
            raise ValueError(problem)
        kwargs[FIELDS[name].name] = value
    params = dataclasses.replace(NodeParams(), **kwargs)
    if params.max_depth and params.min_depth >= params.max_depth:
        raise ValueError(f"min_depth ({params.min_depth}) must be below max_depth ({params.max_depth})")
    if params.lr_depth_min_depth >= params.lr_depth_max_depth:
        raise ValueError(f"lr_depth.min_depth ({params.lr_depth_min_depth}) must be below "
                         f"lr_depth.max_depth ({params.lr_depth_max_depth})")
    return params


def input_size(params: NodeParams, model_size: tuple[int, int] | None) -> tuple[int, int] | None:
    """(height, width) to run the model at: each 0 is the model's own value, so either can be set alone."""
    if not params.input_height and not params.input_width:
        return None
    if model_size is None and not (params.input_height and params.input_width):
        set_one = "input_height" if params.input_height else "input_width"
        raise ValueError(f"{set_one} is set alone but the model records no input size: set both")
    own_h, own_w = model_size or (0, 0)
    return params.input_height or own_h, params.input_width or own_w


def depth_range_problem(params: NodeParams, model_min: float, model_max: float) -> str | None:
    """Why min_depth/max_depth cannot be used with a model predicting model_min..model_max metres (None: they can)."""
    for name, value in (("min_depth", params.min_depth), ("max_depth", params.max_depth)):
        if value and not model_min <= value <= model_max:
            return (f"{name} {value} m is outside the model's range {model_min}..{model_max} m (every output would be "
                    f"invalid or clipped); use a value in that range or 0 for the model's own")
    lo, hi = params.min_depth or model_min, params.max_depth or model_max
    if lo >= hi:
        return f"min_depth {lo} m must be below max_depth {hi} m (0 stands for the model's {model_min}..{model_max} m)"
    return None


def confidence_problem(params: NodeParams, has_confidence: bool, has_lr_stage: bool = False) -> str | None:
    """Why min_confidence or confidence.use_lr_depth cannot be used with this model (None: they can)."""
    if params.min_confidence and not has_confidence:
        return (f"min_confidence {params.min_confidence} needs a model with a confidence output, and this one has "
                "none: calibrate and re-export it (depth-train calibrate-confidence, depth-train export) or set 0")
    if params.confidence_use_lr_depth and not has_lr_stage:
        return ("confidence.use_lr_depth needs a model whose confidence calibration has a live LR depth stage, and "
                "this one has none: calibrate it against HR ground truth (depth-train calibrate-confidence) and "
                "re-export it, or set false")
    return None


def with_changes(current: NodeParams, changes: dict[str, Any]) -> NodeParams:
    """``current`` with some parameters changed; ValueError naming the problem when the result is invalid."""
    values = {name: getattr(current, f.name) for name, f in FIELDS.items()}
    values.update(changes)
    return params_from_values(values)


def to_values(params: NodeParams) -> dict[str, Any]:
    """ROS name -> value, e.g. for logging once at start or for parameter overrides."""
    return {name: getattr(params, f.name) for name, f in FIELDS.items()}


def declare(node: Any) -> NodeParams:
    """Declare every parameter on an rclpy node and return their values (overrides from YAML / command line applied).

    ValueError names the first bad configured value so that the node refuses to start with a clear message.
    """
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

    for name, f in FIELDS.items():
        meta = f.metadata
        desc = ParameterDescriptor(name=name, description=meta["description"], read_only=meta["read_only"])
        if meta["choices"]:
            desc.additional_constraints = "one of: " + ", ".join(meta["choices"])
        if meta["least"]:
            desc.additional_constraints = f"0 or {meta['least']}..{int(meta['hi'])}"
        if meta["lo"] is not None and isinstance(f.default, int) and not isinstance(f.default, bool):
            desc.integer_range = [IntegerRange(from_value=int(meta["lo"]), to_value=int(meta["hi"]), step=1)]
        elif meta["lo"] is not None:
            desc.floating_point_range = [FloatingPointRange(from_value=float(meta["lo"]), to_value=float(meta["hi"]))]
        node.declare_parameter(name, f.default, desc)
    return params_from_values({name: node.get_parameter(name).value for name in FIELDS})
