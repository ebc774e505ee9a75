"""``depth-train``: fit, evaluate, export, calibrate-confidence, quantize, build-engine, extract, sample-bag.

Each subcommand's module is imported only when that subcommand runs, so a command's own dependencies are all it needs:
``depth-train build-engine`` works on a robot without torch or rosbags.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

# name: (module that registers it, relative to this package; one-line help for the command list)
COMMANDS = {
    "fit": ("", "train the estimator (weakly supervised by LR depth)"),
    "evaluate": (".evaluation.evaluate", "metrics of a model against HR ground truth"),
    "export": (".deployment.export", "export a checkpoint to ONNX (normalisation inside the graph)"),
    "calibrate-confidence": (".deployment.calibrate_confidence", "fit the confidence calibration of a checkpoint"),
    "quantize": (".deployment.quantize", "INT8 Q/DQ model from an exported ONNX, calibrated on frames"),
    "build-engine": (".deployment.engine",
                     "build a TensorRT engine from an exported ONNX model (alias of depth-engine)"),
    "extract": (".logs.extract", "extract paired, registered frames from rosbag2 logs"),
    "sample-bag": (".logs.sample_bag", "write a small synthetic robot log (rosbag2) with ground truth"),
}


def run_fit(args: argparse.Namespace) -> None:
    from .config import load_config
    from .learning.train import fit

    if not args.data:
        raise ValueError("fit needs --data PATH (a 7-Scenes or TUM folder, an extracted set, or a rosbag2 log)")
    cfg = load_config(args.config, args.overrides)
    path = fit(cfg, args.data, args.out, resume=args.resume, allow_config_change=args.allow_config_change)
    print(f"checkpoint: {path}")


def register_fit(subparsers) -> None:
    p = subparsers.add_parser("fit", help="train the estimator (weakly supervised by LR depth)")
    p.add_argument("--config", help="YAML config (default: the packaged default.yaml)")
    p.add_argument("--data", nargs="+", help="data paths (PATH or PATH@START:STOP); bags are extracted to a cache")
    p.add_argument("--out", type=Path, default=Path("runs/fit"))
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt (same config and data)")
    p.add_argument("--allow-config-change", action="store_true",
                   help="with --resume: continue a checkpoint trained with another config or data anyway")
    p.add_argument("overrides", nargs="*", help="section.key=value, e.g. train.steps=200 loss.w_affinity=0")
    p.set_defaults(func=run_fit)


def one_line(error: BaseException) -> str:
    """An error as one line: multi-line messages (backend lists, YAML marks) joined with '; '."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if any(line.startswith("Original Traceback") for line in lines):  # re-raised from a DataLoader worker
        lines = lines[-1:]
    return "; ".join(lines) or type(error).__name__


def interrupted(args: argparse.Namespace) -> str:
    """What a command stopped by Ctrl-C leaves behind, and how to continue."""
    if args.command == "extract":
        index = Path(args.out) / "index.csv"
        rows = max(0, len(index.read_text().splitlines()) - 1) if index.exists() else 0
        return f"{rows} frames in {args.out} are kept; rerun the same command to continue"
    if args.command == "fit":
        checkpoint = Path(args.out) / "checkpoint.pt"
        if checkpoint.exists():
            return f"the last checkpoint {checkpoint} is kept; rerun with --resume to continue from it"
        return "no checkpoint was written yet; rerun to start again"
    return "nothing was written; rerun to start again"


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    """The parser with the command named in ``argv`` fully registered (its module imported) and the others listed."""
    parser = argparse.ArgumentParser(prog="depth-train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    subparsers = parser.add_subparsers(dest="command", required=True)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_text) in COMMANDS.items():
        if name != chosen:
            subparsers.add_parser(name, help=help_text, add_help=False)
        elif not module:
            register_fit(subparsers)
        else:
            try:
                importlib.import_module(module, __package__).register(subparsers)
            except ImportError as error:
                print(f"depth-train {name}: error: {error} (the training tools need `pip install -e .[train,onnx]`)",
                      file=sys.stderr)
                raise SystemExit(2) from error
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    try:
        args.func(args)
    except KeyboardInterrupt:
        print(f"\ndepth-train {args.command}: interrupted; {interrupted(args)}", file=sys.stderr)
        raise SystemExit(130) from None
    except (OSError, ValueError, ImportError, RuntimeError) as error:  # user errors; bugs keep their traceback
        print(f"depth-train {args.command}: error: {one_line(error)}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
