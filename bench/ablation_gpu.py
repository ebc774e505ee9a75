"""Issue 10's whole protocol in one command on a lent GPU: recipe choices on validation, the x4 and x8 test tables and
the shipped model, each (row, seed) in its own process so a few dozen small runs share the GPU.

Stage A, validation (frames 420-479), x4, ``--steps`` S, 3 seeds: ``full`` with the default recipe, the same with one
change each (RECIPE_CHANGES), and ``full-long`` (the default recipe at ``--long`` steps). The rules, fixed before any
run: adopt the one change whose paired 95% interval against ``full`` lies wholly below 0, the largest gain if several
do, none if none does; the shipped model trains for the long budget if ``full-long``'s interval lies wholly below 0,
else for S.

Stage B, test (frames 500-599, read once): every ablation row at x4 and x8 with the adopted recipe, 3 seeds, S steps;
the shipped model (adopted recipe, frames 0-599, seed 0, the chosen budget) and, at the long budget, the same recipe
trained on 0-399 so its test figures can stand beside the shipped model. A run equal in config to one of stage A is
that run (linked, not retrained).

Past ``--deadline`` seconds no run starts and running ones are stopped; summaries hold the seeds that finished and say
which did not; the short-budget shipped model is never cancelled, so one shippable model exists even when the long
one cannot finish. Writes to ``--out`` results.tar.gz and the checkpoints that fit (see ``package``).

    python bench/device_payload.py unpack .payload /tmp/work
    PYTHONPATH=/tmp/work/site:. python bench/ablation_gpu.py --data /tmp/work/redkitchen --work /tmp/work --out $OUT
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

RECIPE_CHANGES = {
    "full-frames": "data.full_frame_fraction=0.25",  # a quarter of the batches are whole 640x480 frames, as deployed
    "full-jitter": "data.scale_jitter=0.25",  # zoom in [0.8, 1.25] with depths divided by the zoom
    "full-enc1": "train.encoder_lr_scale=1.0",  # the encoder learns as fast as the decoder
    "full-enc0.2": "train.encoder_lr_scale=0.2",  # ... or slower
}
ROWS = ("lr-only", "+hr", "+cons", "full", "hr-oracle")
COMMON = ["data.cache_frames=true", "train.log_every=50"]  # neither changes a result (checkpoint.RESULT_NEUTRAL)


class Jobs:
    """A queue of commands run at most ``parallel`` at a time, each logging to its own file; past the deadline none
    starts and running ones are stopped."""

    def __init__(self, parallel: int, deadline: float, logs: Path) -> None:
        self.parallel, self.deadline, self.logs = parallel, deadline, logs
        logs.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "TQDM_MININTERVAL": "10"}
        self.waiting: list[tuple[str, list[str]]] = []
        self.running: dict[str, subprocess.Popen] = {}
        self.codes: dict[str, int | None] = {}  # exit code, None when stopped or never started
        self.cancelled: set[str] = set()

    def submit(self, jobs: list[tuple[str, list[str]]]) -> None:
        self.waiting += jobs

    def cancel(self, name: str) -> None:
        """Drop a job that is no longer needed, waiting or running."""
        self.waiting = [job for job in self.waiting if job[0] != name]
        if name in self.running:
            self.running.pop(name).kill()
            print(f"[{elapsed():5.0f}s] cancelled {name}", flush=True)
        self.codes[name] = None
        self.cancelled.add(name)

    def wait(self, names: list[str] | None = None) -> None:
        """Run the queue until the named jobs (all, by default) have ended."""
        def pending() -> bool:
            open_ = [n for n, _ in self.waiting] + list(self.running)
            return any(n in open_ for n in names) if names is not None else bool(open_)

        while pending():
            while self.waiting and len(self.running) < self.parallel and time.time() < self.deadline:
                name, command = self.waiting.pop(0)
                log = (self.logs / f"{name}.log").open("w")
                self.running[name] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=self.env)
                print(f"[{elapsed():5.0f}s] start {name}", flush=True)
            for name, process in list(self.running.items()):
                if process.poll() is not None:
                    self.codes[name] = process.returncode
                    del self.running[name]
                    print(f"[{elapsed():5.0f}s] done  {name} (exit {process.returncode})", flush=True)
            if time.time() >= self.deadline:
                for name in list(self.running) + [n for n, _ in self.waiting]:
                    print(f"[{elapsed():5.0f}s] stopped at the deadline: {name}", flush=True)
                    if name in self.running:
                        self.running.pop(name).kill()
                    self.codes[name] = None
                self.waiting = []
                return
            time.sleep(1)


START = time.time()


def elapsed() -> float:
    return time.time() - START


def ablation(args, factor: int, split: str, out: Path, rows: list[str], extra: dict[str, str], seeds: list[int],
             recipe: list[str], summary: bool, baseline: str = "full") -> list[str]:
    """A bench/ablation.py command: one (row, seed) job when ``summary`` is False, else the summary of finished runs."""
    command = [sys.executable, "bench/ablation.py", "--data", str(args.data), "--factor", str(factor),
               "--steps", str(args.steps), "--split", split, "--out", str(out), "--seeds", *map(str, seeds),
               "--rows", *rows, "--baseline", baseline, "--set", *COMMON, *recipe]
    for name, overrides in extra.items():
        command += ["--row", f"{name}={overrides}"]
    return command + (["--no-train"] if summary else ["--no-summary"])


def interval_below_zero(comparison: dict | None) -> bool:
    return bool(comparison) and comparison["high"] < 0


def choose(summary: dict) -> tuple[str, list[str], bool]:
    """The declared rules: (winning row, its recipe overrides, whether the long budget wins)."""
    comparisons = summary["comparisons"]
    gains = {name: comparisons[f"{name} vs full"]["mean"] for name in RECIPE_CHANGES
             if interval_below_zero(comparisons.get(f"{name} vs full"))}
    winner = min(gains, key=gains.get) if gains else "full"
    recipe = [RECIPE_CHANGES[winner]] if winner in RECIPE_CHANGES else []
    return winner, recipe, interval_below_zero(comparisons.get("full-long vs full"))


def link(target: Path, name: Path) -> None:
    """Make ``name`` the run folder ``target`` (same config: the run is shared, not retrained)."""
    name.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and not name.exists():
        name.symlink_to(os.path.relpath(target, name.parent))


def deployable(checkpoint: Path, out: Path, budget: float) -> list[Path]:
    """A finished run's model, config, step and meta (14 MB); an unfinished one whole, in 15 MB parts, to resume;
    nothing when that does not fit in ``budget`` bytes."""
    import torch

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if state["step"] >= state["config"]["train"]["steps"]:
        if budget < 14.5e6:
            return []
        torch.save({k: state[k] for k in ("model", "config", "step", "meta")}, out)
        return [out]
    data, part = checkpoint.read_bytes(), 15 * 2**20
    if len(data) >= budget:
        return []
    paths = [out.with_name(f"{out.name}.part{i // part}") for i in range(0, len(data), part)]
    for path, i in zip(paths, range(0, len(data), part)):
        path.write_bytes(data[i:i + part])
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--long", type=int, default=3000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--parallel", type=int, default=18)
    parser.add_argument("--deadline", type=float, default=480, help="seconds from start after which no run goes on")
    parser.add_argument("--set", nargs="*", default=[], help="overrides for every run (e.g. a short smoke test)")
    parser.add_argument("--tables-only", nargs="+", metavar="ROW", choices=ROWS,
                        help="after an earlier run chose the recipe: only train and test these rows at --factor "
                             "(default recipe), e.g. when the lease ran out before stage B; also runs on a CPU "
                             "(--parallel 2 on two cores)")
    parser.add_argument("--factor", type=int, choices=(4, 8), default=4, help="the factor of --tables-only")
    args = parser.parse_args()
    COMMON.extend(args.set)
    results = args.work / "results"
    if results.exists():
        raise SystemExit(f"{results} exists: start from an empty --work")
    jobs = Jobs(args.parallel, START + args.deadline, results / "logs")
    decisions: dict = {"steps": args.steps, "long": args.long, "seeds": args.seeds, "changes": RECIPE_CHANGES}
    ship_steps = args.steps

    try:
        ship_steps = run_tables(args, jobs, results) if args.tables_only else run_protocol(args, jobs, results,
                                                                                            decisions)
    finally:  # whatever finished comes back, also when a step above failed
        (results / "decisions.json").write_text(json.dumps(decisions, indent=2))
        package(args, results, decisions.get("ship_steps", args.steps))
    print(f"[{elapsed():5.0f}s] finished (shipped budget {ship_steps})", flush=True)


def run_protocol(args, jobs: Jobs, results: Path, decisions: dict) -> int:
    """Stages A and B and the test summaries; returns the shipped model's budget."""
    seeds, recipe_dir, x4, x8 = args.seeds, results / "recipe_x4", results / "ablation_x4", results / "ablation_x8"
    long_row = {"full-long": f"loss.w_cons=0.5,loss.w_affinity=1,train.steps={args.long}"}

    # Stage A: the recipe and the budget, on validation; the long runs go first and run on into stage B.
    extra = {name: f"loss.w_cons=0.5,loss.w_affinity=1,{change}" for name, change in RECIPE_CHANGES.items()} | long_row
    stage_a = {row: [(f"A_{row}_s{s}", ablation(args, 4, "val", recipe_dir, [row] if row == "full" else [],
                                                {} if row == "full" else {row: extra[row]}, [s], [], False))
                     for s in seeds] for row in ["full-long", "full", *RECIPE_CHANGES]}
    for row_jobs in stage_a.values():
        jobs.submit(row_jobs)
    jobs.wait([name for row, row_jobs in stage_a.items() if row != "full-long" for name, _ in row_jobs])
    subprocess.run(ablation(args, 4, "val", recipe_dir, ["full"], extra, seeds, [], True), check=True)
    winner, recipe, _ = choose(json.loads((recipe_dir / "summary_val.json").read_text()))
    decisions.update(winner=winner, recipe=recipe)
    print(f"[{elapsed():5.0f}s] recipe chosen on validation: {winner} {recipe}", flush=True)

    # Stage B: the test tables with the adopted recipe, and both budgets of the shipped model (and of its 0-399 twin
    # when the recipe changed) started at once; the budget rule cancels the losers when full-long has finished.
    for s in seeds:
        link(recipe_dir / winner / f"seed{s}", x4 / "full" / f"seed{s}")
        if not recipe:
            link(recipe_dir / "full-long" / f"seed{s}", x4 / "full-long" / f"seed{s}")
    shipped = {steps: (f"B_shipped_{steps}", [
        sys.executable, "-m", "depth_node_training.cli", "fit", "--data", f"{args.data}@0:600", "--out",
        str(results / f"shipped_{steps}"), *COMMON, *recipe, f"train.steps={steps}", "train.seed=0"])
        for steps in (args.long, args.steps)}
    twins = [(f"B_x4_full-long_s{s}", ablation(args, 4, "test", x4, [], long_row, [s], recipe, False)) for s in seeds]
    jobs.submit([shipped[args.long], *(twins if recipe else [])])
    jobs.submit([(f"B_x4_{row}_s{s}", ablation(args, 4, "test", x4, [row], {}, [s], recipe, False))
                 for s in seeds for row in ROWS])
    jobs.submit([shipped[args.steps]] + [(f"B_x8_{row}_s{s}", ablation(args, 8, "test", x8, [row], {}, [s], recipe,
                                                                       False)) for s in seeds for row in ROWS])
    jobs.wait([name for name, _ in stage_a["full-long"]])
    subprocess.run(ablation(args, 4, "val", recipe_dir, ["full"], extra, seeds, [], True), check=True)
    long_wins = choose(json.loads((recipe_dir / "summary_val.json").read_text()))[2]
    ship_steps = args.long if long_wins else args.steps
    decisions.update(long_wins=long_wins, ship_steps=ship_steps)
    print(f"[{elapsed():5.0f}s] shipped budget chosen on validation: {ship_steps} steps", flush=True)
    if not long_wins:  # the short candidate is never cancelled: it is the fallback if the long one cannot finish
        for name, _ in [shipped[args.long], *twins]:
            jobs.cancel(name)
    elif not recipe:  # the twins are stage A's full-long runs: only their test evaluation is left
        jobs.submit(twins)
    jobs.wait()
    decisions["unfinished"] = sorted(name for name, code in jobs.codes.items()
                                     if code != 0 and name not in jobs.cancelled)

    summaries = [subprocess.Popen(ablation(args, factor, "test", out, [*ROWS, "upsampled-lr"],
                                           long_row if (long_wins and factor == 4) else {}, seeds, recipe, True))
                 for factor, out in ((4, x4), (8, x8))]
    for summary in summaries:
        try:
            summary.wait(timeout=max(10.0, START + args.deadline + 60 - time.time()))
        except subprocess.TimeoutExpired:
            summary.kill()
            print(f"[{elapsed():5.0f}s] a summary did not finish in time", flush=True)
    return ship_steps


