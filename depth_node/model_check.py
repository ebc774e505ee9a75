"""Is a model file something the node can serve? One clear reason instead of a loader's traceback.

Checked before loading (cheap, no torch import): the file exists and is readable and non-empty; an ONNX model parses,
carries the depth range metadata of ``depth-train export``, takes one (N,3,H,W) image and gives one (N,1,H,W) depth
map of the input's size (optionally followed by a ``confidence`` map of the same shape); a PyTorch checkpoint is a
``torch.save`` archive and any ONNX export beside it (which the ONNX Runtime and TensorRT paths use) is itself
usable. After loading, ``probe`` runs the network once to confirm it answers with one finite depth map of its input's
size (this also catches engines and checkpoints).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .estimator import to_network_input
from .model_files import CHECKPOINT_SUFFIXES, ENGINE_SUFFIXES, ONNX_SUFFIX

PROBE_SIZE = (96, 128)  # (height, width) to probe a model that takes any size


class ModelFileError(ValueError):
    """A model file the node cannot use; the message is ``<file>: <reason>``."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = Path(path), reason


@dataclass(frozen=True)
class ModelFile:
    path: Path
    kind: str  # checkpoint | onnx | engine
    input_size: tuple[int, int] | None  # (height, width) the file records, None when unknown or any


def resolve(model: str) -> Path:
    """The file ``model`` names; empty: the package's default model."""
    if model.strip():
        return Path(model.strip()).expanduser()
    from .default_model import MODEL_DIR

    return MODEL_DIR / "default.pt"


def check_model_file(model: str, backend: str = "auto") -> ModelFile:
    """The model file ``model`` names, checked as described above; ModelFileError with the reason otherwise."""
    path = resolve(model)
    suffix = path.suffix.lower()
    kinds = {**dict.fromkeys(CHECKPOINT_SUFFIXES, "checkpoint"), ONNX_SUFFIX: "onnx",
             **dict.fromkeys(ENGINE_SUFFIXES, "engine")}
    if suffix not in kinds:
        raise ModelFileError(path, f"unknown model type {suffix or '(no suffix)'!r}; expected a checkpoint "
                             f"({', '.join(CHECKPOINT_SUFFIXES)}), an ONNX model (.onnx) or a TensorRT engine "
                             f"({', '.join(ENGINE_SUFFIXES)})")
    if not path.exists():
        raise ModelFileError(path, "does not exist")
    if not path.is_file():
        raise ModelFileError(path, "is not a file")
    try:
        with path.open("rb") as f:
            head = f.read(64)
    except OSError as error:
        raise ModelFileError(path, f"cannot be read ({error.strerror or error})") from None
    if not head:
        raise ModelFileError(path, "is empty")
    kind = kinds[suffix]
    if kind == "onnx":
        return ModelFile(path, kind, onnx_input_size(path))
    if kind == "engine":
        if looks_like_text(head):
            raise ModelFileError(path, "is a text file, not a TensorRT engine")
        return ModelFile(path, kind, None)
    if not zipfile.is_zipfile(path) or not any(n.endswith("data.pkl") for n in zipfile.ZipFile(path).namelist()):
        raise ModelFileError(path, "is not a PyTorch checkpoint (not an archive written by torch.save; truncated or "
                             "another kind of file)")
    sibling = path.with_suffix(ONNX_SUFFIX)
    size = None
    if sibling.exists() and backend != "torch":
        try:
            size = onnx_input_size(sibling)
        except ModelFileError as error:
            raise ModelFileError(path, f"its ONNX export beside it is unusable ({error}); delete or re-export it, or "
                                 "use backend torch") from None
    return ModelFile(path, kind, size)


def looks_like_text(head: bytes) -> bool:
    return all(32 <= b < 127 or b in b"\t\r\n" for b in head)


def _dims(value_info: Any) -> list[int | str]:
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
            for d in value_info.type.tensor_type.shape.dim]


def onnx_input_size(path: Path) -> tuple[int, int] | None:
    """(height, width) of a usable depth ONNX model (None: dynamic); ModelFileError says why it is not usable."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # noqa: BLE001 - protobuf's decode errors have no common public base class
        kind = "a text file" if looks_like_text(path.read_bytes()[:64]) else "corrupt or truncated"
        raise ModelFileError(path, f"is not a readable ONNX model: {kind} ({type(error).__name__})") from None
    meta = {p.key: p.value for p in model.metadata_props}
    missing = [key for key in ("min_depth", "max_depth") if key not in meta]
    if missing:
        raise ModelFileError(path, f"has no {' / '.join(missing)} metadata: not a depth model exported with "
                             "`depth-train export`")
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1 or len(_dims(inputs[0])) != 4 or _dims(inputs[0])[1] != 3:
        shapes = ", ".join(f"{i.name} {tuple(_dims(i))}" for i in inputs)
        raise ModelFileError(path, f"takes {shapes or 'no input'}, not one (N,3,H,W) image")
    image = _dims(inputs[0])
    outputs = list(model.graph.output)
    maps = [_dims(o) for o in outputs]
    usable = len(outputs) == 1 or (len(outputs) == 2 and outputs[1].name == "confidence")
    if not usable or any(len(d) != 4 or d[1] != 1 or not _same(d[2:], image[2:]) for d in maps):
        shapes = ", ".join(f"{o.name} {tuple(_dims(o))}" for o in outputs)
        raise ModelFileError(path, f"gives {shapes}, not one depth map (N,1,H,W) of its input's size "
                             f"{tuple(image[2:])} (optionally followed by a `confidence` map of the same size)")
    h, w = image[2:]
    return (h, w) if isinstance(h, int) and isinstance(w, int) else None


def _same(a: list[int | str], b: list[int | str]) -> bool:
    """Two shapes equal where both are known (symbolic or unknown dimensions are left to ``probe``)."""
    return all(x == y or not (isinstance(x, int) and isinstance(y, int)) or x == 0 or y == 0 for x, y in zip(a, b))


def probe(estimator: Any, confidence: bool = False) -> str | None:
    """Why a loaded estimator cannot serve (None: it can): one forward pass on a synthetic image of its input size,
    with the confidence output too when asked (not by default: ONNX Runtime would load the full graph for it)."""
    h, w = estimator.input_size or PROBE_SIZE
    y, x = np.mgrid[0:h, 0:w]
    image = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), np.full_like(x, 128)], -1).astype(np.uint8)
    batch = to_network_input(image, "rgb8", (h, w), getattr(estimator, "input_format", "float32_nchw"))
    try:
        if confidence and getattr(estimator, "has_confidence", False):
            depth, confidence = (np.asarray(a) for a in estimator.runner.run_confidence(batch))
        else:
            depth, confidence = np.asarray(estimator.runner.run(batch)), None
    except Exception as error:  # noqa: BLE001 - any failure of a foreign network is the reason to refuse it
        return f"running it failed ({type(error).__name__}: {error})"
    if depth.shape != (h, w):
        return f"its output is {depth.shape}, not one depth map of its {h}x{w} input"
    if not np.isfinite(depth).any():
        return "its output on a test image is not finite anywhere"
    if confidence is not None and (confidence.shape != (h, w) or not np.all((confidence >= 0) & (confidence <= 1))):
        return f"its confidence output ({confidence.shape}) is not a map in [0, 1] of its {h}x{w} input"
    return None
