"""FastDepth's weights read out of its int8 TFLite file, as float tensors for ``depth_node.network.fastdepth``.

The file (``fast_depth_224.tflite``, see its README) stores each convolution with BatchNorm folded in: int8 weights
with one scale per output channel and an int32 bias whose scale is input scale x weight scale; a stored value q means
``scale * (q - zero_point)``. Weights are in TFLite's layouts (CONV_2D [out, kh, kw, in], DEPTHWISE_CONV_2D
[1, kh, kw, channels]); PyTorch wants [out, in / groups, kh, kw].

The graph runs its convolutions in the order the float module defines its ``Conv2d`` layers, so the i-th convolution
op fills the i-th layer; shapes, strides, the explicit zero padding in front and the fused activations are compared
with the module first, so a different graph is refused in one line instead of loaded wrong. The flatbuffer schema
comes from the PyPI package ``tflite`` (TFLite's schema compiled for the ``flatbuffers`` runtime).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from depth_node.network.fastdepth import FastDepth
from depth_node.network.model_config import ModelConfig

# What each module path's convolutions are followed by (the head's ReLU is inside its clamp to [min, max] > 0).
ACTIVATIONS = {"encoder": "relu6", "decoder": "relu", "head": "relu"}
INPUT_SCALE = 1.0 / 255.0  # the uint8 input means RGB / 255, what FastDepth was trained on


@dataclass(frozen=True)
class FloatConv:
    """One convolution op of the file, dequantised, in PyTorch's layout."""

    name: str  # of its weight tensor, for messages
    weight: np.ndarray
    bias: np.ndarray
    depthwise: bool
    stride: int
    padding: int  # zero padding on each side (an explicit PAD op in front, or SAME at stride 1)
    activation: str


class PriorError(ValueError):
    """A file that is not FastDepth's TFLite model, in one line naming the file and the cause."""


def _error(path: Path, cause: str) -> PriorError:
    return PriorError(f"FastDepth prior {path}: {cause}")


def _schema():
    try:
        import tflite
    except ImportError as error:
        raise ImportError("reading the FastDepth prior needs `pip install tflite` (the TFLite flatbuffer schema)") \
            from error
    return tflite


def read_convs(path: str | Path) -> list[FloatConv]:
    """Every convolution of a TFLite file in graph order, dequantised; ValueError naming the file otherwise."""
    tflite = _schema()
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:  # not shipped with the package: say where it comes from and the way around it
        raise _error(path, f"{error.strerror or error}; the default network starts from FastDepth's published "
                           "fast_depth_224.tflite (docs/method.md, \"A depth prior\"): set model.prior=PATH, or train "
                           "model.arch=efficientnet_lite0 from ImageNet") from None
    if len(data) < 8 or not tflite.Model.ModelBufferHasIdentifier(data, 0):
        raise _error(path, "not a TFLite file (no TFL3 flatbuffer identifier)")
    try:
        return _convs(tflite, tflite.Model.GetRootAs(data, 0), path)
    except PriorError:
        raise
    except (struct.error, TypeError, IndexError, ValueError, AttributeError) as error:
        # what flatbuffers and numpy raise on offsets past the data, and absent tables (None) where one must be
        raise _error(path, f"damaged TFLite flatbuffer ({error})") from None


