"""Model files on disk: their kinds by suffix, content hashes, ONNX metadata, and the cache where derived files go.

Shared by the estimator, engine building and the backends (none of which import each other for these).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

CHECKPOINT_SUFFIXES = (".pt", ".pth")
ONNX_SUFFIX = ".onnx"
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


def cache_dir(engine_cache_dir: str | None = None) -> Path:
    """Where exported ONNX files and built engines are kept: the argument, $DEPTH_NODE_CACHE or ~/.cache/depth_node."""
    if engine_cache_dir:
        return Path(engine_cache_dir).expanduser()
    if os.environ.get("DEPTH_NODE_CACHE"):
        return Path(os.environ["DEPTH_NODE_CACHE"]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "depth_node"


def file_sha256(path: str | Path) -> str:
    """Content hash for cache keys: a re-exported or retrained model never reuses a stale export or engine."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def onnx_metadata(onnx_path: str | Path) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file (input size, mean/std, depth range, ...; see ``depth-train export``)."""
    try:
        import onnx
    except ImportError:
        try:
            import onnxruntime
        except ImportError as error:
            raise ImportError("reading an ONNX model's metadata needs `pip install onnx` (or onnxruntime)") from error
        session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        return dict(session.get_modelmeta().custom_metadata_map)
    model = onnx.load(str(onnx_path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def model_kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in CHECKPOINT_SUFFIXES:
        return "checkpoint"
    if suffix == ONNX_SUFFIX:
        return "onnx"
    if suffix in ENGINE_SUFFIXES:
        return "engine"
    raise ValueError(f"model {path}: unknown file type {suffix!r}; expected a checkpoint "
                     f"({', '.join(CHECKPOINT_SUFFIXES)}), an ONNX model (.onnx) or a TensorRT engine "
                     f"({', '.join(ENGINE_SUFFIXES)})")
