"""Latency and throughput of every available backend through ``Estimator.infer`` (pre/post-processing included).

For each model size (default 640x480, the packaged ONNX's; ``--sizes 320x240`` needs an ONNX exported at that size
beside the checkpoint) the model is run at that size on a real 640x480 frame resized to it, so the numbers are what
the node sees per image. Also counts the estimator's FLOPs and relates the achieved rate to the machine's peak.
Prints a table and writes JSON:

    python bench/backends.py --out bench/results/backends.json

On a shared machine the load average is recorded too: a busy CPU slows every backend alike, but read figures from
separate runs with care. Target on the CPU: ONNX Runtime at 640x480 at least 1.5x faster than PyTorch eager.

``--int8`` compares explicit INT8 (``depth-train quantize``) with the fp32 ONNX model on ONNX Runtime's CPU provider
instead: quantized variants calibrated on redkitchen frames 0-399, AbsRel against the ground truth of frames 500-599
(never calibrated on), and latency at 640x480 with fp32 and INT8 interleaved in one run:

    python bench/backends.py --int8 --out bench/results/int8.json
``--confidence`` measures what the confidence output costs on ONNX Runtime's CPU provider at 640x480: the model
exported without it, the model with it asked for depth only (the node without a depth/confidence subscriber), and
asking for both, interleaved in one run, and (when the calibration has the live LR depth stage) both plus the
sharpening by an LR depth that ``confidence.use_lr_depth`` adds; both graphs exported from the checkpoint here:
    OMP_NUM_THREADS=1 python bench/backends.py --confidence --threads 1 --out bench/results/confidence_cost.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from depth_node_training.config import load_config
from depth_node_training.learning.checkpoint import load_model, save_checkpoint
from torch.utils.flop_counter import FlopCounterMode

from depth_node.default_model import MODEL_DIR
from depth_node.estimator import BACKENDS, load_estimator, unavailable_reason
from depth_node.network.deploy_model import DeployModel
from depth_node.network.factory import make_network

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "redkitchen"
FRAME = DATA / "frame-000000.color.jpg"
# name: depth_node_training.deployment.quantize.quantize keyword arguments
INT8_VARIANTS = {
    "uint8 activations (default)": {},
    "int8 symmetric (--symmetric, TensorRT)": {"symmetric": True},
    "uint8, depthwise convs in float": {"keep_depthwise": True},
}


def read_frame(path: Path = FRAME) -> np.ndarray:
    """A real 640x480 RGB frame (random pixels when the data is absent: speed does not depend on content)."""
    frame = cv2.imread(str(path))
    if frame is None:
        return np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def parse_size(text: str) -> tuple[int, int]:
    """WIDTHxHEIGHT as cameras name resolutions (640x480) -> (height, width)."""
    w, h = (int(v) for v in text.lower().split("x"))
    return h, w


def estimator_flops(checkpoint: Path, size: tuple[int, int]) -> int:
    """Multiply-adds of convolutions and matmuls, 2 FLOPs each (element-wise ops are not counted)."""
    net, cfg, _ = load_model(checkpoint)
    model = DeployModel(net, cfg.model.mean, cfg.model.std).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, *size))
    return int(counter.get_total_flops())


def cpu_info() -> dict:
    """CPU model, cores, clock and theoretical fp32 peak (cores x clock x FLOPs/cycle from the vector units)."""
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""

    def field(name: str) -> str:
        match = re.search(rf"^{name}\s*:\s*(.+)$", text, re.M)
        return match.group(1).strip() if match else ""

    flags = set(field("flags").split())
    vendor = field("vendor_id")
    # FP32 FLOPs per cycle per core: two FMA pipes of 256 bits (AVX2 cores, and AMD Zen 4 running AVX-512 as 2x256)
    # = 2 x 8 x 2 = 32; Intel server cores with two 512-bit FMA units = 64.
    per_cycle = 64 if ("avx512f" in flags and vendor == "GenuineIntel") else 32 if "fma" in flags else 16
    cores = os.cpu_count() or 1
    mhz = float(field("cpu MHz") or 0)
    return {"model": field("model name") or platform.processor(), "cores": cores, "mhz": mhz,
            "flops_per_cycle_per_core": per_cycle, "peak_gflops": cores * mhz * 1e-3 * per_cycle or float("nan")}


def measured_sgemm_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Best fp32 matrix-multiply rate on this machine now: the attainable peak, under the current load."""
    a, b = torch.rand(n, n), torch.rand(n, n)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def bench_backend(model: str, backend: str, size: tuple[int, int], image: np.ndarray, iters: int, warmup: int,
                  cache: str) -> dict:
    estimator = load_estimator(model, backend, engine_cache_dir=cache, input_size=size)
    for _ in range(warmup):
        estimator.infer(image)
    totals, stages = [], []
    for _ in range(iters):
        t = time.perf_counter()
        _, timings = estimator.infer(image)
        totals.append(1e3 * (time.perf_counter() - t))
        stages.append(timings)
    totals = np.array(totals)
    return {"backend": backend, "device": estimator.device, "size": f"{size[1]}x{size[0]}",
            "median_ms": float(np.median(totals)), "p90_ms": float(np.percentile(totals, 90)),
            "throughput_fps": float(1e3 / totals.mean()),
            **{f"{k}_ms": float(np.median([s[k] for s in stages])) for k in ("preprocess", "inference", "postprocess")}}


