"""The README's main command end to end (short): sample log -> brief training -> ONNX -> node -> recorded MCAP."""

import json
import os
import subprocess
import sys
from pathlib import Path

from rosbags.highlevel import AnyReader

DEMO = str(Path(sys.executable).parent / "depth-demo")


def test_demo_trains_runs_the_node_and_records_its_outputs(tmp_path):
    env = {**os.environ, "ROS_DOMAIN_ID": "87", "OMP_NUM_THREADS": "2"}
    result = subprocess.run([DEMO, "--out", str(tmp_path), "--frames", "8", "--steps", "2"], capture_output=True,
                            text=True, timeout=400, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["frames"]["in"] >= 7 and summary["frames"]["out"] >= 1
    assert summary["accuracy"]["frames"] >= 1 and 0 < summary["accuracy"]["abs_rel"] < 5
    with AnyReader([Path(summary["outputs"]["output_bag"])]) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
    depth_topic = next(t for t in counts if t.endswith("depth/image"))
    assert counts[depth_topic] == summary["frames"]["out"]
    assert any(t.endswith("depth/points") and n >= 1 for t, n in counts.items())
    assert all(Path(p).stat().st_size > 1000 for p in summary["outputs"]["previews"])
    assert "output rosbag2" in result.stdout
