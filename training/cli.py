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

    cfg = load_config(args.config, args.overrides)
    if not args.data:
        raise SystemExit("fit needs --data PATH (a 7-Scenes or TUM folder, an extracted set, or a rosbag2 log)")
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="depth-train", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    register_fit(subparsers)
    for module in (evaluate, export, engine, extract, sample_bag):
        module.register(subparsers)
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (FileNotFoundError, ValueError, ImportError, RuntimeError) as error:
        print(f"depth-train {args.command}: error: {error}", file=sys.stderr)
        raise SystemExit(2) from error


if __name__ == "__main__":
    main()
