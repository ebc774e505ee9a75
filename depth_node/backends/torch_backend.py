"""PyTorch backend: runs a training checkpoint directly (eager mode, CUDA when available), for development and as
the reference the exported backends are compared with."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from depth_node.network.checkpoint import load_network
from depth_node.network.confidence_head import ConfidenceHead, load_calibration
from depth_node.network.deploy_model import DeployModel, deployment_metadata


class TorchBackend:
    name = "torch"
    input_size = None  # any size; the estimator uses the checkpoint's configured size unless told otherwise

    def __init__(self, checkpoint: str | Path, device: str | None = None, precision: str = "fp32") -> None:
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if precision not in ("fp32", "fp16"):
            raise ValueError(f"torch backend precision must be fp32 or fp16, got {precision!r}")
        if precision == "fp16" and not self.device.startswith("cuda"):
            raise ValueError("torch fp16 (autocast) is for CUDA devices; the CPU runs fp32")
        self.providers = [self.device]
        # fp16: CUDA autocast (convolutions in fp16; sigmoid/exp of the head in fp32). fp32: no TF32 matmuls.
        self.precision = "fp16 (autocast)" if precision == "fp16" else "fp32"
        if self.device.startswith("cuda"):
            torch.backends.cudnn.allow_tf32 = False
        net, model_cfg, meta = load_network(checkpoint, self.device)
        calibration = load_calibration(Path(checkpoint))
        self.has_confidence = calibration is not None
        head = ConfidenceHead(calibration, model_cfg.factor) if calibration else None
        self.model = DeployModel(net, model_cfg.mean, model_cfg.std, confidence=head).to(self.device).eval()
        self.metadata = deployment_metadata(model_cfg, meta, Path(checkpoint), model_cfg.input_height,
                                            model_cfg.input_width, dynamic=True, calibration=calibration)

    def _forward(self, batch: np.ndarray, confidence: bool) -> list[np.ndarray]:
        device_type = self.device.split(":")[0]
        self.model.with_confidence = confidence
        with torch.inference_mode(), torch.autocast(device_type, torch.float16, enabled=self.precision != "fp32"):
            out = self.model(torch.from_numpy(batch).to(self.device))
        return [t[0, 0].float().cpu().numpy() for t in (out if confidence else (out,))]

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self._forward(batch, False)[0]

    def run_confidence(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        depth, confidence = self._forward(batch, True)
        return depth, confidence
