"""Which network a model config asks for (``model.arch``): the one place that maps the name to the class, so the
PyTorch backend, export, evaluation and training all build the same network from a checkpoint's config."""

from __future__ import annotations

from torch import nn

from .depth_estimator import DepthEstimator
from .fastdepth import FastDepth
from .model_config import ModelConfig

ARCHS: dict[str, type[nn.Module]] = {"efficientnet_lite0": DepthEstimator, "fastdepth": FastDepth}


def make_network(model_cfg: ModelConfig) -> nn.Module:
    """The untrained network of ``model_cfg.arch`` (EfficientNet-Lite0 loads its ImageNet encoder under
    ``pretrained``; FastDepth's prior is a training matter, loaded by ``depth_node_training``)."""
    try:
        network = ARCHS[model_cfg.arch]
    except KeyError:
        raise ValueError(f"model.arch={model_cfg.arch!r}: unknown network; known: {', '.join(ARCHS)}") from None
    return network(model_cfg)