def default_or_random_model(tmp: Path) -> tuple[Path, str]:
    if (MODEL_DIR / "default.pt").exists():
        return MODEL_DIR / "default.pt", "default.pt"
    cfg = load_config(None, ["model.pretrained=false"])
    path = save_checkpoint(tmp / "random.pt", make_network(cfg.model), cfg, 0, {"data": [], "git_rev": "bench"})
    return path, "random weights (no default model; speed does not depend on weights)"


def on_cpu(device: str) -> bool:
    return device == "cpu" or device.startswith("CPUExecutionProvider")  # ORT's device names its first provider


def format_rows(rows: list[dict]) -> str:
    head = ("| backend | device | size | median ms | p90 ms | fps | pre ms | infer ms | post ms | GFLOP/s | "
            "% CPU peak |")
    lines = [head, "|" + " --- |" * 11]
    for r in rows:
        lines.append(f"| {r['backend']} | {r['device']} | {r['size']} | {r['median_ms']:.1f} | {r['p90_ms']:.1f} | "
                     f"{r['throughput_fps']:.1f} | {r['preprocess_ms']:.2f} | {r['inference_ms']:.1f} | "
                     f"{r['postprocess_ms']:.2f} | {r['achieved_gflops']:.1f} | {r['peak_fraction']:.1%} |")
    return "\n".join(lines)


def int8_comparison(onnx_path: Path, image: np.ndarray, iters: int, tmp: Path, calib_frames: int) -> dict:
    """AbsRel on held-out frames and interleaved 640x480 latency of fp32 vs each INT8 variant (ONNX Runtime CPU)."""
    from depth_node_training.deployment.quantize import quantize
    from depth_node_training.evaluation.evaluate import evaluate_frames
    from depth_node_training.learning.datasets import open_frames

    calib, held_out = f"{DATA}@0:400", open_frames(f"{DATA}@500:600")
    models = {"fp32": onnx_path}
    for name, options in INT8_VARIANTS.items():
        models[name] = quantize(onnx_path, calib, tmp / f"int8-{len(models)}.onnx", calib_frames, **options)
    estimators = {name: load_estimator(str(path), "onnxruntime") for name, path in models.items()}
    reference = estimators["fp32"].infer(image)[0]
    rows = {}
    for name, estimator in estimators.items():
        summary = evaluate_frames(lambda rgb, e=estimator: e.infer(rgb)[0], held_out, previews=0, desc=name)
        depth = estimator.infer(image)[0]
        rows[name] = {"precision": estimator.precision, "abs_rel": summary["abs_rel"], "rmse": summary["rmse"],
                      "delta1": summary["delta1"], "frames": summary["frames"],
                      "mean_abs_diff_m": float(np.abs(depth - reference).mean()),
                      "mean_rel_diff": float(np.mean(np.abs(depth - reference) / reference))}
    times: dict[str, list[float]] = {name: [] for name in estimators}
    for estimator in estimators.values():
        for _ in range(3):
            estimator.infer(image)
    for _ in range(iters):  # interleaved: load changes on a shared machine hit every model alike
        for name, estimator in estimators.items():
            t = time.perf_counter()
            estimator.infer(image)
            times[name].append(1e3 * (time.perf_counter() - t))
    for name, row in rows.items():
        row["median_ms"] = float(np.median(times[name]))
        row["speedup_vs_fp32"] = float(np.median(times["fp32"]) / row["median_ms"])
        row["abs_rel_change"] = row["abs_rel"] - rows["fp32"]["abs_rel"]
    return rows


