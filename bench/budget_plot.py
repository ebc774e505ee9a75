"""Picture of the training budget: training loss against steps, and validation AbsRel against the budget.

The training loss keeps falling long after validation error stops improving (the validation block lies further along
the trajectory than the training frames), so both are drawn side by side. Reads the runs `bench/ablation.py` left:

    python bench/budget_plot.py --out bench/results/recipe_x4 --rows +hr-short=500 +hr=1000 +hr-long=3000 \
        --png docs/images/budget_val_x4.png
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="the ablation's output folder (rows/seedN inside)")
    parser.add_argument("--rows", nargs="+", required=True, metavar="NAME=STEPS")
    parser.add_argument("--split", default="val")
    parser.add_argument("--png", type=Path, required=True)
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (loss_ax, val_ax) = plt.subplots(1, 2, figsize=(11, 4))
    budgets, means = [], []
    for i, spec in enumerate(args.rows):
        name, _, steps = spec.partition("=")
        runs = sorted((args.out / name).glob("seed*"))
        scores = []
        for run in runs:
            log = read_csv(run / "log.csv")
            if len(log) >= 5:  # per-batch loss is noisy: a moving mean of 5 log entries
                smooth = np.convolve([float(r["l_hr"]) for r in log], np.ones(5) / 5, mode="valid")
                loss_ax.plot([int(r["step"]) for r in log][4:], smooth, alpha=0.6,
                             label=f"{name} ({steps} steps)" if run == runs[0] else None,
                             color=f"C{i}")
            evaluation = run / f"eval_{args.split}.csv"
            if evaluation.exists():
                scores.append(np.mean([float(r["abs_rel"]) for r in read_csv(evaluation)]))
        if not scores:
            print(f"{name}: no {args.split} evaluation in {args.out / name}, left out")
            continue
        val_ax.scatter([int(steps)] * len(scores), scores, color=f"C{i}", alpha=0.6)
        budgets.append(int(steps))
        means.append(float(np.mean(scores)))
    if not budgets:
        raise SystemExit(f"{args.out}: none of {args.rows} has a {args.split} evaluation")
    val_ax.plot(budgets, means, color="black", marker="o", label="mean over seeds")
    loss_ax.set(xlabel="step", ylabel="training l_hr (m, moving mean of 5 logs)", title="training loss")
    val_ax.set(xlabel="steps (cosine schedule over the whole budget)", ylabel=f"AbsRel on {args.split}",
               title=f"{args.split} split error", xscale="log")
    val_ax.minorticks_off()
    val_ax.set_xticks(budgets, [str(b) for b in budgets])
    for ax in (loss_ax, val_ax):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    args.png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.png, dpi=100)
    print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
