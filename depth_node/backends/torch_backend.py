"""PyTorch backend: runs a training checkpoint directly (eager mode, CUDA when available), for development and as
the reference the exported backends are compared with."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from depth_node_training.checkpoint import load_model
from depth_node_training.export import DeployModel, deployment_metadata


class TorchBackend:
    name = "torch"
    input_size = None  # any size; the estimator uses the checkpoint's configured size unless told otherwise

    def __init__(self, checkpoint: str | Path, device: str | None = None) -> None:
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        net, cfg, meta = load_model(checkpoint, self.device)
        self.model = DeployModel(net, cfg.model.mean, cfg.model.std).to(self.device).eval()
        self.metadata = deployment_metadata(cfg, meta, Path(checkpoint), cfg.model.input_height,
                                            cfg.model.input_width, dynamic=True)

    def run(self, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            depth = self.model(torch.from_numpy(batch).to(self.device))
        return depth[0, 0].float().cpu().numpy()
