"""``depth-train build-engine``: an alias of ``depth-engine`` with the same arguments.

Engine building lives in the runtime (``depth_node.engine_build``) because engines are built on the robot, which has
TensorRT but usually neither torch nor rosbags; this module imports nothing else, so the alias works there too.
"""

from __future__ import annotations

import argparse

from depth_node.engine_build import DESCRIPTION, add_arguments

HELP = "build a TensorRT engine from an exported ONNX model (alias of depth-engine)"


def register(subparsers: argparse._SubParsersAction) -> None:
    add_arguments(subparsers.add_parser("build-engine", help=HELP, description=DESCRIPTION))
