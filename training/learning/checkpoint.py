"""Checkpoints: ``{model, optimizer, teacher, config, step, meta, resume}``; loading fails loudly on mismatched keys.

``model`` is the estimator to deploy (the EMA weights when ``train.ema_decay`` > 0); ``resume`` holds the rest of the
training state (raw weights under EMA, GradScaler, RNG states, data position) so ``fit(resume=True)`` continues the
very run it left.
"""

from __future__ import annotations

import random
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import torch

from depth_node.network.checkpoint import build_network, read_checkpoint
from depth_node.network.depth_estimator import DepthEstimator

from ..config import Config, config_from_dict, config_to_dict, without_retired


def git_revision() -> str:
    """Short git revision of the code that trained/exported a model ("unknown" outside a checkout)."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def git_dirty() -> bool | None:
    """Whether tracked files differ from that revision (None outside a checkout): a dirty run's code is not the
    revision it records."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True,
                             timeout=5, cwd=Path(__file__).parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(out.stdout.strip()) if out.returncode == 0 else None


def rng_states() -> dict[str, Any]:
    """torch (CPU and CUDA), numpy and python global generator states, in types ``weights_only`` loading accepts."""
    kind, key, pos, has_gauss, gauss = np.random.get_state()
    states = {"torch": torch.get_rng_state(), "numpy": [kind, key.tolist(), pos, has_gauss, gauss],
              "python": random.getstate()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    kind, key, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, np.array(key, dtype=np.uint32), pos, has_gauss, gauss))
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


# Options that change neither the model nor the numbers it is trained on: a resumed run may change them freely.
RESULT_NEUTRAL = {"train.log_every", "train.checkpoint_every", "train.num_workers", "train.tensorboard",
                  "train.device", "data.cache_frames"}


# Options of the distillation term: they change nothing in a run whose ``loss.w_affinity`` is 0.
DISTILLATION = {"loss.teacher", "loss.teacher_weights", "loss.teacher_steps", "loss.affinity_grid",
                "loss.affinity_warmup", "loss.affinity_share", "loss.teacher_view", "loss.distill",
                "loss.affinity_form", "train.teacher_grad_clip"}
# Options of the consistency term: they change nothing in a run whose ``loss.w_cons`` is 0.
CONSISTENCY = {"loss.cons_grad", "loss.cons_penalty"}
# Options of the motion term: they change nothing in a run whose ``loss.w_motion`` is 0.
MOTION = {"loss.motion_offsets", "loss.motion_min_baseline", "loss.motion_smoothness", "data.color_focal"}
# Options of the planarity term: they change nothing in a run whose ``loss.w_planar`` is 0.
PLANARITY = {"loss.planar_tolerance"}


def config_changes(saved: dict[str, dict[str, Any]], cfg: Config) -> list[str]:
    """``section.key: old -> new`` for every option that differs from a checkpoint's config and changes the run."""
    try:
        old = config_to_dict(config_from_dict(without_retired(saved)))
    except ValueError as error:
        return [f"the saved config does not load any more ({error})"]
    new = config_to_dict(cfg)
    inert = set(RESULT_NEUTRAL)
    if old["loss"]["w_affinity"] == new["loss"]["w_affinity"] == 0:
        inert |= DISTILLATION
    if old["loss"]["w_cons"] == new["loss"]["w_cons"] == 0:
        inert |= CONSISTENCY
    if old["loss"]["w_motion"] == new["loss"]["w_motion"] == 0:
        inert |= MOTION
    if old["loss"]["w_planar"] == new["loss"]["w_planar"] == 0:
        inert |= PLANARITY
    return [f"{s}.{k}: {old[s][k]!r} -> {v!r}" for s in new for k, v in new[s].items()
            if old[s][k] != v and f"{s}.{k}" not in inert]


def save_checkpoint(path: Path, model: torch.nn.Module, cfg: Config, step: int, meta: dict[str, Any],
                    optimizer: torch.optim.Optimizer | None = None, teacher: torch.nn.Module | None = None,
                    half: bool = False, resume: dict[str, Any] | None = None) -> Path:
    """Write atomically (tmp + rename) so an interrupted save never corrupts the last good checkpoint."""
    state = model.state_dict()
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    payload = {"model": state, "config": config_to_dict(cfg), "step": step, "meta": {**meta, "step": step}}
    if optimizer is not None:
        payload["optimizer"] = optimizer.state_dict()
    if teacher is not None:
        payload["teacher"] = teacher.state_dict()
    if resume is not None:
        payload["resume"] = resume
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def load_model(path: str | Path, device: str = "cpu") -> tuple[DepthEstimator, Config, dict[str, Any]]:
    """The estimator in eval mode (fp32, also from an fp16 file), its whole training config and its metadata (the
    runtime's ``load_network`` gives the model config only)."""
    payload = read_checkpoint(path)
    cfg = config_from_dict(without_retired(payload["config"]))
    return build_network(cfg.model, payload["model"], device), cfg, dict(payload.get("meta", {}))
