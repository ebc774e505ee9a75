"""`colcon build` (PyPI colcon-common-extensions, no ROS install needed) puts everything in the standard paths."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_colcon_build_installs_standard_layout(tmp_path):
    colcon = shutil.which("colcon") or str(Path(sys.executable).parent / "colcon")
    if not Path(colcon).exists():
        pytest.skip("colcon is not installed (pip install colcon-common-extensions)")
    result = subprocess.run(
        [colcon, "build", "--base-paths", str(REPO), "--build-base", str(tmp_path / "build"),
         "--install-base", str(tmp_path / "install"), "--event-handlers", "console_direct-"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    prefix = tmp_path / "install" / "depth_node"
    share = prefix / "share" / "depth_node"
    for executable in ("estimator", "depth-estimator", "depth-train", "depth-demo"):
        assert (prefix / "lib" / "depth_node" / executable).is_file(), executable
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / "depth_node").is_file()
    assert (share / "package.xml").read_text() == (REPO / "package.xml").read_text()
    assert (share / "launch" / "estimator.launch.py").is_file()
    for name in ("estimator.yaml", "depth.rviz", "fastdds_large_outputs.xml"):
        assert (share / "config" / name).is_file(), name
    site = next((prefix / "lib").glob("python3*/site-packages"))
    assert (site / "depth_node" / "node.py").is_file()
    assert (site / "depth_node_training" / "learning" / "train.py").is_file()
    assert (site / "depth_node" / "network" / "depth_estimator.py").is_file()
    assert (site / "depth_node_training" / "configs" / "default.yaml").is_file()
    assert (site / "depth_node" / "models" / "default.pt").is_file()
    assert (site / "depth_node" / "models" / "default.confidence.json").is_file()  # the torch backend reads it
    # the node's main finds its Fast DDS profile in the installed share/, not in the source tree
    where = subprocess.run([sys.executable, "-c", "import depth_node.dds_profile as d; print(d.__file__); "
                            "print(d.packaged_profile())"], env={**os.environ, "PYTHONPATH": str(site)},
                           cwd=tmp_path, capture_output=True, text=True, timeout=60)
    module, profile = where.stdout.split()
    assert Path(module).is_relative_to(site), where.stdout + where.stderr
    assert Path(profile) == (share / "config" / "fastdds_large_outputs.xml").resolve()
