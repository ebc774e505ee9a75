"""A camera driver as a separate process, the way a user's camera reaches the node: raw bgr8 images and camera_info.

Publishes like usb_cam / v4l2_camera (image_raw then camera_info, same stamp, stamped with the wall clock) with the
chosen reliability, once a subscriber has matched, then prints the stamps it sent as one JSON line. With
``--lr-depth`` a time-of-flight driver beside it publishes a registered 16UC1 depth at a quarter of the resolution on
``lr_depth`` (stamped 4 ms earlier, as in our robot log; reliable, like most depth drivers) just after each image:
the node has to wait for it. (Published just before each 921 KB image instead, Fast DDS now and then delivered it
0.5-1 s late here, a reliable resend.)

    python test/camera_driver.py --reliability reliable --rate 5 --frames 20 [--lr-depth]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from rclpy.duration import Duration  # noqa: E402
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

DATA = Path(os.environ.get("DEPTH_NODE_DATA", Path(__file__).parents[2] / "shared" / "data"))


def frame(width: int, height: int) -> np.ndarray:
    """A real 7-Scenes colour frame when the data is there, else a smooth synthetic scene."""
    path = DATA / "redkitchen" / "frame-000000.color.jpg"
    if path.exists():
        return cv2.resize(cv2.imread(str(path), cv2.IMREAD_COLOR), (width, height))
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // width, y * 255 // height, (x + y) * 127 // (width + height)], -1).astype(np.uint8)


def lr_depth_mm(width: int, height: int, scale: float = 1.0) -> np.ndarray:
    """The frame's Kinect depth subsampled to the LR size (millimetres, 0: no reading) when the data is there, else a
    flat 2 m; times ``scale``."""
    path = DATA / "redkitchen" / "frame-000000.depth.png"
    if path.exists():
        mm = cv2.resize(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), (width, height), interpolation=cv2.INTER_NEAREST)
    else:
        mm = np.full((height, width), 2000, np.uint16)
    return np.clip(np.round(mm * scale), 0, 65534).astype(np.uint16)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--reliability", choices=("reliable", "best_effort"), default="reliable")
    p.add_argument("--rate", type=float, default=5.0, help="frames per second; 0: as fast as possible")
    p.add_argument("--frames", type=int, default=20)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--match-timeout", type=float, default=20.0)
    p.add_argument("--lr-depth", action="store_true", help="also publish a registered x4 LR depth on lr_depth")
    p.add_argument("--lr-scale", type=float, default=1.0,
                   help="the LR depth multiplied by this: a scene whose metric scale the model cannot know")
    args = p.parse_args()

    rclpy.init()
    node = rclpy.create_node("camera_driver")
    policy = ReliabilityPolicy.RELIABLE if args.reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT
    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=policy)
    image_pub = node.create_publisher(Image, "image_raw", qos)
    info_pub = node.create_publisher(CameraInfo, "camera_info", qos)
    pubs = [image_pub, info_pub]
    if args.lr_depth:
        depth_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.RELIABLE)
        pubs.append(node.create_publisher(Image, "lr_depth", depth_qos))
        mm = lr_depth_mm(args.width // 4, args.height // 4, args.lr_scale)
    deadline = time.monotonic() + args.match_timeout
    while any(pub.get_subscription_count() == 0 for pub in pubs):
        if time.monotonic() > deadline:
            topics = ", ".join(pub.topic_name for pub in pubs if pub.get_subscription_count() == 0)
            raise SystemExit(f"no subscriber matched {topics} ({args.reliability}) within {args.match_timeout} s")
        time.sleep(0.02)
    time.sleep(0.2)  # let the subscriber's side of the match settle too
    pixels = frame(args.width, args.height)
    f = 0.9 * args.width
    k = [f, 0.0, (args.width - 1) / 2, 0.0, f, (args.height - 1) / 2, 0.0, 0.0, 1.0]
    sent = []
    start = time.monotonic()
    for i in range(args.frames):
        if args.rate > 0:
            time.sleep(max(0.0, start + i / args.rate - time.monotonic()))
        image = Image(height=args.height, width=args.width, encoding="bgr8", step=3 * args.width,
                      data=pixels.tobytes())
        now = node.get_clock().now()
        image.header.stamp = now.to_msg()
        image.header.frame_id = "camera_color_optical_frame"
        image_pub.publish(image)
        info_pub.publish(CameraInfo(header=image.header, height=args.height, width=args.width, k=k,
                                    distortion_model="plumb_bob", d=[0.0] * 5))
        if args.lr_depth:
            tof = Image(height=mm.shape[0], width=mm.shape[1], encoding="16UC1", step=2 * mm.shape[1],
                        data=mm.tobytes())
            tof.header.stamp = (now - Duration(nanoseconds=4_000_000)).to_msg()
            tof.header.frame_id = "tof_optical_frame"
            pubs[2].publish(tof)
        sent.append(image.header.stamp.sec * 1_000_000_000 + image.header.stamp.nanosec)
    time.sleep(1.0)  # a reliable writer keeps resending what the reader has not acknowledged
    print(json.dumps({"sent": sent}), flush=True)
    node.destroy_node()
    rclpy.shutdown()


if __name__ == "__main__":
    main()
