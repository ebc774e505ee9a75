"""``depth-train``: fit, evaluate, export, build-engine, extract, sample-bag."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import engine, evaluate, export
from .config import load_config
from .logs import extract, sample_bag


def run_fit(args: argparse.Namespace) -> None:
    from .train import fit

    if not args.data:
        raise ValueError("fit needs --data PATH (a 7-Scenes or TUM folder, an extracted set, or a rosbag2 log)")
    cfg = load_config(args.config, args.overrides)
    path = fit(cfg, args.data, args.out, resume=args.resume)
    print(f"checkpoint: {path}")


def register_fit(subparsers) -> None:
    p = subparsers.add_parser("fit", help="train the estimator (weakly supervised by LR depth)")
    p.add_argument("--config", help="YAML config (default: the packaged default.yaml)")
    p.add_argument("--data", nargs="+", help="data paths (PATH or PATH@START:STOP); bags are extracted to a cache")
    p.add_argument("--out", type=Path, default=Path("runs/fit"))
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="depth-train", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    register_fit(subparsers)
    for module in (evaluate, export, engine, extract, sample_bag):
        module.register(subparsers)
    args = parser.parse_args(argv)
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
