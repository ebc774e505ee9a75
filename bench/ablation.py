"""Ablation of the weak-supervision losses on real data: every row, several seeds, paired intervals.

Protocol (issue 10): three disjoint blocks of a 7-Scenes sequence by time. Train on 0-399, choose everything on the
validation block 420-479 (``--split val``), report on the test block 500-599 (``--split test``), read once per final
configuration. The LR supervision is the HR ground truth reduced by ``--factor`` with ``down``; evaluation is against
the full-resolution ground truth. Every row gets the same budget; each (row, seed) is trained once and kept, each
evaluation is kept, so a rerun continues where the last one stopped.

    python bench/ablation.py --factor 4 --steps 400 --split val --rows +cons full \
        --row full-completion=loss.w_affinity=1,loss.teacher=completion --out bench/results/ablation_x4
    python bench/ablation.py --factor 4 --steps 400 --split test --out bench/results/ablation_x4

Writes ``OUT/summary.json`` (test) or ``OUT/summary_val.json``: per row the mean and std over seeds of each metric,
per-20-frame blocks, and for each step of the ablation a paired comparison (AbsRel difference, moving-block bootstrap
over frames and seeds, 95% interval); prints the table.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import re
import time
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np
import torch
from depth_node_training.config import load_config
from depth_node_training.evaluation.evaluate import evaluate_frames, torch_predictor
from depth_node_training.evaluation.metrics import METRICS, PART_METRICS, nan_mean
from depth_node_training.evaluation.statistics import block_means, paired_bootstrap, paired_t_interval
from depth_node_training.learning.checkpoint import config_changes, load_model
from depth_node_training.learning.datasets import open_frames
from depth_node_training.learning.train import fit

from depth_node.network.checkpoint import read_checkpoint
from depth_node.network.reduce import lr_size

ROWS = {
    "lr-only": ["loss.w_hr=0", "loss.w_cons=0", "loss.w_affinity=0"],
    "+hr": ["loss.w_cons=0", "loss.w_affinity=0"],
    "+cons": ["loss.w_cons=0.5", "loss.w_affinity=0"],
    "full": ["loss.w_cons=0.5", "loss.w_affinity=1"],  # all four terms, whatever the default objective is
    "hr-oracle": ["loss.supervision=hr", "loss.w_affinity=0"],
    "upsampled-lr": None,  # the lr-only networks at the LR resolution they were trained at, bicubic up
}
COMPARISONS = (("+hr", "lr-only"), ("+cons", "+hr"), ("full", "+cons"), ("full", "upsampled-lr"))
# early: a second validation fold, the block before the training frames (trained on 80-479 for it, --train-frames)
SPLITS = {"val": "420:480", "test": "500:600", "early": "0:60"}


def default_row() -> str:
    """The row whose objective is the default config's (the first in ROWS order whose overrides change nothing)."""
    default = load_config(None, [])
    return next(name for name, overrides in ROWS.items() if overrides is not None
                and load_config(None, overrides).loss == default.loss)


