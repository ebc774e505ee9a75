"""The estimator as it is deployed: 0..255 RGB in, metres out (and the confidence map), plus the metadata every
backend reports. ``depth-train export`` traces this module to ONNX; the PyTorch backend runs it directly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from depth_node.model_files import file_sha256

from .confidence_head import Calibration, ConfidenceHead
from .depth_estimator import DepthEstimator
from .model_config import ModelConfig

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


def deployment_metadata(m: ModelConfig, meta: dict[str, Any], checkpoint: Path, height: int, width: int,
                        dynamic: bool, precision: str = "fp32", uint8_input: bool = False,
                        calibration: Calibration | None = None) -> dict[str, str]:
    """The string key/values stored in the ONNX file (and reported by every backend as ``Estimator.metadata``)."""
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
