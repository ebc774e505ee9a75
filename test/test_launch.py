"""The launch file is valid, declares the documented arguments, and names files and an executable that exist."""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parents[1]
LAUNCH = ROOT / "launch" / "estimator.launch.py"
RVIZ = ROOT / "config" / "depth.rviz"
REQUIRED_ARGUMENTS = {"namespace", "image", "camera_info", "compressed", "model", "backend", "params_file", "use_rviz",
                      "dds_profile", "lr_depth"}


def launch_arguments() -> dict[str, tuple[str, str]]:
    """The ARGUMENTS table of the launch file, read without importing launch (not installable from PyPI)."""
    tree = ast.parse(LAUNCH.read_text(), filename=str(LAUNCH))
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "ARGUMENTS":
            return ast.literal_eval(node.value)
    raise AssertionError("launch file has no ARGUMENTS table")


def test_launch_file_is_valid_python_with_the_documented_arguments() -> None:
    compile(LAUNCH.read_text(), str(LAUNCH), "exec")
    arguments = launch_arguments()
    assert REQUIRED_ARGUMENTS <= set(arguments)
    assert all(text for _, text in arguments.values())
    assert "def generate_launch_description()" in LAUNCH.read_text()


def test_named_files_exist_and_are_installed_to_share() -> None:
    text = LAUNCH.read_text()
    for relative in ("config/estimator.yaml", "config/depth.rviz"):
        parts = relative.split("/")
        assert f'"{parts[0]}" / "{parts[1]}"' in text
        assert (ROOT / relative).is_file()
    assert (ROOT / "config" / "fastdds_large_outputs.xml").is_file()  # the node's main finds it (test_dds_profile.py)
    setup = (ROOT / "setup.py").read_text()
    for installed in ('glob("launch/*.launch.py")', 'glob("config/*.yaml")', 'glob("config/*.rviz")',
                      'glob("config/*.xml")'):
        assert installed in setup


def test_the_executable_it_starts_is_installed() -> None:
    assert 'executable="estimator"' in LAUNCH.read_text()
    scripts = {ep.name: ep for ep in importlib.metadata.entry_points(group="console_scripts")}
    for name in ("estimator", "depth-estimator"):
        assert name in scripts, f"console script {name} is not installed (pip install -e .)"
        assert scripts[name].value == "depth_node.node:main"
    from depth_node.node import main

    assert scripts["estimator"].load() is main


def test_rviz_config_shows_color_depth_and_cloud_in_the_optical_frame() -> None:
    config = yaml.safe_load(RVIZ.read_text())["Visualization Manager"]
    displays = {d["Name"]: d for d in config["Displays"]}
    assert displays["Color"]["Class"] == displays["Depth"]["Class"] == "rviz_default_plugins/Image"
    assert displays["Points"]["Class"] == "rviz_default_plugins/PointCloud2"
    assert displays["Points"]["Color Transformer"] == "RGB8"
    assert config["Global Options"]["Fixed Frame"] == launch_arguments()["frame"][0]
    topics = {name: d["Topic"]["Value"] for name, d in displays.items() if "Topic" in d}
    assert topics == {"Color": "/image_raw", "Depth": "/depth/image", "Points": "/depth/points"}  # what launch rewrites
    assert displays["Depth"]["Topic"]["Reliability Policy"] == "Reliable"  # matches the node's reliable outputs


def test_launch_description_with_launch_ros(tmp_path: Path) -> None:
    pytest.importorskip("launch_ros", reason="launch_ros is not installed (no PyPI wheel); runs on a ROS 2 install")
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    from launch.actions import DeclareLaunchArgument

    from launch import LaunchContext

    try:
        get_package_share_directory("depth_node")
    except PackageNotFoundError:
        pytest.skip("depth_node is not in the ament index (build it with colcon and source install/setup.bash)")
    spec = importlib.util.spec_from_file_location("estimator_launch", LAUNCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    declared = {e.name for e in description.entities if isinstance(e, DeclareLaunchArgument)}
    assert REQUIRED_ARGUMENTS <= declared
    context = LaunchContext()
    values = {name: default for name, (default, _) in module.ARGUMENTS.items()}
    values.update(namespace="robot", compressed="true", use_rviz="true")
    context.launch_configurations.update(values)
    estimator, rviz = module._actions(context)
    assert (estimator.node_package, estimator.node_executable) == ("depth_node", "estimator")
    assert rviz.node_executable == "rviz2"


def test_dds_profile_reaches_the_node_as_the_variable_its_main_reads() -> None:
    from depth_node.dds_profile import SETTING_VARIABLE

    assert launch_arguments()["dds_profile"][0] == "auto"
    tree = ast.parse(LAUNCH.read_text(), filename=str(LAUNCH))
    constants = {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body
                 if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "PROFILE_SETTING"}
    assert constants == {"PROFILE_SETTING": SETTING_VARIABLE}
    assert 'additional_env={PROFILE_SETTING: arg["dds_profile"]}' in LAUNCH.read_text()


def launch_function(name: str) -> Callable:
    """One function of the launch file (with its module constants and ``_true``), run without the launch packages."""
    tree = ast.parse(LAUNCH.read_text(), filename=str(LAUNCH))
    keep = [node for node in tree.body if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "").isupper()
            or isinstance(node, ast.FunctionDef) and node.name in (name, "_true")]
    namespace: dict = {}
    exec(compile(ast.Module(body=keep, type_ignores=[]), str(LAUNCH), "exec"), namespace)
    return namespace[name]


def test_an_lr_depth_topic_turns_scale_alignment_on_and_is_remapped() -> None:
    from depth_node.params import FIELDS

    settings = launch_function("_node_settings")
    defaults = {name: default for name, (default, _) in launch_arguments().items()}
    overrides, remappings = settings(defaults)
    assert overrides == {"image_transport": "raw"} and dict(remappings).keys() == {"image_raw", "camera_info"}
    overrides, remappings = settings({**defaults, "lr_depth": "/tof/depth/image_raw", "compressed": "true"})
    assert overrides == {"image_transport": "compressed", "scale_align.enabled": True}
    assert dict(remappings)["lr_depth"] == "/tof/depth/image_raw"
    assert FIELDS["scale_align.enabled"].default is False  # the node's own default stays off