def run_tables(args, jobs: Jobs, results: Path) -> int:
    """Only the test rows named by ``--tables-only`` at ``--factor`` with the default recipe, then their summary."""
    out = results / f"ablation_x{args.factor}"
    jobs.submit([(f"B_x{args.factor}_{row}_s{s}", ablation(args, args.factor, "test", out, [row], {}, [s], [], False))
                 for s in args.seeds for row in args.tables_only])
    jobs.wait()
    rows = [*args.tables_only, *(["upsampled-lr"] if "lr-only" in args.tables_only else [])]
    subprocess.run(ablation(args, args.factor, "test", out, rows, {}, args.seeds, [], True), check=False)
    return args.steps


def package(args, results: Path, ship_steps: int) -> None:
    """The results as the lending tool returns them (at most 8 files of 16 MB, 64 MB in all): summaries, logs and CSVs
    with the x4 test previews of seed 0 only (about 1 MB each), then in this order while they fit in 60 MB: the chosen
    shipped model (whole, in parts, if it did not finish), the short-budget one, and x4 full seed 0."""
    args.out.mkdir(parents=True, exist_ok=True)

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        name = info.name
        if name.endswith((".pt", ".tmp")):
            return None
        if "previews_" in name and not ("ablation_x4" in name and "seed0" in name and "previews_test" in name):
            return None
        return info

    with tarfile.open(args.out / "results.tar.gz", "w:gz") as tar:
        tar.add(results, arcname="results", filter=keep)
    candidates = [(results / f"shipped_{ship_steps}", f"shipped_{ship_steps}.pt"),
                  (results / f"shipped_{args.steps}", f"shipped_{args.steps}.pt"),
                  (results / "ablation_x4" / "full" / "seed0", "full_x4_seed0.pt")]
    for run, name in candidates:
        checkpoint, budget = run / "checkpoint.pt", 60e6 - sum(p.stat().st_size for p in args.out.iterdir())
        if not checkpoint.exists() or (args.out / name).exists():
            continue
        paths = deployable(checkpoint, args.out / name, budget)
        print(f"[{elapsed():5.0f}s] packed {', '.join(p.name for p in paths) or f'nothing of {run} (no room)'}",
              flush=True)


if __name__ == "__main__":
    main()
