"""The estimator's configuration: what a runtime needs to rebuild and feed the network from a checkpoint."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ModelConfig:
    """What a runtime needs to rebuild and feed the estimator (the ``model`` section of a training config)."""

    min_depth: float = 0.1  # metres; the output is squashed into [min_depth, max_depth]
    max_depth: float = 10.0
    pretrained: bool = True  # start from the prior (fastdepth) or ImageNet weights (efficientnet_lite0)
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)  # FastDepth's RGB / 255 input (efficientnet_lite0: 0.5, 0.5)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    decoder_channels: tuple[int, int, int, int, int] = (96, 64, 40, 24, 16)  # strides 32, 16, 8, 4, 2
    input_height: int = 480  # the HR image size the model is deployed at (export default)
    input_width: int = 640
    factor: float = 4.0  # HR/LR resolution ratio it was trained for (recorded for deployment)
    arch: str = "fastdepth"  # fastdepth | efficientnet_lite0 (network/factory.py); chosen on validation (method.md)
    prior: str = "../shared/weights/fastdepth/fast_depth_224.tflite"  # fastdepth: the .tflite training starts from


def model_config_from_saved(saved: dict[str, Any]) -> ModelConfig:
    """The ``model`` section as a checkpoint stores it (tuples as lists) -> ModelConfig; unknown keys are refused
    (a checkpoint from a newer version must not load into a network it was not trained as)."""
    known = {f.name: f.default for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(saved) - set(known))
    if unknown:
        raise ValueError(f"unknown model option(s) {unknown} in the checkpoint; known: {sorted(known)}")
    return ModelConfig(**{k: tuple(v) if isinstance(known[k], tuple) else type(known[k])(v) for k, v in saved.items()})