def _convs(tflite, model, path: Path) -> list[FloatConv]:
    if model.SubgraphsLength() != 1:
        raise _error(path, f"unexpected graph: {model.SubgraphsLength()} subgraphs, FastDepth has 1")
    graph = model.Subgraphs(0)
    _check_input(tflite, graph, path)
    ops, producer = [], {}
    for k in range(graph.OperatorsLength()):
        op = graph.Operators(k)
        code = model.OperatorCodes(op.OpcodeIndex())
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())  # small codes live in the deprecated field
        ops.append((builtin, op))
        producer.update((int(t), (builtin, op)) for t in op.OutputsAsNumpy())
    kinds = {tflite.BuiltinOperator.CONV_2D: tflite.Conv2DOptions, tflite.BuiltinOperator.DEPTHWISE_CONV_2D:
             tflite.DepthwiseConv2DOptions}
    activations = {tflite.ActivationFunctionType.NONE: "none", tflite.ActivationFunctionType.RELU: "relu",
                   tflite.ActivationFunctionType.RELU6: "relu6"}
    convs = []
    for builtin, op in ops:
        if builtin not in kinds:
            continue
        inputs = [int(t) for t in op.InputsAsNumpy()]
        weight_tensor = graph.Tensors(inputs[1])
        name = weight_tensor.Name().decode(errors="replace")
        if len(inputs) != 3 or inputs[2] < 0:
            raise _error(path, f"unexpected graph: convolution {name} has no bias")
        table = op.BuiltinOptions()
        options = kinds[builtin]()
        options.Init(table.Bytes, table.Pos)
        depthwise = builtin == tflite.BuiltinOperator.DEPTHWISE_CONV_2D
        if (options.StrideH() != options.StrideW() or options.DilationHFactor() != 1 or options.DilationWFactor() != 1
                or (depthwise and options.DepthMultiplier() != 1)):
            raise _error(path, f"unexpected graph: convolution {name} has unequal strides, dilation or a depth "
                               "multiplier")
        weight = _dequantised(tflite, model, weight_tensor, path)
        weight = weight.transpose(3, 0, 1, 2) if depthwise else weight.transpose(0, 3, 1, 2)
        padding = _padding(tflite, model, graph, producer.get(inputs[0]), options, weight.shape[-1], name, path)
        activation = activations.get(options.FusedActivationFunction(), f"#{options.FusedActivationFunction()}")
        convs.append(FloatConv(name, np.ascontiguousarray(weight),
                               _dequantised(tflite, model, graph.Tensors(inputs[2]), path), depthwise,
                               options.StrideH(), padding, activation))
    return convs


def _check_input(tflite, graph, path: Path) -> None:
    """The graph's input must be RGB / 255 as uint8 (scale 1/255, zero point 0), as FastDepth takes it."""
    if graph.InputsLength() != 1:
        raise _error(path, f"unexpected graph: {graph.InputsLength()} inputs, FastDepth has 1")
    tensor = graph.Tensors(int(graph.Inputs(0)))
    quant = tensor.Quantization()
    if (tensor.Type() != tflite.TensorType.UINT8 or quant is None or quant.ScaleLength() != 1
            or quant.ZeroPointLength() != 1 or not np.isclose(quant.Scale(0), INPUT_SCALE) or quant.ZeroPoint(0)):
        raise _error(path, "unexpected input: FastDepth's file takes uint8 RGB meaning RGB / 255")


def _padding(tflite, model, graph, source, options, kernel: int, name: str, path: Path) -> int:
    """Zero padding per side in front of a convolution: an explicit PAD op (symmetric in H and W) or SAME."""
    if options.Padding() == tflite.Padding.SAME:
        if options.StrideH() != 1 and kernel > 1:  # TensorFlow pads SAME at stride 2 asymmetrically
            raise _error(path, f"unexpected graph: convolution {name} pads SAME at stride {options.StrideH()}")
        return kernel // 2
    if source is None or source[0] != tflite.BuiltinOperator.PAD:
        return 0
    pads = _constant(model, graph.Tensors(int(source[1].Inputs(1))), np.int32, path).reshape(-1, 2)
    if pads.shape != (4, 2) or pads[[0, 3]].any() or len(set(pads[1:3].ravel().tolist())) != 1:
        raise _error(path, f"unexpected graph: the padding in front of {name} is {pads.tolist()}, not symmetric")
    return int(pads[1, 0])


def _constant(model, tensor, dtype: type, path: Path) -> np.ndarray:
    """A constant tensor's stored values (little-endian in the flatbuffer)."""
    buffer = model.Buffers(tensor.Buffer())
    shape = [int(s) for s in tensor.ShapeAsNumpy()] if tensor.ShapeLength() else []
    raw = buffer.DataAsNumpy() if buffer.DataLength() else None
    name = tensor.Name().decode(errors="replace")
    want = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if raw is None or raw.size != want:
        held = 0 if raw is None else raw.size
        raise _error(path, f"tensor {name} holds {held} bytes, its shape {shape} needs {want}")
    return np.frombuffer(raw.tobytes(), dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape)


