"""Start the depth estimator (and optionally RViz) on a camera's topics.

    ros2 launch depth_node estimator.launch.py image:=/camera/color/image_raw camera_info:=/camera/color/camera_info \
        compressed:=true use_rviz:=true lr_depth:=/tof/depth/image_raw

The node's relative topics (image_raw, camera_info, lr_depth, depth/*) are remapped here as image_pipeline does;
parameters come from config/estimator.yaml (or params_file), with model/backend/transport from the arguments on top.
Given an LR depth topic (lr_depth:=), the node aligns its depth's metric scale to that sensor (scale_align.enabled):
on held-out frames AbsRel 0.099 -> 0.079, on those furthest from training 0.159 -> 0.096 (docs/benchmarks.md,
section 1). RViz gets config/depth.rviz with its topics and fixed frame rewritten to match. dds_profile reaches the
node's process as DEPTH_NODE_DDS_PROFILE: its main then sets config/fastdds_large_outputs.xml as the Fast DDS profile
(a shared-memory segment its megabyte outputs fit in: with the default one a loaded viewer loses depth images; the
file says why) unless FASTDDS_DEFAULT_PROFILES_FILE is set.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchContext, LaunchDescription

PACKAGE = "depth_node"
PROFILE_SETTING = "DEPTH_NODE_DDS_PROFILE"  # read by the node's main (depth_node/dds_profile.py)
ARGUMENTS = {
    "namespace": ("", "namespace of the estimator's node and its depth/* outputs"),
    "image": ("/camera/color/image_raw", "colour image topic (the raw topic name, also with compressed:=true)"),
    "camera_info": ("/camera/color/camera_info", "CameraInfo topic of the colour camera"),
    "compressed": ("false", "subscribe to <image>/compressed (JPEG/PNG) instead of the raw image"),
    "model": ("", "model file (.onnx, .engine or .pt); empty: the params file's value, else the default model"),
    "backend": ("", "auto | tensorrt | onnxruntime | torch; empty: the params file's value"),
    "params_file": ("", "parameters YAML; empty: the package's config/estimator.yaml"),
    "frame": ("camera_color_optical_frame", "RViz fixed frame: the camera's optical frame id"),
    "use_rviz": ("false", "also start RViz with config/depth.rviz"),
    "lr_depth": ("", "live LR depth topic (16UC1/32FC1, registered to the colour camera, e.g. a ToF's); given, the "
                     "node aligns its depth's scale to it (scale_align.enabled): better depth in views the model "
                     "never saw"),
    "dds_profile": ("auto", "Fast DDS XML profile for the estimator's process; auto: config/fastdds_large_outputs.xml "
                            "unless FASTDDS_DEFAULT_PROFILES_FILE is set; empty: Fast DDS's defaults"),
}


def _true(text: str) -> bool:
    return text.strip().lower() in ("true", "1", "yes", "on")


def _rviz_config(share: Path, topics: dict[str, str], frame: str) -> str:
    """config/depth.rviz with its default topics and frame replaced; written to a temporary file for rviz2 -d."""
    text = (share / "config" / "depth.rviz").read_text()
    for default, actual in topics.items():
        text = text.replace(f"Value: {default}\n", f"Value: {actual}\n")
    text = text.replace("Fixed Frame: camera_color_optical_frame", f"Fixed Frame: {frame}")
    out = Path(tempfile.mkdtemp(prefix="depth_node_rviz_")) / "depth.rviz"
    out.write_text(text)
    return str(out)


def _node_settings(arg: dict[str, str]) -> tuple[dict, list[tuple[str, str]]]:
    """The estimator's parameter overrides and remappings from the launch arguments."""
    overrides: dict = {"image_transport": "compressed" if _true(arg["compressed"]) else "raw"}
    overrides.update({key: arg[key] for key in ("model", "backend") if arg[key]})
    remappings = [("image_raw", arg["image"]), ("camera_info", arg["camera_info"])]
    if arg["lr_depth"]:
        overrides["scale_align.enabled"] = True
        remappings.append(("lr_depth", arg["lr_depth"]))
    return overrides, remappings


def _actions(context: LaunchContext) -> list:
    arg = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    share = Path(get_package_share_directory(PACKAGE))
    overrides, remappings = _node_settings(arg)
    namespace = arg["namespace"].strip("/")
    estimator = Node(
        package=PACKAGE,
        executable="estimator",
        name="estimator",
        namespace=namespace,
        parameters=[arg["params_file"] or str(share / "config" / "estimator.yaml"), overrides],
        remappings=remappings,
        additional_env={PROFILE_SETTING: arg["dds_profile"]},
        output="screen",
    )
    actions = [estimator]
    if _true(arg["use_rviz"]):
        prefix = f"/{namespace}" if namespace else ""
        image = arg["image"] + ("/compressed" if _true(arg["compressed"]) else "")
        topics = {"/image_raw": image, "/depth/image": f"{prefix}/depth/image",
                  "/depth/points": f"{prefix}/depth/points"}
        config = _rviz_config(share, topics, arg["frame"])
        actions.append(Node(package="rviz2", executable="rviz2", name="rviz2", arguments=["-d", config],
                            output="screen"))
    return actions


def generate_launch_description() -> LaunchDescription:
    declared = [DeclareLaunchArgument(name, default_value=default, description=text)
                for name, (default, text) in ARGUMENTS.items()]
    return LaunchDescription([*declared, OpaqueFunction(function=_actions)])
