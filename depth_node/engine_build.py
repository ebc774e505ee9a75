"""TensorRT engines from exported ONNX models: the build, the cache key and stale check, and ``depth-engine``.

This lives in the runtime package because engines are built where they run: a robot given an .onnx file builds its
engine on first start (the node, through ``cached_engine``) or ahead of time (``depth-engine``, also
``ros2 run depth_node build_engine`` and ``depth-train build-engine``). It needs numpy, ONNX, TensorRT and cuda-python,
never torch.

Precision is the ONNX model's own (strongly typed networks, TensorRT 10 and 11): an fp32 export gives fp32 kernels
(TF32 off), an fp16 export (``depth-train export --precision fp16``) fp16 with fp32 I/O and head, a Q/DQ model
(``depth-train quantize``) INT8. Asking fp16 of an fp32 model uses TensorRT 10's weakly typed FP16 flag, the one
fallback; TensorRT 11 removed it. Every engine has a JSON build record beside it (``model.engine.json``) holding its
key: TensorRT version, GPU and compute capability, precision, typing, optimisation profile, workspace and the ONNX
file's hash. A change of any of them rebuilds a cached engine, and an engine whose record does not match this machine is
refused, never silently used.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any

from depth_node.backends.nvidia import machine_key, require_gpu, tensorrt, tensorrt_major
from depth_node.model_files import cache_dir, file_sha256, onnx_metadata

PRECISIONS = ("fp32", "fp16", "int8")
WORKSPACE_GIB = 2.0
# Every field a cached engine must match; a difference in any one of them means a rebuild.
KEY_FIELDS = ("tensorrt", "gpu", "compute_capability", "precision", "typing", "profile", "workspace_gib",
              "onnx_sha256")

Size = tuple[int, int]
Profile = tuple[Size, Size, Size]

log = logging.getLogger(__name__)


def parse_size(text: str) -> Size:
    """``HxW`` (e.g. 480x640) -> (height, width)."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match or min(int(match.group(1)), int(match.group(2))) <= 0:
        raise argparse.ArgumentTypeError(f"size {text!r} is not HEIGHTxWIDTH with positive sides, e.g. 480x640")
    return int(match.group(1)), int(match.group(2))


def onnx_precision(onnx_path: str | Path) -> str:
    """What the graph computes in: "int8" (Q/DQ nodes), "fp16" (fp16 weights or casts) or "fp32"."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    ops = {node.op_type for node in graph.node}
    if {"QuantizeLinear", "DequantizeLinear"} & ops:
        return "int8"
    fp16 = onnx.TensorProto.FLOAT16
    casts = (a.i for n in graph.node if n.op_type == "Cast" for a in n.attribute if a.name == "to")
    if any(t.data_type == fp16 for t in graph.initializer) or fp16 in casts:
        return "fp16"
    return "fp32"


def tensorrt_qdq_problem(onnx_path: str | Path) -> str | None:
    """Why TensorRT cannot build this Q/DQ model (it takes only symmetric INT8: zero points 0), or None."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    constants = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2:
            zero_point = constants.get(node.input[2])
            if zero_point is None:
                continue
            if zero_point.data_type != onnx.TensorProto.INT8:
                return (f"{node.name} quantizes to {onnx.TensorProto.DataType.Name(zero_point.data_type)}; TensorRT "
                        "takes symmetric INT8 only: quantize with `depth-train quantize --symmetric`")
            if numpy_helper.to_array(zero_point).any():
                return f"{node.name} has a non-zero zero point; TensorRT takes symmetric INT8 only (--symmetric)"
    return None


def input_layout(metadata: dict[str, str]) -> str:
    """``uint8_nhwc`` (camera bytes, converted inside the graph) or ``float32_nchw`` (the default export)."""
    return metadata.get("input_format", "float32_nchw")


