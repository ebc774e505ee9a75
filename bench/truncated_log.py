"""A robot log cut short: ``extract`` on a copy of the real MCAP bag truncated at a fraction of its bytes (a recorder
that lost power: no summary, no footer, no metadata.yaml), against the intact bag.

Oracle, independent of the salvaging reader: every message of the intact bag (read by rosbags) is located in the
intact file's bytes; it is complete before the cut when its serialised bytes end at or before the cut. A pair of the
intact extraction is "before the cut" when its color image, depth image and both CameraInfo messages are.

    python bench/truncated_log.py --bag ../shared/data/bags/redkitchen_tof_x4 --fraction 0.5 \
        --work /tmp/truncated_log --out bench/results/truncated_log.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import time
from pathlib import Path

from depth_node_training.logs.bag_reader import IMAGE, stamp_ns
from depth_node_training.logs.extract import extract
from rosbags.highlevel import AnyReader
from rosbags.typesys import Stores, get_typestore

CHUNK_SLACK = 2 << 20  # search a message's bytes from a little before the previous one's (chunks are 1 MiB)


def message_ends(bag: Path, mcap: Path) -> tuple[dict[str, dict[int, int]], list[int]]:
    """{topic: {header stamp: end offset in the file}} for stamped topics, and every message's end offset."""
    data = mcap.read_bytes()
    per_topic: dict[str, dict[int, int]] = {}
    ends, last = [], 0
    with AnyReader([bag], default_typestore=get_typestore(Stores.LATEST)) as reader:
        for connection, _, raw in reader.messages():
            raw = bytes(raw)
            at = data.find(raw, max(0, last - CHUNK_SLACK))
            at = at if at >= 0 else data.find(raw)
            assert at >= 0, f"message of {connection.topic} not found in {mcap}"
            last = at
            ends.append(at + len(raw))
            if connection.msgtype in (IMAGE, "sensor_msgs/msg/CompressedImage", "sensor_msgs/msg/CameraInfo"):
                msg = reader.deserialize(raw, connection.msgtype)
                per_topic.setdefault(connection.topic, {})[stamp_ns(msg)] = at + len(raw)
    return per_topic, ends


def run_extract(bags: list[Path], out: Path) -> tuple[dict, float]:
    """A fresh extraction (not a resumed one) and its wall time."""
    shutil.rmtree(out, ignore_errors=True)
    start = time.time()
    summary = extract(bags, out, progress=False)
    return summary, time.time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bag", type=Path, default=Path("../shared/data/bags/redkitchen_tof_x4"))
    parser.add_argument("--fraction", type=float, default=0.5)
    parser.add_argument("--work", type=Path, default=Path("/tmp/truncated_log"), help="outside the repository")
    parser.add_argument("--out", type=Path, default=Path("bench/results/truncated_log.json"))
    args = parser.parse_args()

    mcap = next(args.bag.glob("*.mcap"))
    data = mcap.read_bytes()
    cut = int(len(data) * args.fraction)
    cut_bag = args.work / "cut"  # a directory with the storage file only, as a recorder that lost power leaves it
    cut_bag.mkdir(parents=True, exist_ok=True)
    (cut_bag / mcap.name).write_bytes(data[:cut])
    del data

    intact, intact_seconds = run_extract([args.bag], args.work / "intact")
    recovered, cut_seconds = run_extract([cut_bag], args.work / "recovered")
    per_topic, ends = message_ends(args.bag, mcap)
    topics = intact["bags"][0]["topics"]
    with open(args.work / "intact" / "index.csv", newline="") as f:
        rows = list(csv.DictReader(f))

    def before_cut(topic: str, stamp: int) -> bool:
        return per_topic[topic].get(stamp, cut + 1) <= cut

    expected = sum(before_cut(topics["color"], int(r["stamp_ns"])) and before_cut(topics["color_info"],
                                                                                   int(r["stamp_ns"]))
                   and before_cut(topics["depth"], int(r["depth_stamp_ns"]))
                   and before_cut(topics["depth_info"], int(r["depth_stamp_ns"])) for r in rows)
    entry = recovered["bags"][0]
    result = {
        "bag": str(args.bag), "bytes": mcap.stat().st_size, "cut_at_bytes": cut, "fraction": args.fraction,
        "messages_intact": len(ends), "messages_complete_before_cut": sum(e <= cut for e in ends),
        "messages_recovered": entry["messages_read"], "pairs_intact": intact["pairs"],
        "pairs_intact_before_cut": expected, "pairs_recovered": recovered["pairs"], "damage": entry["truncated"],
        "extract_seconds_intact": round(intact_seconds, 1), "extract_seconds_cut": round(cut_seconds, 1),
        "machine": f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPU cores",
    }
    print("| log | messages | pairs | extract s |")
    print("| --- | --- | --- | --- |")
    print(f"| intact ({result['bytes']} B) | {result['messages_intact']} | {result['pairs_intact']} | "
          f"{result['extract_seconds_intact']} |")
    print(f"| cut at {args.fraction:.0%}: complete before the cut (oracle) | "
          f"{result['messages_complete_before_cut']} | {expected} | |")
    print(f"| cut at {args.fraction:.0%}: recovered by extract | {result['messages_recovered']} | "
          f"{result['pairs_recovered']} | {result['extract_seconds_cut']} |")
    print(f"damage: {'; '.join(entry['truncated'] or ['none'])}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
