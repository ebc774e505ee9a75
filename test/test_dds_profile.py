"""config/fastdds_large_outputs.xml is a profile Fast DDS accepts and applies: a process given it sends through a 16 MB
shared-memory segment, one without it through Fast DDS's 512 KB one; the node's own main gives it to its process
however the node is started (depth_node/dds_profile.py), and leaves a user's profile alone.

The loss it prevents (depth images late or lost behind the cloud when a viewer is slow) depends on load, so it is
measured by ``bench/node_overhead.py`` (docs/benchmarks.md, section 5), not timed here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from depth_node.dds_profile import PROFILE_VARIABLE, SETTING_VARIABLE, apply_profile, packaged_profile

ROOT = Path(__file__).parents[1]
PROFILE = ROOT / "config" / "fastdds_large_outputs.xml"
SHM = Path("/dev/shm")
DOMAIN_ID = 61
PROBE = """
import os
import sys
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
import rclpy
from sensor_msgs.msg import Image
rclpy.init()
node = rclpy.create_node("profile_probe")
node.create_publisher(Image, "probe", 1)
print("ready", flush=True)
sys.stdin.readline()
"""

pytestmark = pytest.mark.skipif(not SHM.is_dir(), reason="no /dev/shm: Fast DDS's shared-memory transport is Linux's")


def segments() -> dict[str, int]:
    """Fast DDS's shared-memory segments now: name -> bytes (its ports and their locks are other files)."""
    names = [p for p in SHM.glob("fastdds_*") if "port" not in p.name and not p.name.endswith("_el")]
    return {p.name: p.stat().st_size for p in names}


def new_segment_sizes(profile: Path | None) -> list[int]:
    """Sizes of the segments a fresh process creates while it holds one participant with a publisher."""
    env = {k: v for k, v in os.environ.items() if k != "FASTDDS_DEFAULT_PROFILES_FILE"}
    env.update(ROS_DOMAIN_ID=str(DOMAIN_ID), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    if profile is not None:
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(profile)
    before = segments()
    with subprocess.Popen([sys.executable, "-c", PROBE], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          text=True) as probe:
        assert probe.stdout.readline().strip() == "ready"
        sizes = [size for name, size in segments().items() if name not in before]
        probe.stdin.write("\n")
    return sizes


def test_the_profile_gives_the_process_a_16_mb_segment_and_fast_dds_defaults_do_not() -> None:
    with_profile = new_segment_sizes(PROFILE)
    assert with_profile and max(with_profile) >= 16 * 2**20, with_profile
    without = new_segment_sizes(None)
    assert without and max(without) < 2**20, without  # the 512 KB default: the profile is what made the difference


def test_the_largest_output_of_a_640x480_frame_fits_the_segment_twice() -> None:
    text = PROFILE.read_text()
    size = int(text.split("<segment_size>")[1].split("</segment_size>")[0])
    cloud = 640 * 480 * 16  # xyzrgb float32 x 4, decimation 1
    depth = confidence = 640 * 480 * 4
    assert size >= 2 * (cloud + depth + confidence)


def test_the_node_sets_the_packaged_profile_unless_the_user_chose_one(tmp_path: Path) -> None:
    assert packaged_profile() == PROFILE.resolve()
    environ: dict[str, str] = {}
    assert apply_profile(environ)[1] and environ == {PROFILE_VARIABLE: str(PROFILE.resolve())}
    mine = tmp_path / "mine.xml"
    mine.write_text("<dds/>")
    environ = {SETTING_VARIABLE: str(mine)}
    assert apply_profile(environ)[1] and environ[PROFILE_VARIABLE] == str(mine)
    environ = {PROFILE_VARIABLE: "/etc/robot.xml"}  # the user's own wins over auto
    line, as_asked = apply_profile(environ)
    assert as_asked and environ == {PROFILE_VARIABLE: "/etc/robot.xml"} and "/etc/robot.xml" in line
    environ = {SETTING_VARIABLE: ""}  # Fast DDS's defaults
    assert apply_profile(environ)[1] and PROFILE_VARIABLE not in environ


def test_a_profile_file_that_does_not_exist_is_named_and_not_set(tmp_path: Path) -> None:
    environ = {SETTING_VARIABLE: str(tmp_path / "missing.xml")}
    line, as_asked = apply_profile(environ)
    assert not as_asked and PROFILE_VARIABLE not in environ
    assert "missing.xml" in line and "no such file" in line


def test_the_node_started_by_hand_sends_through_the_16_mb_segment() -> None:
    """``python -m depth_node.node`` (as ``ros2 run`` and ``depth-estimator`` start it), no profile in its
    environment: its own main sets the packaged one before its first participant."""
    env = {k: v for k, v in os.environ.items() if k not in (PROFILE_VARIABLE, SETTING_VARIABLE)}
    env.update(ROS_DOMAIN_ID=str(DOMAIN_ID), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    before = segments()
    node = subprocess.Popen([sys.executable, "-m", "depth_node.node", "--ros-args", "-p", "backend:=onnxruntime"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, sizes = time.monotonic() + 30.0, []
        while not sizes and node.poll() is None and time.monotonic() < deadline:
            sizes = [size for name, size in segments().items() if name not in before and size >= 16 * 2**20]
            time.sleep(0.1)
        node.send_signal(signal.SIGINT)
        log, _ = node.communicate(timeout=10.0)
    finally:
        if node.poll() is None:
            node.kill()
            node.wait()
    assert sizes, f"no 16 MB segment from the node (exit code {node.returncode}): {log[-2000:]}"
    assert f"Fast DDS profile: {PROFILE.resolve()}" in log, log[-2000:]