def input_shape(layout: str, size: Size, batch: int = 1) -> tuple[int, int, int, int]:
    return (batch, size[0], size[1], 3) if layout == "uint8_nhwc" else (batch, 3, size[0], size[1])


def default_profile(metadata: dict[str, str]) -> Profile:
    """(min, opt, max) (height, width) for a dynamic model: opt at the export size, from a quarter to twice it."""
    h, w = int(metadata["input_height"]), int(metadata["input_width"])
    return (max(32, h // 4), max(32, w // 4)), (h, w), (2 * h, 2 * w)


def resolve_profile(metadata: dict[str, str], low: Size | None = None, opt: Size | None = None,
                    high: Size | None = None) -> Profile | None:
    """The optimisation profile of a dynamic model (defaults filled in), None for a fixed-size one."""
    if metadata.get("dynamic") != "true":
        if low or opt or high:
            raise ValueError(f"the model has a fixed input size {metadata.get('input_height')}x"
                             f"{metadata.get('input_width')}; --min/--opt/--max-size apply to dynamic exports only")
        return None
    d_low, d_opt, d_high = default_profile(metadata)
    profile = (low or d_low, opt or d_opt, high or d_high)
    if not all(a <= b <= c for a, b, c in zip(*profile)):
        raise ValueError(f"profile sizes must satisfy min <= opt <= max per side, got {profile}")
    return profile


def plan_precision(model: str, requested: str | None, trt_version: str) -> tuple[str, str]:
    """(precision, typing) for a model whose graph is in ``model`` precision: strongly typed wherever possible.

    ``requested`` None takes the model's own precision. fp16 of an fp32 graph is TensorRT 10's weakly typed fallback;
    everything else that differs from the graph cannot be honoured and says how to make the right ONNX.
    """
    if requested in (None, model):
        return model, "strong"
    if requested not in PRECISIONS:
        raise ValueError(f"unknown precision {requested!r}; choose one of {', '.join(PRECISIONS)}")
    if requested == "fp16" and model == "fp32":
        if tensorrt_major(trt_version) < 11:
            return "fp16", "weak"
        raise ValueError(f"TensorRT {trt_version} builds strongly typed networks only (the fp16 builder flag was "
                         "removed in 11): export an fp16 model with `depth-train export --precision fp16`")
    if requested == "int8":
        raise ValueError("INT8 needs a Q/DQ model: make one with `depth-train quantize --onnx M.onnx --calib DATA "
                         "--out M.int8.onnx` and build that")
    raise ValueError(f"the model computes in {model}; a {requested} engine needs a {requested} export "
                     f"(`depth-train export --precision {requested}`)")


def profile_json(profile: Profile | None) -> list[list[int]] | None:
    """The profile as stored in records (JSON has no tuples), so a key read back compares equal."""
    return None if profile is None else [list(map(int, size)) for size in profile]


def engine_key(machine: dict[str, str], precision: str, typing: str, profile: Profile | None, workspace_gib: float,
               onnx_sha256: str) -> dict[str, Any]:
    """Everything a built engine depends on (see ``KEY_FIELDS``)."""
    return {**machine, "precision": precision, "typing": typing, "profile": profile_json(profile),
            "workspace_gib": float(workspace_gib), "onnx_sha256": onnx_sha256}


def key_digest(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps({k: key[k] for k in KEY_FIELDS}, sort_keys=True).encode()).hexdigest()[:16]


def stale_reason(record: dict[str, Any], wanted: dict[str, Any]) -> str | None:
    """Why an engine built with ``record`` does not serve ``wanted`` (any subset of the key fields), or None."""
    for field in KEY_FIELDS:
        if field in wanted and record.get(field) != wanted[field]:
            return f"it was built for {field} {record.get(field)!r}, {wanted[field]!r} is wanted"
    return None


def record_path(engine_path: Path) -> Path:
    return engine_path.with_name(engine_path.name + ".json")


def read_record(engine_path: Path) -> dict[str, Any]:
    path = record_path(engine_path)
    if not path.exists():
        raise RuntimeError(f"engine {engine_path} has no build record {path.name}; build engines with `depth-engine` "
                           "so their GPU, TensorRT version and model can be checked")
    try:
        return json.loads(path.read_text())
    except ValueError as error:
        raise RuntimeError(f"engine build record {path} is not valid JSON: {error}") from error


def engine_stale_reason(engine_path: Path, wanted: dict[str, Any]) -> str | None:
    """``stale_reason`` for an engine file: also when it or its record is missing or unreadable."""
    if not engine_path.exists():
        return "it does not exist"
    try:
        return stale_reason(read_record(engine_path), wanted)
    except RuntimeError as error:
        return str(error)


def wanted_key(onnx_path: Path, precision: str | None = None, profile: Profile | None = None,
               workspace_gib: float = WORKSPACE_GIB) -> dict[str, Any]:
    """The key an engine for ``onnx_path`` must have on this machine (needs TensorRT and a GPU)."""
    trt = tensorrt()
    resolved, typing = plan_precision(onnx_precision(onnx_path), precision, trt.__version__)
    problem = tensorrt_qdq_problem(onnx_path) if resolved == "int8" else None
    if problem is not None:  # RuntimeError: `auto` then runs the model on ONNX Runtime instead
        raise RuntimeError(f"TensorRT cannot build {onnx_path}: {problem}")
    return engine_key(machine_key(), resolved, typing, profile, workspace_gib, file_sha256(onnx_path))


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def build_engine(onnx_path: Path, engine_path: Path, key: dict[str, Any], timing_cache: Path | None = None) -> Path:
    """Parse ``onnx_path`` and build the engine ``key`` describes (see ``wanted_key``), plus its build record.

    ``timing_cache`` is loaded if present and updated, which makes rebuilds of the same layers on the same GPU much
    faster.
    """
    trt = tensorrt()
    require_gpu()
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    metadata = onnx_metadata(onnx_path)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    strong = key["typing"] == "strong"  # the flag is required for strong typing on 10.x, accepted and implied on 11
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strong else 0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "\n".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT cannot parse {onnx_path}:\n{errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(key["workspace_gib"] * (1 << 30)))
    if not strong:
        config.set_flag(trt.BuilderFlag.FP16)  # TensorRT 10's weakly typed fallback, see plan_precision
    if key["precision"] == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # on by default: "fp32" would otherwise run 10-bit-mantissa matmuls
    image = network.get_input(0)
    if key["profile"] is not None:
        layout = input_layout(metadata)
        opt_profile = builder.create_optimization_profile()
        opt_profile.set_shape(image.name, *(input_shape(layout, tuple(size)) for size in key["profile"]))
        config.add_optimization_profile(opt_profile)
    elif any(d < 0 for d in image.shape):
        raise RuntimeError(f"{onnx_path} has free dimensions {tuple(image.shape)} but its metadata says it is not "
                           "dynamic; re-export it with `depth-train export`")
    if timing_cache is not None:
        cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.exists() else b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
    log.info("building a %s (%sly typed) TensorRT %s engine from %s (minutes on a small GPU)", key["precision"],
             key["typing"], trt.__version__, onnx_path)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path} (see its log above)")
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    if timing_cache is not None:
        timing_cache.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(timing_cache, bytes(config.get_timing_cache().serialize()))
    _atomic_write(engine_path, bytes(serialized))
    record = {**key, "onnx": str(onnx_path.resolve()), "metadata": metadata}
    _atomic_write(record_path(engine_path), json.dumps(record, indent=2).encode())
    return engine_path


def timing_cache_path(cache: Path) -> Path:
    key = machine_key()
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", f"{key['gpu']}-sm{key['compute_capability']}-trt{key['tensorrt']}")
    return cache / f"timing-{slug}.cache"


def cached_engine(onnx_path: Path, cache: Path, precision: str | None = None, profile: Profile | None = None,
                  workspace_gib: float = WORKSPACE_GIB) -> Path:
    """The engine for ``onnx_path`` in ``cache``, named by its key and built when no engine with that key is there."""
    require_gpu()
    onnx_path = Path(onnx_path)
    profile = profile or resolve_profile(onnx_metadata(onnx_path))
    key = wanted_key(onnx_path, precision, profile, workspace_gib)
    engine_path = Path(cache) / f"{onnx_path.stem}-{key_digest(key)}.engine"
    reason = engine_stale_reason(engine_path, key)
    if reason is not None:
        log.info("building TensorRT engine %s: %s", engine_path, reason)
        build_engine(onnx_path, engine_path, key, timing_cache_path(Path(cache)))
    return engine_path


def run(args: argparse.Namespace) -> None:
    """Build (or confirm up to date) the engine the arguments describe."""
    onnx_path = Path(args.onnx)
    engine_path = Path(args.engine) if args.engine else onnx_path.with_suffix(".engine")
    if not onnx_path.is_file():
        raise FileNotFoundError(f"ONNX model {onnx_path} does not exist (make one with `depth-train export`)")
    if args.workspace_gib <= 0:
        raise ValueError(f"--workspace-gib must be positive, got {args.workspace_gib}")
    profile = resolve_profile(onnx_metadata(onnx_path), args.min_size, args.opt_size, args.max_size)
    require_gpu()
    precision = None if args.precision == "auto" else args.precision
    key = wanted_key(onnx_path, precision, profile, args.workspace_gib)
    reason = engine_stale_reason(engine_path, key)
    if reason is None and not args.force:
        print(f"{engine_path} is up to date for {onnx_path} on this GPU (use --force to rebuild)")
        return
    timing = Path(args.timing_cache) if args.timing_cache else timing_cache_path(cache_dir())
    build_engine(onnx_path, engine_path, key, timing)
    print(f"wrote {engine_path} ({key['precision']}, {key['typing']}ly typed, TensorRT {key['tensorrt']} on "
          f"{key['gpu']}; build record {engine_path.name}.json); timing cache {timing}")


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--onnx", required=True, help="ONNX model (`depth-train export` or `depth-train quantize`)")
    p.add_argument("--engine", help="output engine file (default: the ONNX path with .engine); a .json build record "
                                    "is written beside it")
    p.add_argument("--precision", choices=("auto", *PRECISIONS), default="auto",
                   help="auto: the model's own (fp32 export, fp16 export, Q/DQ INT8); fp16 of an fp32 model only on "
                        "TensorRT 10 (weakly typed)")
    p.add_argument("--min-size", type=parse_size, help="dynamic models: smallest HxW of the optimisation profile")
    p.add_argument("--opt-size", type=parse_size, help="dynamic models: HxW tuned for (default: the export size)")
    p.add_argument("--max-size", type=parse_size, help="dynamic models: largest HxW of the optimisation profile")
    p.add_argument("--workspace-gib", type=float, default=WORKSPACE_GIB, help="builder scratch memory limit")
    p.add_argument("--timing-cache", help="timing cache file (default: per GPU and TensorRT version in the cache dir)")
    p.add_argument("--force", action="store_true", help="rebuild even when the engine is up to date")
    p.set_defaults(func=run)
    return p


DESCRIPTION = "Build a TensorRT engine from an exported ONNX model on this machine's GPU."


def main(argv: list[str] | None = None) -> None:
    """``depth-engine`` / ``ros2 run depth_node build_engine``."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = add_arguments(argparse.ArgumentParser(prog="depth-engine", description=DESCRIPTION)).parse_args(argv)
    try:
        args.func(args)
    except (FileNotFoundError, ValueError, ImportError, RuntimeError) as error:
        print(f"depth-engine: error: {error}", file=sys.stderr)
        raise SystemExit(2) from error
    except KeyboardInterrupt:
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