def upsampled_lr_predictor(model: torch.nn.Module, mean, std, factor: float):
    """The lr-only model at the LR resolution it was trained at, bicubically upsampled to the input size."""
    full = torch_predictor(model, mean, std)

    def predict(rgb: np.ndarray) -> np.ndarray:
        h, w = lr_size(*rgb.shape[:2], factor)
        small = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
        return cv2.resize(full(small), (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_CUBIC)

    return predict


def run_folder(args, name: str, seed: int) -> Path:
    """Where a (row, seed) is trained and kept: OUT/ROW/seedN, or under the row's ``--reuse`` folder (the same recipe's
    runs made for another table, so that both tables pair the very same networks)."""
    return Path(args.reuse.get(name, args.out / name)) / f"seed{seed}"


def train_row(args, name: str, overrides: list[str], seed: int) -> Path | None:
    """Train one (row, seed) unless its final checkpoint exists; returns the run folder (None when ``--no-train``
    finds it unfinished)."""
    run = run_folder(args, name, seed)
    ckpt = run / "checkpoint.pt"
    common = [f"data.factor={args.factor}", f"model.factor={args.factor}", f"train.steps={args.steps}",
              f"train.seed={seed}", *args.set]
    cfg = load_config(None, common + overrides)
    if ckpt.exists():
        state = read_checkpoint(ckpt)
        changes = config_changes(state["config"], cfg)
        if changes:  # a kept run of another recipe (e.g. the defaults changed since) must not pass for this row
            raise SystemExit(f"{ckpt}: trained with another config ({'; '.join(changes)}); move it away or rename "
                             "the row")
        if state["step"] >= cfg.train.steps:
            return run
    if args.no_train:
        if logged_steps(run) >= cfg.train.steps:  # trained elsewhere (a lent GPU): its kept evaluations are used
            return run
        print(f"{name} seed {seed}: not trained to {cfg.train.steps} steps, left out of the summary")
        return None
    start = time.time()
    fit(cfg, [f"{args.data}@{args.train_frames}"], run, resume=True)
    (run / "wall.json").write_text(json.dumps({"train_seconds": round(time.time() - start, 1)}))
    return run


def logged_steps(run: Path) -> int:
    """The last step in a run's training log (0 without one)."""
    rows = (run / "log.csv").read_text().split() if (run / "log.csv").exists() else []
    return int(rows[-1].split(",")[0]) if len(rows) > 1 else 0


def evaluate_row(args, name: str, seed: int, run: Path, frames) -> list[dict] | None:
    """Per-frame metrics of one (row, seed) on the split, cached in the run folder (None when neither the evaluation
    nor the checkpoint to make it was kept)."""
    path = run_folder(args, name, seed) / f"eval_{args.split}.csv"  # upsampled-lr: its own folder, lr-only's run
    if not path.exists() and not (run / "checkpoint.pt").exists():
        print(f"{name} {run.name}: no kept {args.split} evaluation and no checkpoint, left out of the summary")
        return None
    if not path.exists():
        model, cfg, _ = load_model(run / "checkpoint.pt", "cuda" if torch.cuda.is_available() else "cpu")
        predict = (upsampled_lr_predictor(model, cfg.model.mean, cfg.model.std, args.factor) if name == "upsampled-lr"
                   else torch_predictor(model, cfg.model.mean, cfg.model.std))
        evaluate_frames(predict, frames, cfg.data.min_depth, cfg.data.max_depth, csv_path=path,
                        previews_dir=path.parent / f"previews_{args.split}", previews=4, desc=f"{name} {run.name}",
                        data=cfg.data)
    return read_eval(path)


def read_eval(path: Path) -> list[dict]:
    """Per-frame metrics of one kept evaluation CSV; a damaged one stops the summary with its name."""
    with path.open() as f:
        try:
            return [{k: (v if k == "frame" else float(v)) for k, v in row.items()} for row in csv.DictReader(f)]
        except (TypeError, ValueError) as error:
            raise SystemExit(f"{path}: not a per-frame evaluation CSV ({error}); remove it to evaluate again") from None


def summarise(per_seed: dict[int, list[dict]]) -> dict:
    """Mean and std over seeds of each seed's mean metric, and per-20-frame AbsRel blocks (mean over seeds).

    PART_METRICS are NaN in frames without edge or hole pixels: a seed's mean skips them (``<metric>_frames``: how
    many frames each seed averages) and so does the mean over seeds; evaluations kept from before they existed lack
    them, and the row leaves them out unless every seed has them.
    """
    seeds = sorted(per_seed)
    parts = [m for m in PART_METRICS if all(m in per_seed[s][0] for s in seeds)]
    means = {m: np.array([np.mean([r[m] for r in per_seed[s]]) for s in seeds]) for m in METRICS}
    means.update({m: np.array([nan_mean(r[m] for r in per_seed[s]) for s in seeds]) for m in parts})
    abs_rel = np.array([[r["abs_rel"] for r in per_seed[s]] for s in seeds])
    scored = {m: v[~np.isnan(v)] for m, v in means.items()}
    row = {f"{m}_mean": nan_mean(v) for m, v in means.items()}
    row.update({f"{m}_std": float(v.std(ddof=1)) if len(v) > 1 else 0.0 if len(v) else np.nan
                for m, v in scored.items()})
    row.update({f"{m}_frames": [sum(not np.isnan(r[m]) for r in per_seed[s]) for s in seeds] for m in parts})
    row.update({"seeds": len(seeds), "seed_list": seeds, "abs_rel_per_seed": means["abs_rel"].tolist(),
                "blocks": {"size": 20, "abs_rel": block_means(abs_rel.mean(0))}})
    return row


def paired(a: dict, b: dict, metric: str) -> dict | None:
    """Paired difference a - b of one metric over the seeds both rows have: moving-block bootstrap over frames and
    seeds, and (the bootstrap is narrow with few seeds) the t-interval over per-seed means beside it. Frames where
    the metric is undefined in any run (a part metric without such pixels) are left out of both; None without two."""
    shared = sorted(set(a["seed_list"]) & set(b["seed_list"]))
    values = [np.array([[r[metric] for r in row["_frames"][s]] for s in shared]) for row in (a, b)]
    kept = ~np.isnan(values[0]).any(0) & ~np.isnan(values[1]).any(0)
    if kept.sum() < 2:
        return None
    values = [v[:, kept] for v in values]
    comparison = {"metric": metric, **paired_bootstrap(*values)}
    if len(shared) > 1:
        comparison["t_interval"] = paired_t_interval(*(v.mean(1) for v in values))
    return comparison


def compare(a: dict, b: dict) -> dict | None:
    """The AbsRel comparison of two summarised rows (with their ``_frames``), the part metrics both have under
    ``parts``."""
    comparison = paired(a, b, "abs_rel")
    parts = {m: c for m in PART_METRICS if f"{m}_mean" in a and f"{m}_mean" in b and (c := paired(a, b, m))}
    if comparison is not None and parts:
        comparison["parts"] = parts
    return comparison


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/redkitchen")
    parser.add_argument("--factor", type=float, default=4.0)
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--train-frames", default="0:400")
    parser.add_argument("--split", choices=sorted(SPLITS), default="val",
                        help="val (420-479): every choice; test (500-599): read once per final configuration; early "
                             "(0-59): a second validation fold, with --train-frames 80:480")
    parser.add_argument("--rows", nargs="*", default=list(ROWS))
    parser.add_argument("--row", action="append", default=[], metavar="NAME=KEY=VALUE[,KEY=VALUE]",
                        help="an extra row, e.g. full-completion=loss.w_affinity=1,loss.teacher=completion or "
                             "fd=model.arch=fastdepth,model.mean=[0,0,0] "
                             "(compared with --baseline)")
    parser.add_argument("--baseline", default="+cons", help="the row the extra --row rows are compared with")
    parser.add_argument("--compare", action="append", default=[], metavar="A:B",
                        help="one more paired comparison, row A against row B (repeatable)")
    parser.add_argument("--reuse", action="append", default=[], metavar="ROW=DIR",
                        help="the row's runs are DIR/seedN (kept runs of the same config, e.g. made for another "
                             "table); checked against the row's config like any kept run")
    parser.add_argument("--set", nargs="*", action="extend", default=[],
                        help="config overrides for every row (repeatable: each adds to the last)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/ablation_x4"))
    parser.add_argument("--summary", help="summary file name in OUT (default: summary.json for test, "
                                          "summary_val.json for val)")
    parser.add_argument("--train-only", action="store_true")
    parser.add_argument("--trained-on", help="where the runs were trained, when not here (recorded in the summary)")
    parser.add_argument("--no-summary", action="store_true", help="train and evaluate only (a driver summarises)")
    parser.add_argument("--no-train", action="store_true",
                        help="summarise the finished runs only (a parallel driver trains each (row, seed) apart)")
    args = parser.parse_args()

    if bad := [spec for spec in args.compare if spec.count(":") != 1]:
        parser.error(f"--compare {bad[0]}: expected A:B, two row names")
    if bad := [spec for spec in args.reuse if "=" not in spec]:
        parser.error(f"--reuse {bad[0]}: expected ROW=DIR")
    args.reuse = dict(spec.split("=", 1) for spec in args.reuse)
    rows = {name: ROWS[name] for name in args.rows}
    for spec in args.row:
        name, _, overrides = spec.partition("=")
        rows[name] = re.split(r",(?=\w+\.\w+=)", overrides)  # a comma starts a new key, not one inside a list
    frames = None if args.train_only else open_frames(f"{args.data}@{SPLITS[args.split]}")
    results, wall = {}, {}
    for name, overrides in rows.items():
        source, source_overrides = ("lr-only", ROWS["lr-only"]) if overrides is None else (name, overrides)
        per_seed = {}
        for seed in args.seeds:
            run = train_row(args, source, source_overrides, seed)
            if run is None:
                continue
            wall_file = run / "wall.json"
            if wall_file.exists():
                wall.setdefault(name, []).append(json.loads(wall_file.read_text())["train_seconds"])
            if frames is not None:
                rows_of_seed = evaluate_row(args, name, seed, run, frames)
                if rows_of_seed is not None:
                    per_seed[seed] = rows_of_seed
        if per_seed:
            results[name] = summarise(per_seed)
            results[name]["train_seconds_mean"] = float(np.mean(wall[name])) if name in wall else None
            results[name]["_frames"] = per_seed
    if args.train_only or args.no_summary:
        return

    comparisons, default = {}, default_row()
    extra = [(a, b) for a, _, b in (spec.partition(":") for spec in args.compare)]
    for a, b in comparison_pairs(list(rows), results.keys(), args.baseline, default, extra):
        comparisons[f"{a} vs {b}"] = compare(results[a], results[b])
    for row in results.values():
        del row["_frames"]
    report = {
        "command": "python bench/ablation.py " + " ".join(
            [f"--factor {args.factor:g}", f"--steps {args.steps}", "--seeds " + " ".join(map(str, args.seeds)),
             f"--split {args.split}", "--rows " + " ".join(args.rows), *[f"--row {r}" for r in args.row],
             *[f"--compare {c}" for c in args.compare], *[f"--reuse {r}={d}" for r, d in args.reuse.items()],
             *(["--set " + " ".join(args.set)] if args.set else []), f"--baseline {args.baseline}",
             f"--out {args.out}", *([f"--summary {args.summary}"] if args.summary else []),
             *(["--no-train"] if args.no_train else [])]),
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
                   f"torch {torch.__version__}"
                   + (f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""),
        "trained_on": args.trained_on or "this machine",
        "train_frames": args.train_frames, "eval_frames": SPLITS[args.split], "split": args.split,
        "factor": args.factor, "steps": args.steps, "rows": results, "comparisons": comparisons,
    }
    if {default, "hr-oracle", "upsampled-lr"} <= results.keys():
        score = results[default]["abs_rel_mean"]
        report["default_objective"] = default
        report["targets"] = {f"{default} <= 1.1 x hr-oracle": score <= 1.1 * results["hr-oracle"]["abs_rel_mean"],
                             f"{default} < upsampled-lr": score < results["upsampled-lr"]["abs_rel_mean"]}
    name = args.summary or ("summary.json" if args.split == "test" else f"summary_{args.split}.json")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / name).write_text(json.dumps(report, indent=2))
    print(format_report(results, comparisons))
    print(f"wrote {args.out / name}")


