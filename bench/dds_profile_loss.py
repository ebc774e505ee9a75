"""Depth images late or lost between the node and a viewer in another process, with and without the node's Fast DDS
profile (config/fastdds_large_outputs.xml, which its main sets): ``bench/node_overhead.py`` run in turns.

The loss needs a loaded machine (a viewer slow to read); run it beside other work and record the load average:

    python bench/dds_profile_loss.py --repeats 2 --out bench/results/dds_profile_loss.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
ARMS = {"packaged profile": "auto", "Fast DDS defaults": ""}  # node_overhead.py --dds-profile


def one_run(profile: str, frames: int, workdir: Path, index: int) -> dict:
    """node_overhead.py once: its three configurations' depth-image counts and delays."""
    out = workdir / f"run{index}.json"
    env = {k: v for k, v in os.environ.items() if k != "FASTDDS_DEFAULT_PROFILES_FILE"}
    command = [sys.executable, str(HERE / "node_overhead.py"), "--frames", str(frames), "--repeats", "10",
               "--dds-profile", profile, "--out", str(out)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)  # the node's log: kept only on failure
    if done.returncode:
        raise SystemExit(f"node_overhead.py failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    result = json.loads(out.read_text())
    return {"load_average": [result["machine"]["load_average_before"][0], result["machine"]["load_average_after"][0]],
            "runs": [{key: run[key] for key in ("input", "decimation", "sent", "lost", "lost_frames", "no_cloud",
                                                "depth_image_delay", "depth_images_after_1s")}
                     for run in result["runs"]]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=2, help="runs of node_overhead.py per arm, taken in turns")
    p.add_argument("--frames", type=int, default=40, help="frames per configuration of each run")
    p.add_argument("--out", type=Path, default=HERE / "results" / "dds_profile_loss.json")
    args = p.parse_args()
    results: dict[str, list[dict]] = {arm: [] for arm in ARMS}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for i, (arm, profile) in enumerate(ARMS.items()):
                print(f"run {repeat + 1}/{args.repeats}: {arm}", flush=True)
                results[arm].append(one_run(profile, args.frames, Path(tmp), 2 * repeat + i))
    table = {}
    for arm, runs in results.items():
        configs = [config for run in runs for config in run["runs"]]
        table[arm] = {"depth_images_sent": sum(c["sent"] for c in configs),
                      "lost": sum(c["lost"] for c in configs),
                      "over_1s_late": sum(c["depth_images_after_1s"] for c in configs),
                      "worst_p90_ms": max(c["depth_image_delay"]["p90_ms"] for c in configs),
                      "max_delay_ms": max(c["depth_image_delay"]["max_ms"] for c in configs),
                      "load_average": [run["load_average"] for run in runs]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"table": table, "runs": results}, indent=2))
    print(f"\n{'node process':18s} {'depth images':>12s} {'lost':>5s} {'>1 s late':>9s} {'worst p90 ms':>12s} "
          f"{'max ms':>7s}  load average")
    for arm, row in table.items():
        loads = ", ".join(f"{a:.1f}->{b:.1f}" for a, b in row["load_average"])
        print(f"{arm:18s} {row['depth_images_sent']:12d} {row['lost']:5d} {row['over_1s_late']:9d} "
              f"{row['worst_p90_ms']:12.0f} {row['max_delay_ms']:7.0f}  {loads}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
