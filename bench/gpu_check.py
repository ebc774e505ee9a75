"""Every GPU path present on this machine, on real frames: parity against CPU ONNX Runtime and latency at 640x480.

Paths, each run when what it needs is installed (and recorded with the reason when not): PyTorch CUDA fp32 and fp16
through the project's torch backend; ONNX Runtime's CUDA and TensorRT execution providers; TensorRT engines (fp32,
fp16 from an fp16 export, INT8 from a symmetric Q/DQ model) built by ``depth_node.engine_build``. The reference is the
same model on ONNX Runtime's CPU provider. Parity: max and mean |depth difference| in metres over the frames; latency:
median of ``--iters`` runs of ``Estimator.infer`` (uint8 image in, metres out) on one frame. Installs nothing and
needs no network; without any GPU path it says so and exits 3 (``bench/gpu_check.sh``). Prints one table, writes JSON.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np

from depth_node.default_model import MODEL_DIR
from depth_node.estimator import Estimator, load_estimator

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "redkitchen"
FRAMES = (500, 525, 550, 575, 599)  # held-out frames of the packaged model
NO_GPU_EXIT = 3


def read_frames(data: Path, numbers: tuple[int, ...]) -> list[np.ndarray]:
    import cv2

    frames = []
    for n in numbers:
        bgr = cv2.imread(str(data / f"frame-{n:06d}.color.jpg"))
        if bgr is None:
            raise FileNotFoundError(f"frame {n} not found in {data} (pass --data)")
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return frames


def torch_cuda() -> str | None:
    """The CUDA device name torch sees, or None."""
    if importlib.util.find_spec("torch") is None:
        return None
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def ort_gpu_providers() -> list[str]:
    if importlib.util.find_spec("onnxruntime") is None:
        return []
    import onnxruntime as ort

    return [p for p in ("CUDAExecutionProvider", "TensorrtExecutionProvider") if p in ort.get_available_providers()]


def tensorrt_reason() -> str | None:
    from depth_node.estimator import unavailable_reason

    return unavailable_reason("tensorrt")


def gpu_paths(checkpoint: Path, onnx: Path, work: Path, calib: str) -> dict[str, Callable[[], Estimator] | str]:
    """name -> a loader of the estimator, or the reason that path cannot run here."""
    from depth_node.backends.onnxruntime_backend import OnnxRuntimeBackend
    from depth_node.estimator import _run_size

    paths: dict[str, Callable[[], Estimator] | str] = {}
    cuda = torch_cuda()
    no_torch = "torch has no CUDA device" if importlib.util.find_spec("torch") else "torch is not installed"
    for precision in ("fp32", "fp16"):
        if cuda:
            def load(p=precision) -> Estimator:
                from depth_node.backends.torch_backend import TorchBackend

                runner = TorchBackend(checkpoint, "cuda", p)
                return Estimator(runner, _run_size(runner, "checkpoint", None))
            paths[f"torch CUDA {precision}"] = load
        else:
            paths[f"torch CUDA {precision}"] = no_torch
    available = ort_gpu_providers()
    for provider, name in (("CUDAExecutionProvider", "onnxruntime CUDA EP"),
                           ("TensorrtExecutionProvider", "onnxruntime TensorRT EP")):
        if provider not in available:
            paths[name] = "this onnxruntime has no such provider (install onnxruntime-gpu, not onnxruntime)"
            continue

        def load_ort(p=provider) -> Estimator:
            from depth_node.backends.onnxruntime_backend import providers

            wanted = (p, "CPUExecutionProvider")
            requested = [e for e in providers(work) if (e[0] if isinstance(e, tuple) else e) in wanted]
            runner = OnnxRuntimeBackend(onnx, work, requested=requested)
            if runner.missing:
                raise RuntimeError(f"{', '.join(runner.missing)} did not load; the session runs on {runner.providers}")
            return Estimator(runner, runner.input_size)
        paths[name] = load_ort
    reason = tensorrt_reason()
    for precision in ("fp32", "fp16", "int8"):
        name = f"TensorRT engine {precision}"
        if reason is not None:
            paths[name] = reason
            continue

        def load_trt(p=precision) -> Estimator:
            from depth_node.backends.tensorrt_backend import TensorRTBackend
            from depth_node.engine_build import cached_engine

            model = onnx
            if p == "fp16":
                if importlib.util.find_spec("torch") is None:
                    raise RuntimeError("an fp16 export needs torch (`depth-train export --precision fp16`)")
                from depth_node_training.deployment.export import export_onnx

                meta = load_estimator(str(onnx), "onnxruntime").metadata
                model = export_onnx(str(checkpoint), work / "model.fp16.onnx", int(meta["input_height"]),
                                    int(meta["input_width"]), precision="fp16")
            elif p == "int8":
                from depth_node_training.deployment.quantize import quantize

                model = quantize(onnx, calib, work / "model.int8.onnx", 32, symmetric=True)
            runner = TensorRTBackend(cached_engine(model, work))
            return Estimator(runner, runner.input_size)
        paths[name] = load_trt
    return paths


def measure(estimator: Estimator, frames: list[np.ndarray], references: list[np.ndarray], iters: int) -> dict:
    diffs = [np.abs(estimator.infer(f)[0] - r) for f, r in zip(frames, references)]
    for _ in range(10):
        estimator.infer(frames[0])
    times, stages = [], []
    for _ in range(iters):
        t = time.perf_counter()
        _, timings = estimator.infer(frames[0])
        times.append(1e3 * (time.perf_counter() - t))
        stages.append(timings)
    return {"providers": estimator.providers, "precision": estimator.precision,
            "max_abs_diff_m": float(max(d.max() for d in diffs)), "mean_abs_diff_m": float(np.mean(diffs)),
            "median_ms": float(np.median(times)), "p90_ms": float(np.percentile(times, 90)),
            "stages_median_ms": {k: float(np.median([s[k] for s in stages])) for k in stages[0]}}


def format_table(rows: dict[str, dict]) -> str:
    lines = ["| path | precision | max abs diff m | mean abs diff m | median ms | p90 ms | status |",
             "|" + " --- |" * 7]
    for name, r in rows.items():
        if "median_ms" in r:
            lines.append(f"| {name} | {r['precision']} | {r['max_abs_diff_m']:.4f} | {r['mean_abs_diff_m']:.5f} | "
                         f"{r['median_ms']:.2f} | {r['p90_ms']:.2f} | ran |")
        else:
            lines.append(f"| {name} | | | | | | not run: {r['not_run']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA, help="7-Scenes redkitchen folder (real 640x480 frames)")
    parser.add_argument("--iters", type=int, default=200, help="timed runs per path")
    parser.add_argument("--out", type=Path, default=Path("bench/results/gpu_check.json"))
    parser.add_argument("--budget-s", type=float, default=240.0,
                        help="start no further path after this many seconds (what was skipped is recorded)")
    args = parser.parse_args(argv)
    checkpoint, onnx = MODEL_DIR / "default.pt", MODEL_DIR / "default.onnx"
    frames = read_frames(args.data, FRAMES)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        paths = gpu_paths(checkpoint, onnx, Path(tmp), f"{args.data}@0:400")
        runnable = [name for name, p in paths.items() if callable(p)]
        if not runnable:
            print("no GPU path is present on this machine:")
            for name, reason in paths.items():
                print(f"  {name}: {reason}")
            return NO_GPU_EXIT
        from depth_node.backends.onnxruntime_backend import OnnxRuntimeBackend

        cpu = OnnxRuntimeBackend(onnx, Path(tmp), requested=["CPUExecutionProvider"])
        reference = Estimator(cpu, cpu.input_size)
        references = [reference.infer(f)[0] for f in frames]
        rows: dict[str, dict] = {"onnxruntime CPU EP (reference)": measure(reference, frames, references, 20)}
        for name, path in paths.items():
            if not callable(path):
                rows[name] = {"not_run": path}
                continue
            if time.perf_counter() - started > args.budget_s:
                rows[name] = {"not_run": f"time budget of {args.budget_s:.0f} s spent before it started"}
                continue
            print(f"{name} ...", flush=True)
            try:
                rows[name] = measure(path(), frames, references, args.iters)
            except Exception as error:  # noqa: BLE001 -- one failing path is recorded; the others still run
                rows[name] = {"not_run": f"failed: {error}".splitlines()[0][:300],
                              "traceback": traceback.format_exc()}
    import onnxruntime

    machine = {"host": platform.node(), "cpu": platform.processor(), "gpu": torch_cuda(),
               "python": sys.version.split()[0],
               "onnxruntime": onnxruntime.__version__, "onnxruntime_gpu_providers": ort_gpu_providers(),
               "tensorrt": tensorrt_reason() or "available", "wall_s": time.perf_counter() - started}
    if importlib.util.find_spec("torch"):
        import torch

        machine.update(torch=torch.__version__, torch_cuda=torch.version.cuda)
    print(f"\nframes {list(FRAMES)} of {args.data} at 640x480; latency: median of {args.iters} runs; machine: "
          f"{machine['gpu'] or 'no CUDA device'}; {machine['wall_s']:.0f} s")
    print(format_table(rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"frames": list(FRAMES), "iters": args.iters, "machine": machine, "rows": rows},
                                   indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