def format_int8(rows: dict) -> str:
    lines = ["| model | AbsRel | ΔAbsRel | RMSE m | δ<1.25 | mean abs diff vs fp32 | median ms 640x480 | speedup |",
             "|" + " --- |" * 8]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['abs_rel']:.4f} | {r['abs_rel_change']:+.4f} | {r['rmse']:.3f} | "
                     f"{r['delta1']:.3f} | {r['mean_abs_diff_m'] * 1e3:.1f} mm ({r['mean_rel_diff']:.1%}) | "
                     f"{r['median_ms']:.1f} | {r['speedup_vs_fp32']:.2f}x |")
    return "\n".join(lines)


def main_int8(args: argparse.Namespace, image: np.ndarray) -> None:
    onnx_path = Path(args.onnx) if args.onnx else MODEL_DIR / "default.onnx"
    machine = {**cpu_info(), "load_average_before": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        rows = int8_comparison(onnx_path, image, args.iters, Path(tmp), args.calib_frames)
    machine["load_average_after"] = os.getloadavg()
    print(f"\nmodel: {onnx_path}; machine: {machine['model']}, {machine['cores']} cores, load average "
          f"{machine['load_average_before'][0]:.2f} -> {machine['load_average_after'][0]:.2f}")
    print(format_int8(rows))
    default = rows["uint8 activations (default)"]
    print(f"default INT8: AbsRel {default['abs_rel_change']:+.4f} vs fp32 (target within 0.01), "
          f"{default['speedup_vs_fp32']:.2f}x faster (target >= 1.3x, aim 1.5x)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"model": str(onnx_path), "calibration": "redkitchen@0:400",
                                    "calib_frames": args.calib_frames, "evaluation": "redkitchen@500:600",
                                    "iters": args.iters, "machine": machine, "rows": rows}, indent=2))
    print(f"wrote {args.out}")


