"""Reading a checkpoint into the estimator, as every runtime path does (the PyTorch backend, export, evaluation).

A checkpoint is ``{model, config, step, meta, ...}`` (written by ``depth_node_training.learning.checkpoint``); only
the ``model`` weights and the ``model`` section of the config are needed to run it. Loading fails loudly on
mismatched keys.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from .depth_estimator import DepthEstimator
from .factory import make_network
from .model_config import ModelConfig, model_config_from_saved


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or "model" not in payload or "config" not in payload:
        raise ValueError(f"{path} is not a depth_node checkpoint (needs 'model' and 'config')")
    return payload


def float_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict in fp32 (checkpoints may store fp16 weights); integer buffers as they are."""
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def build_network(model_cfg: ModelConfig, state: dict[str, torch.Tensor], device: str = "cpu") -> DepthEstimator:
    """The estimator with ``state`` loaded strictly, in eval mode and fp32 (also from an fp16 file).

    ImageNet weights are not loaded first: the checkpoint holds every weight (and their package need not exist).
    """
    model = make_network(dataclasses.replace(model_cfg, pretrained=False))
    model.load_state_dict(float_state(state), strict=True)
    return model.to(device).eval()


def load_network(path: str | Path, device: str = "cpu") -> tuple[DepthEstimator, ModelConfig, dict[str, Any]]:
    """The estimator of a checkpoint in eval mode, its model config and its metadata."""
    payload = read_checkpoint(path)
    model_cfg = model_config_from_saved(payload["config"].get("model") or {})
    return build_network(model_cfg, payload["model"], device), model_cfg, dict(payload.get("meta", {}))