def _dequantised(tflite, model, tensor, path: Path) -> np.ndarray:
    """An int8 weight or int32 bias tensor as float32: scale * (q - zero point), per channel where it has scales."""
    types = {tflite.TensorType.INT8: np.int8, tflite.TensorType.INT32: np.int32}
    name = tensor.Name().decode(errors="replace")
    if tensor.Type() not in types:
        raise _error(path, f"tensor {name} is of TFLite type {tensor.Type()}, not int8 weights or int32 biases")
    values = _constant(model, tensor, types[tensor.Type()], path).astype(np.float64)
    quant = tensor.Quantization()
    if quant is None or quant.ScaleLength() == 0:
        raise _error(path, f"tensor {name} has no quantisation scales")
    scale, zero = quant.ScaleAsNumpy().astype(np.float64), quant.ZeroPointAsNumpy()
    zero = np.zeros_like(scale) if isinstance(zero, int) else zero.astype(np.float64)
    axis = quant.QuantizedDimension() if scale.size > 1 else 0
    if scale.size not in (1, values.shape[axis]) or zero.size not in (1, scale.size):
        raise _error(path, f"tensor {name} has {scale.size} scales for shape {list(values.shape)}")
    broadcast = [1] * values.ndim
    broadcast[axis] = -1
    real = (values - zero.reshape(broadcast)) * scale.reshape(broadcast)
    if not np.isfinite(real).all() or np.abs(real).max(initial=0.0) > np.finfo(np.float32).max:
        raise _error(path, f"tensor {name} has non-finite values (damaged scales)")
    return real.astype(np.float32)


def fastdepth_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The file's convolutions as a ``FastDepth`` state dict; ValueError naming the file if its graph is another."""
    path = Path(path)
    convs = read_convs(path)
    layers = [(n, m) for n, m in FastDepth(ModelConfig(arch="fastdepth", pretrained=False)).named_modules()
              if isinstance(m, nn.Conv2d)]
    if len(convs) != len(layers):
        raise _error(path, f"unexpected graph: {len(convs)} convolutions, FastDepth has {len(layers)}")
    state = {}
    for conv, (name, layer) in zip(convs, layers):
        want = (tuple(layer.weight.shape), layer.groups > 1, layer.stride[0], layer.padding[0],
                ACTIVATIONS[name.split(".")[0]])
        got = (conv.weight.shape, conv.depthwise, conv.stride, conv.padding, conv.activation)
        if got != want:
            described = "weight {}, depthwise {}, stride {}, padding {}, {}"
            raise _error(path, f"unexpected graph: convolution {conv.name} has {described.format(*got)}; FastDepth's "
                               f"{name} needs {described.format(*want)}")
        state[f"{name}.weight"] = torch.from_numpy(conv.weight.copy())
        state[f"{name}.bias"] = torch.from_numpy(conv.bias.copy())
    return state


def load_fastdepth_prior(model: nn.Module, model_cfg: ModelConfig) -> None:
    """Start a ``model.arch=fastdepth`` network from the weights in ``model.prior`` (with ``model.pretrained``)."""
    if not model_cfg.prior:
        raise ValueError("model.prior is empty: model.arch=fastdepth with model.pretrained=true starts from "
                         "FastDepth's TFLite weights; set model.prior=PATH/fast_depth_224.tflite "
                         "(or model.pretrained=false for random weights)")
    if tuple(model_cfg.mean) != (0.0, 0.0, 0.0) or tuple(model_cfg.std) != (1.0, 1.0, 1.0):
        raise ValueError(f"model.mean={list(model_cfg.mean)}, model.std={list(model_cfg.std)}: the FastDepth prior "
                         "takes RGB / 255, so set model.mean=[0,0,0] and model.std=[1,1,1]")
    model.load_state_dict(fastdepth_state_dict(model_cfg.prior))