def confidence_cost(checkpoint: Path, image: np.ndarray, iters: int, threads: int, tmp: Path) -> dict:
    """Median ms per ``Estimator`` call (pre/post-processing included), interleaved, of the three ways above."""
    from depth_node_training.deployment.export import export_onnx

    from depth_node.backends.onnxruntime_backend import OnnxRuntimeBackend
    from depth_node.estimator import Estimator
    from depth_node.scale_align import reduce_to
    from depth_node.sensor_confidence import sharpen

    def estimator(confidence: bool) -> Estimator:
        path = export_onnx(str(checkpoint), tmp / f"conf-{confidence}.onnx", 480, 640, confidence=confidence)
        runner = OnnxRuntimeBackend(path, tmp, threads, requested=["CPUExecutionProvider"])
        return Estimator(runner, runner.input_size)

    plain, calibrated = estimator(False), estimator(True)
    if not calibrated.has_confidence:
        raise SystemExit(f"{checkpoint} has no confidence calibration beside it: run depth-train calibrate-confidence")
    runs = {"without confidence output": lambda: plain.infer(image),
            "with it, depth only": lambda: calibrated.infer(image),
            "with it, depth + confidence": lambda: calibrated.infer_with_confidence(image)}
    if calibrated.sensor_stage is not None:  # what the node adds with confidence.use_lr_depth (any LR values do)
        lr = reduce_to(calibrated.infer(image)[0], (image.shape[0] // 4, image.shape[1] // 4)) * np.float32(1.05)

        def sharpened() -> None:
            depth, confidence, _ = calibrated.infer_with_confidence(image)
            sharpen(confidence, depth, lr, (0.05, 20.0), calibrated.sensor_stage)

        runs["with it, + sharpened by an LR depth"] = sharpened
    times: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values():
        run(), run()
    for _ in range(iters):  # interleaved: load changes on a shared machine hit every variant alike
        for name, run in runs.items():
            t = time.perf_counter()
            run()
            times[name].append(1e3 * (time.perf_counter() - t))
    base = float(np.median(times["without confidence output"]))
    return {name: {"median_ms": float(np.median(v)), "p90_ms": float(np.percentile(v, 90)),
                   "overhead": float(np.median(v)) / base - 1} for name, v in times.items()}


def main_confidence(args: argparse.Namespace, image: np.ndarray) -> None:
    checkpoint = Path(args.model) if args.model else MODEL_DIR / "default.pt"
    machine = {**cpu_info(), "threads": args.threads, "load_average_before": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        rows = confidence_cost(checkpoint, image, args.iters, args.threads, Path(tmp))
    machine["load_average_after"] = os.getloadavg()
    print(f"\nmodel: {checkpoint}; ONNX Runtime CPU, {args.threads or 'all'} thread(s), 640x480, {args.iters} "
          f"interleaved runs; machine: {machine['model']}, {machine['cores']} cores, load average "
          f"{machine['load_average_before'][0]:.2f} -> {machine['load_average_after'][0]:.2f}")
    print("| variant | median ms | p90 ms | vs without |\n| --- | --- | --- | --- |")
    for name, r in rows.items():
        print(f"| {name} | {r['median_ms']:.1f} | {r['p90_ms']:.1f} | {r['overhead']:+.1%} |")
    print(f"confidence costs {rows['with it, depth + confidence']['overhead']:+.1%} (target <= +15%)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"model": str(checkpoint), "size": "640x480", "iters": args.iters,
                                    "machine": machine, "rows": rows}, indent=2))
    print(f"wrote {args.out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="checkpoint (.pt); default: the shipped model, else random weights")
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--sizes", nargs="+", default=["640x480"],
                        help="model sizes WIDTHxHEIGHT (ONNX Runtime on a .pt needs its ONNX exported at that size)")
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("bench/results/backends.json"))
    parser.add_argument("--int8", action="store_true", help="compare INT8 Q/DQ variants with fp32 ONNX instead")
    parser.add_argument("--onnx", help="--int8: fixed-size fp32 ONNX model (default: the packaged default.onnx)")
    parser.add_argument("--calib-frames", type=int, default=32, help="--int8: calibration frames from 0-399")
    parser.add_argument("--confidence", action="store_true", help="cost of the confidence output instead")
    parser.add_argument("--threads", type=int, default=0, help="--confidence: ONNX Runtime threads (0: all cores)")
    args = parser.parse_args()
    if args.int8:
        main_int8(args, read_frame())
        return
    if args.confidence:
        main_confidence(args, read_frame())
        return

    with tempfile.TemporaryDirectory() as tmp:
        model, model_note = (Path(args.model), args.model) if args.model else default_or_random_model(Path(tmp))
        image = read_frame()
        cpu = cpu_info()
        machine = {**cpu, "load_average_before": os.getloadavg(), "sgemm_gflops": measured_sgemm_gflops(),
                   "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                   "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
        rows, flops = [], {}
        for text in args.sizes:
            size = parse_size(text)
            flops[text] = estimator_flops(model, size)
            for backend in args.backends:
                reason = unavailable_reason(backend)
                if reason is not None:
                    print(f"skip {backend}: {reason}")
                    continue
                row = bench_backend(str(model), backend, size, image, args.iters, args.warmup, tmp)
                row["achieved_gflops"] = flops[text] / (row["inference_ms"] * 1e-3) / 1e9
                cpu_peak = cpu["peak_gflops"] if on_cpu(row["device"]) else float("nan")
                row["peak_fraction"] = row["achieved_gflops"] / cpu_peak
                rows.append(row)
                print(f"{backend} {text}: median {row['median_ms']:.1f} ms, p90 {row['p90_ms']:.1f} ms")
        machine["load_average_after"] = os.getloadavg()

    print(f"\nmodel: {model_note}; machine: {cpu['model']}, {cpu['cores']} cores at {cpu['mhz']:.0f} MHz, "
          f"theoretical fp32 peak {cpu['peak_gflops']:.0f} GFLOP/s, measured sgemm {machine['sgemm_gflops']:.0f} "
          f"GFLOP/s, load average {machine['load_average_before'][0]:.2f}")
    for text, count in flops.items():
        print(f"estimator FLOPs at {text}: {count / 1e9:.2f} GFLOP (conv/matmul, 2 per multiply-add)")
    print(format_rows(rows))
    ratio = {}
    for text in args.sizes:
        by = {r["backend"]: r for r in rows if r["size"] == text and on_cpu(r["device"])}
        if "onnxruntime" in by and "torch" in by:
            ratio[text] = by["torch"]["median_ms"] / by["onnxruntime"]["median_ms"]
            print(f"CPU {text}: ONNX Runtime is {ratio[text]:.2f}x faster than PyTorch eager (target: >= 1.5x)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"model": model_note, "machine": machine, "flops": flops, "rows": rows,
                                    "onnxruntime_speedup_over_torch": ratio}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
