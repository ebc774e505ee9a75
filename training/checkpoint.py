"""Checkpoints: ``{model, optimizer, teacher, config, step, meta}``; loading fails loudly on mismatched keys."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import torch

from .config import Config, config_from_dict, config_to_dict
from .networks import DepthEstimator


def git_revision() -> str:
    """Short git revision of the code that trained/exported a model ("unknown" outside a checkout)."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def save_checkpoint(path: Path, model: torch.nn.Module, cfg: Config, step: int, meta: dict[str, Any],
                    optimizer: torch.optim.Optimizer | None = None, teacher: torch.nn.Module | None = None,
                    half: bool = False) -> Path:
    """Write atomically (tmp + rename) so an interrupted save never corrupts the last good checkpoint."""
    state = model.state_dict()
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    payload = {"model": state, "config": config_to_dict(cfg), "step": step, "meta": {**meta, "step": step}}
    if optimizer is not None:
        payload["optimizer"] = optimizer.state_dict()
    if teacher is not None:
        payload["teacher"] = teacher.state_dict()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or "model" not in payload or "config" not in payload:
        raise ValueError(f"{path} is not a depth_node checkpoint (needs 'model' and 'config')")
    return payload


def load_model(path: str | Path, device: str = "cpu") -> tuple[DepthEstimator, Config, dict[str, Any]]:
    """The estimator in eval mode (fp32, also from an fp16 file), its config and its metadata."""
    payload = read_checkpoint(path)
    cfg = config_from_dict(payload["config"])
    model = DepthEstimator(_without_pretrained(cfg).model)
    state = {k: v.float() if v.is_floating_point() else v for k, v in payload["model"].items()}
    model.load_state_dict(state, strict=True)
    return model.to(device).eval(), cfg, dict(payload.get("meta", {}))


def _without_pretrained(cfg: Config) -> Config:
    """The weights come from the checkpoint: skip loading ImageNet ones (and needing their package) first."""
    import dataclasses

    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, pretrained=False))
