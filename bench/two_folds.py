"""Two validation folds pooled: the protocol choices use since 14:27 UTC 7 Dec (bench/results/paper_parts_x4/rule.md).

One 60-frame validation block ranked arms against the test block twice; a second fold (trained on 80-479, scored on
0-59) has the test block's seed spread. Per seed, each row's kept evaluations on both folds are pooled (60 + 60
frames, equal weight) and every comparison gets the paired intervals ``bench/ablation.py`` gives one block: the
moving-block bootstrap over frames and seeds, and the t-interval over the seeds' pooled means. Each fold's own AbsRel
comparison is kept beside it, and the declared rule is applied (``verdict``). Reads kept evaluations only (no
training, no evaluation): a seed missing from either fold or row is left out, said in one line.

    python bench/two_folds.py --fold val=RUNS --fold early=EARLY_RUNS --reuse val:+cons=KEPT_RUNS \
        --compare default-motion-far:+cons --out summary.json
    bash bench/x4_summaries.sh two-folds   # the 14:27 round: ablation_x4_early/summary_two_folds.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ablation import SPLITS, compare, format_report, paired, read_eval, summarise


def fold_runs(folds: dict[str, Path], reuse: dict[tuple[str, str], Path], row: str, seeds: list[int]
              ) -> dict[str, dict[int, list[dict]]]:
    """{fold: {seed: per-frame rows}} of one row, the seeds whose evaluation each fold kept."""
    runs = {}
    for split, out in folds.items():
        folder = reuse.get((split, row), out / row)
        paths = {s: folder / f"seed{s}" / f"eval_{split}.csv" for s in seeds}
        kept = {s: read_eval(path) for s, path in paths.items() if path.exists()}
        if missing := sorted(set(seeds) - kept.keys()):
            print(f"{row}: no kept {split} evaluation of seeds {missing} in {folder}, left out")
        runs[split] = kept
    return runs


def pooled(runs: dict[str, dict[int, list[dict]]], seeds: list[int]) -> dict[int, list[dict]]:
    """Per seed, the frames of every fold one after the other."""
    return {s: [r for split in runs for r in runs[split][s]] for s in seeds}


def with_frames(per_seed: dict[int, list[dict]]) -> dict:
    """A row as ``compare`` takes it: its summary and its per-seed frames."""
    return {**summarise(per_seed), "_frames": per_seed}


def summary_only(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "_frames"}


def verdict(pooled_comparison: dict, fold_comparisons: dict[str, dict], seeds_needed: int = 6) -> dict:
    """The declared rule: adopted only with ``seeds_needed`` seeds, the pooled bootstrap and t-interval wholly below 0
    on AbsRel, edges, holes or texture, the pooled AbsRel mean not above 0, and no fold whose AbsRel bootstrap
    interval lies wholly above 0."""
    candidates = [pooled_comparison, *pooled_comparison.get("parts", {}).values()]
    resolved = [c["metric"] for c in candidates
                if c["high"] < 0 and "t_interval" in c and c["t_interval"]["high"] < 0]
    against = [split for split, c in fold_comparisons.items() if c["low"] > 0]
    enough = pooled_comparison["seeds"] >= seeds_needed
    return {"adopt": bool(enough and resolved and pooled_comparison["mean"] <= 0 and not against),
            "seeds": pooled_comparison["seeds"], "resolved_below_0": resolved, "folds_against": against}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fold", action="append", required=True, metavar="SPLIT=DIR",
                        help="a fold (a split of bench/ablation.py) and the folder its rows' runs are kept in")
    parser.add_argument("--reuse", action="append", default=[], metavar="SPLIT:ROW=DIR",
                        help="a row of one fold kept elsewhere (the very runs another table pairs)")
    parser.add_argument("--compare", action="append", required=True, metavar="A:B", help="arm A against recipe B")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    parser.add_argument("--out", type=Path, required=True, help="the summary JSON to write")
    args = parser.parse_args()

    folds = {}
    for spec in args.fold:
        split, _, folder = spec.partition("=")
        if split not in SPLITS or not folder:
            parser.error(f"--fold {spec}: expected SPLIT=DIR with SPLIT one of {sorted(SPLITS)}")
        folds[split] = Path(folder)
    reuse = {}
    for spec in args.reuse:
        key, _, folder = spec.partition("=")
        split, _, row = key.partition(":")
        if split not in folds or not row or not folder:
            parser.error(f"--reuse {spec}: expected SPLIT:ROW=DIR with SPLIT one of the --fold splits")
        reuse[(split, row)] = Path(folder)
    pairs = [tuple(spec.split(":")) for spec in args.compare]
    if bad := [spec for spec, p in zip(args.compare, pairs) if len(p) != 2]:
        parser.error(f"--compare {bad[0]}: expected A:B, two row names")

    runs = {row: fold_runs(folds, reuse, row, args.seeds) for row in dict.fromkeys(r for p in pairs for r in p)}
    results, fold_results, comparisons = {}, {}, {}
    for a, b in pairs:
        seeds = sorted(set.intersection(*(set(runs[r][split]) for r in (a, b) for split in folds)))
        if len(seeds) < 2:
            print(f"{a} vs {b}: {len(seeds)} seed(s) on every fold, not compared")
            continue
        rows = {r: with_frames(pooled(runs[r], seeds)) for r in (a, b)}
        per_fold = {}
        for split in folds:
            one = {r: with_frames({s: runs[r][split][s] for s in seeds}) for r in (a, b)}
            per_fold[split] = paired(one[a], one[b], "abs_rel")
            fold_results.setdefault(split, {}).update({r: summary_only(one[r]) for r in (a, b)})
        comparison = compare(rows[a], rows[b])
        if comparison is None:
            print(f"{a} vs {b}: fewer than two frames scored on every run, not compared")
            continue
        comparisons[f"{a} vs {b}"] = {**comparison, "folds": per_fold, "verdict": verdict(comparison, per_fold)}
        results.update({r: summary_only(rows[r]) for r in (a, b)})

    if not comparisons:
        sys.exit("no comparison had two seeds on every fold: nothing written")
    report = {"command": "python bench/two_folds.py " + " ".join(sys.argv[1:]),
              "folds": {split: {"eval_frames": SPLITS[split], "runs": str(folder)} for split, folder in folds.items()},
              "rows": results, "fold_rows": fold_results, "comparisons": comparisons}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(format_report(results, comparisons))
    for name, c in comparisons.items():
        folds_text = "; ".join(f"{split} {f['mean']:+.4f} [{f['low']:+.4f}, {f['high']:+.4f}]"
                               for split, f in c["folds"].items())
        v = c["verdict"]
        print(f"{name}: per fold {folds_text}; resolved below 0: {', '.join(v['resolved_below_0']) or 'nothing'}; "
              f"folds against: {', '.join(v['folds_against']) or 'none'}; {v['seeds']} seeds: "
              f"{'ADOPT' if v['adopt'] else 'not adopted'}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
