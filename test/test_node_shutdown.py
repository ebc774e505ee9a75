"""Stopping the node as a process manager does: SIGTERM while frames flow (systemd, docker stop, ros2 launch's
escalation) ends it with exit code 0 and no failed-frame warning, although the frame in flight can no longer be
published (its publisher's context is gone)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")

import rclpy  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

DOMAIN_ID = 59  # this module's own DDS domain (<= 101: no clash with Linux ephemeral ports)
CAMERA = Path(__file__).with_name("camera_driver.py")


def test_sigterm_while_frames_flow_exits_0_without_a_failed_frame() -> None:
    env = {**os.environ, "ROS_DOMAIN_ID": str(DOMAIN_ID)}
    # the shipped model on ONNX Runtime: no TensorRT engine build on a GPU machine; ~0.2 s a frame on a CPU, so the
    # worker is mid-frame when the signal comes
    node = subprocess.Popen([sys.executable, "-m", "depth_node.node", "--ros-args", "-p", "backend:=onnxruntime"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    camera = subprocess.Popen([sys.executable, str(CAMERA), "--rate", "10", "--frames", "600", "--width", "320",
                               "--height", "240"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=DOMAIN_ID)
    listener = rclpy.create_node("shutdown_listener", context=context)
    answered: list[int] = []
    listener.create_subscription(Image, "depth/image", lambda msg: answered.append(msg.header.stamp.sec), 10)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(listener)
    threading.Thread(target=executor.spin, daemon=True).start()
    try:
        deadline = time.monotonic() + 30.0
        while len(answered) < 3 and node.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(answered) >= 3, f"the node answered {len(answered)} frames (exit code {node.poll()})"
        node.send_signal(signal.SIGTERM)
        log, _ = node.communicate(timeout=5.0)
        assert node.returncode == 0, log[-3000:]
        assert "frame failed" not in log and "context is invalid" not in log and "Traceback" not in log, log[-3000:]
    finally:
        for process in (node, camera):
            if process.poll() is None:
                process.kill()
            process.wait()
        executor.shutdown()
        listener.destroy_node()
        rclpy.shutdown(context=context)