def comparison_pairs(rows: list[str], trained: Iterable[str], baseline: str, default: str,
                     extra: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(a, b) pairs to compare, both trained: the standard ones, every extra ``--row`` row against the baseline, and
    the ``--compare A:B`` pairs (e.g. a ``--row`` that replaces a standard row, against another baseline)."""
    done = set(trained)
    pairs = [*COMPARISONS, (default, "upsampled-lr")]
    pairs += [(name, baseline) for name in rows if name not in ROWS and name != baseline]
    return [p for p in dict.fromkeys([*pairs, *extra]) if p[0] in done and p[1] in done]


def format_report(results: dict, comparisons: dict) -> str:
    """Markdown: one row per run (mean ± std over seeds), then the paired comparisons."""
    lines = ["| run | seeds | AbsRel | RMSE | δ<1.25 | AbsRel edges | AbsRel holes | texture "
             "| AbsRel per 20-frame block |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in results.items():
        blocks = " ".join(f"{v:.3f}" for v in r["blocks"]["abs_rel"])
        parts = " | ".join(f"{r[f'{m}_mean']:.3f} ± {r[f'{m}_std']:.3f}" if f"{m}_mean" in r else "–"
                           for m in PART_METRICS)
        lines.append(f"| {name} | {r['seeds']} | {r['abs_rel_mean']:.3f} ± {r['abs_rel_std']:.3f} | "
                     f"{r['rmse_mean']:.3f} ± {r['rmse_std']:.3f} | {r['delta1_mean']:.3f} | {parts} | {blocks} |")
    lines += ["", "| comparison | Δ (AbsRel unless named) | 95% interval (block bootstrap) | excludes 0 | "
                  "95% t-interval over seeds |",
              "| --- | --- | --- | --- | --- |"]
    for name, comparison in comparisons.items():
        for c in (comparison, *comparison.get("parts", {}).values()):
            t, label = c.get("t_interval"), name if c is comparison else f"{name}, {c['metric']}"
            lines.append(f"| {label} | {c['mean']:+.4f} | [{c['low']:+.4f}, {c['high']:+.4f}] | {c['excludes_zero']} | "
                         + (f"[{t['low']:+.4f}, {t['high']:+.4f}] |" if t else "– |"))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
