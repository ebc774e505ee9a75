"""Where the package's shipped default model lives (installed as package data)."""

from __future__ import annotations

from pathlib import Path

MODEL_DIR = Path(__file__).parent / "models"


def default_model_path() -> Path:
    """The shipped fp16 checkpoint trained by bench/ablation.py's "full" row (see models/README.md)."""
    path = MODEL_DIR / "default.pt"
    if not path.exists():
        raise FileNotFoundError(f"the default model {path} is missing: reinstall depth_node or pass a model path")
    return path
