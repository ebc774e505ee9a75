"""The estimator node end to end at 640x480 with ONNX Runtime: how much does the node add to inference?

A real node (``EstimatorNode``) runs in this process; a feeder/viewer process talks to it over Fast DDS. It sends
640x480 frames (the real 7-Scenes JPEGs from ../shared/data when present, as CompressedImage, and the same frames as
raw bgr8 Images) with camera_info, one at a time, and subscribes to depth/image and depth/points so that the organized
xyzrgb cloud is built and published for every frame (decimation 1: 307200 points, 4.9 MB; and the default decimation
2). The node runs on its default parameters (input QoS ``auto``: it follows the feeder's reliable publishers), and
every frame whose cloud never comes back is reported as lost, with the node's own transport-loss count. Per frame the
node reports its stages (decode, preprocess, inference, postprocess, cloud, publish); its overhead is everything
except inference.
Targets: overhead <= 15% of inference time; building the organized xyzrgb cloud <= 5x a plain copy of the same number
of output bytes, both timed side by side in one loop.

    python bench/node_overhead.py --out bench/results/node_overhead.json

The model is the packaged default when present, else a random-initialised network of the same architecture (same
FLOPs, so the same timing). The load average is recorded: on a shared machine, compare figures from one run only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from rclpy.event_handler import QoSMessageLostInfo, SubscriptionEventCallbacks  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2  # noqa: E402

from depth_node.dds_profile import PROFILE_VARIABLE, SETTING_VARIABLE, apply_profile  # noqa: E402
from depth_node.image_codec import fill_image  # noqa: E402
from depth_node.node import EstimatorNode  # noqa: E402
from depth_node.pointcloud import CloudBuilder  # noqa: E402

DATA = Path(os.environ.get("DEPTH_NODE_DATA", Path(__file__).parents[2] / "shared" / "data"))
H, W = 480, 640
K = [585.0, 0.0, 320.0, 0.0, 585.0, 240.0, 0.0, 0.0, 1.0]
SETTLE_S = 10.0  # after the last frame, how long missing depth images are waited for before they count as lost


def onnx_model(path: str | None, workdir: Path) -> tuple[Path, str]:
    """An ONNX model at 640x480 and what it is."""
    from depth_node_training.deployment.export import export_onnx

    if path and path.endswith(".onnx"):
        return Path(path), path
    source = path
    if source is None:
        from depth_node.default_model import MODEL_DIR

        default = MODEL_DIR / "default.pt"
        source = str(default) if default.exists() else None
    if source is None:
        import torch
        from depth_node_training.config import load_config
        from depth_node_training.learning.checkpoint import save_checkpoint

        from depth_node.network.factory import make_network

        cfg = load_config(None, ["model.pretrained=false"])
        torch.manual_seed(0)
        source = str(save_checkpoint(workdir / "random.pt", make_network(cfg.model), cfg, 0, {}))
        what = "random-initialised estimator (default architecture)"
    else:
        what = source
    return export_onnx(source, workdir / "model.onnx", H, W), what


def frames(count: int) -> tuple[list[bytes], str]:
    """JPEG bytes of real 640x480 frames (or of a synthetic textured image when the data is absent)."""
    folder = DATA / "redkitchen"
    if folder.exists():
        return [(folder / f"frame-{i:06d}.color.jpg").read_bytes() for i in range(count)], f"{folder} (real)"
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 256, (H, W, 3), dtype=np.uint8), (0, 0), 3)
    return [cv2.imencode(".jpg", np.roll(image, 7 * i, axis=1))[1].tobytes() for i in range(count)], "synthetic"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def stats(values: list[float]) -> dict[str, float]:
    return {"median_ms": float(np.median(values)), "p90_ms": float(np.percentile(values, 90))}


def stamp_sec(cdr: bytes) -> int:
    """header.stamp.sec of a serialized message (little-endian CDR: after the 4-byte encapsulation header)."""
    return int.from_bytes(cdr[4:8], "little", signed=True)


def feed(compressed: bool, count: int, warmup: int) -> None:
    """The camera and the viewer, in their own process (as in a deployment): send each frame with its camera_info,
    wait for its cloud, print the publish -> cloud-received times as JSON."""
    rclpy.init()
    feeder = rclpy.create_node("feeder")
    reliable = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
    image_pub = feeder.create_publisher(CompressedImage if compressed else Image,
                                        "image_raw/compressed" if compressed else "image_raw", reliable)
    info_pub = feeder.create_publisher(CameraInfo, "camera_info", reliable)
    depths: dict[int, float] = {}  # stamp (s) -> arrival time
    clouds: dict[int, float] = {}
    reader_lost = Counter()  # what Fast DDS's readers report lost (a sample the writer gave up before delivering it)

    def lost_event(topic: str) -> SubscriptionEventCallbacks:
        def count(info: QoSMessageLostInfo) -> None:
            reader_lost[topic] += info.total_count_change
        return SubscriptionEventCallbacks(message_lost=count)

    subscriptions = [
        feeder.create_subscription(Image, "depth/image",
                                   lambda m: depths.setdefault(stamp_sec(m), time.monotonic()), reliable, raw=True,
                                   event_callbacks=lost_event("depth/image")),
        feeder.create_subscription(PointCloud2, "depth/points",
                                   lambda m: clouds.setdefault(stamp_sec(m), time.monotonic()), reliable, raw=True,
                                   event_callbacks=lost_event("depth/points"))]
    deadline = time.monotonic() + 30.0  # every topic matched both ways: nothing sent before it can arrive
    while not (image_pub.get_subscription_count() and info_pub.get_subscription_count()
               and all(sub.get_publisher_count() for sub in subscriptions)):
        if time.monotonic() > deadline:
            raise SystemExit("the node was not discovered within 30 s")
        rclpy.spin_once(feeder, timeout_sec=0.05)
    jpegs, _ = frames(count)

    def send(stamp: int, jpeg: bytes) -> float:
        """Publish one frame with its camera_info; the time it was sent."""
        if compressed:
            msg = CompressedImage(format="bgr8; jpeg compressed bgr8", data=jpeg)
        else:
            msg = fill_image(Image(), cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR), "bgr8")
        msg.header.stamp.sec, msg.header.frame_id = stamp, "camera_color_optical_frame"
        info_pub.publish(CameraInfo(header=msg.header, height=H, width=W, k=K))
        sent = time.monotonic()
        image_pub.publish(msg)
        return sent

    # A writer can match its reader later than the reader matches it, and a volatile topic's samples sent before
    # that never arrive: priming frames (stamp 0, not counted as sent) go until one comes back whole, both outputs
    priming = 0
    while not (0 in depths and 0 in clouds):
        if priming == 20:
            raise SystemExit("no priming frame came back whole (depth image and cloud) in 20 tries")
        priming += 1
        deadline = send(0, jpegs[0]) + 1.0
        while not (0 in depths and 0 in clouds) and time.monotonic() < deadline:
            rclpy.spin_once(feeder, timeout_sec=0.01)
    depths.pop(0)
    clouds.pop(0)
    print("primed", flush=True)  # the node's counts and timings from here on are the counted frames'
    time.sleep(0.5)  # for the node's process to read that line before frame 1 reaches the node
    sent_at: dict[int, float] = {}
    for i, jpeg in enumerate(jpegs, start=1):
        sent_at[i] = send(i, jpeg)
        deadline = sent_at[i] + 3.0  # a frame whose outputs never come is counted, not waited for
        while i not in clouds and time.monotonic() < deadline:
            rclpy.spin_once(feeder, timeout_sec=0.01)
    # a depth image may come after its cloud (another writer; a lost fragment waits for the writer's next heartbeat)
    settle = time.monotonic() + SETTLE_S
    while not set(sent_at) <= set(depths) and time.monotonic() < settle:
        rclpy.spin_once(feeder, timeout_sec=0.01)
    end_to_end = [1e3 * (clouds[i] - sent) for i, sent in sent_at.items() if i in clouds and i > warmup]
    depth_delay = [1e3 * (depths[i] - sent) for i, sent in sent_at.items() if i in depths]
    lost = sorted(set(sent_at) - set(depths))  # warm-up frames too: every frame sent must be answered
    no_cloud = sorted(set(depths) - set(clouds))
    print(json.dumps({"end_to_end_ms": end_to_end, "depth_image_delay_ms": depth_delay, "lost": lost,
                      "no_cloud": no_cloud,
                      "lost_with_cloud": sorted(set(lost) & set(clouds)), "priming": priming,
                      "reader_reported_lost": dict(reader_lost)}))
    feeder.destroy_node()
    rclpy.shutdown()


def run_node(model: Path, count: int, compressed: bool, decimation: int, warmup: int,
             feeder_env: dict[str, str]) -> dict:
    """A real node in this process, fed and watched from another one (with ``feeder_env``: the camera and viewer
    do not get the node's Fast DDS profile); per-stage node timings after warm-up."""
    import subprocess
    import sys
    import threading

    domain = 60 + os.getpid() % 40  # <= 101: Linux ephemeral ports cannot clash with its DDS ports
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain)
    params = {"model": str(model), "backend": "onnxruntime", "image_transport": "compressed" if compressed else "raw",
              "points_decimation": decimation}  # everything else, QoS included, at its default
    node = EstimatorNode(context=ctx, parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    command = [sys.executable, __file__, "--feed", "compressed" if compressed else "raw", "--frames", str(count)]
    env = {**feeder_env, "ROS_DOMAIN_ID": str(domain)}
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) as feeder:
        for line in feeder.stdout:
            if line.strip() == "primed":
                at_primed = node.stats.summary()
                timed_at_primed = {stage: len(window) for stage, window in node.stats.timings.items()}
            last = line
    if feeder.returncode:
        raise SystemExit(f"the feeder process failed (exit {feeder.returncode})")
    fed = json.loads(last)
    summary = node.stats.summary()
    dropped = Counter(summary["dropped"]) - Counter(at_primed["dropped"])
    image_input = node.inputs["image"]
    timings = {stage: list(window)[timed_at_primed[stage] + warmup:] for stage, window in node.stats.timings.items()}
    executor.shutdown()
    node.close()
    rclpy.shutdown(context=ctx)
    per_frame_overhead = [t - inf for t, inf in zip(timings["total"], timings["inference"])]
    delays = fed["depth_image_delay_ms"] or [float("nan")]  # nan: not one depth image came back
    inference = float(np.median(timings["inference"]))
    overhead = float(np.median(per_frame_overhead))
    return {"input": "CompressedImage (JPEG)" if compressed else "Image bgr8", "decimation": decimation,
            "points": -(-H // decimation) * -(-W // decimation),
            "frames": summary["processed"] - at_primed["processed"] - warmup, "priming_frames": fed["priming"],
            "dropped": dict(dropped), "lost": len(fed["lost"]), "no_cloud": len(fed["no_cloud"]),
            "lost_frames": fed["lost"], "lost_frames_with_cloud": fed["lost_with_cloud"],
            "viewer_reader_reported_lost": fed["reader_reported_lost"],
            "received": summary["received"] - at_primed["received"],
            "sent": count, "transport_lost": image_input.lost,
            "input_qos": image_input.reliability,
            "stages": {k: stats(v) for k, v in timings.items() if v},
            "overhead": stats(per_frame_overhead), "overhead_fraction": overhead / inference,
            "end_to_end_to_cloud_received": stats(fed["end_to_end_ms"]),
            "depth_image_delay": {**stats(delays), "max_ms": max(delays)},
            "depth_images_after_1s": sum(d > 1e3 for d in delays)}


def cloud_vs_copy(repeats: int) -> dict:
    """Organized xyzrgb cloud build vs a plain copy of as many bytes, interleaved in one loop (same cache state)."""
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.5, 4.0, (H, W)).astype(np.float32)
    depth[rng.random((H, W)) < 0.1] = np.nan
    color = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    k = np.asarray(K).reshape(3, 3)
    builder = CloudBuilder()
    nbytes = builder.build(depth, k, 1, color).nbytes
    src = np.ones(nbytes, np.uint8)
    dst = np.empty_like(src)
    build, copy, copy_into = [], [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        builder.build(depth, k, 1, color, "bgr8")
        t1 = time.perf_counter()
        src.copy()
        t2 = time.perf_counter()
        np.copyto(dst, src)
        t3 = time.perf_counter()
        build.append(1e3 * (t1 - t0))
        copy.append(1e3 * (t2 - t1))
        copy_into.append(1e3 * (t3 - t2))
    b, c, ci = (float(np.median(v)) for v in (build, copy, copy_into))
    return {"bytes": nbytes, "points": H * W, "build": stats(build), "copy": stats(copy),
            "copy_into_preallocated": stats(copy_into), "ratio_vs_copy": b / c, "ratio_vs_copy_into": b / ci}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="checkpoint (.pt) or ONNX model at 640x480 (default: the packaged model)")
    p.add_argument("--frames", type=int, default=40, help="frames per input kind (first 5 are warm-up)")
    p.add_argument("--repeats", type=int, default=200, help="cloud/copy repetitions")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "node_overhead.json")
    p.add_argument("--dds-profile", default="auto",
                   help=f"the node's Fast DDS profile, as the node's main sets it ({SETTING_VARIABLE}): auto, the "
                        f"packaged one unless {PROFILE_VARIABLE} is set; a file; '' for Fast DDS's defaults")
    p.add_argument("--feed", choices=("raw", "compressed"), help=argparse.SUPPRESS)  # the feeder process
    args = p.parse_args()
    if args.feed:
        return feed(args.feed == "compressed", args.frames, warmup=5)
    load_before = os.getloadavg()
    feeder_env = dict(os.environ)
    os.environ[SETTING_VARIABLE] = args.dds_profile
    profile, _ = apply_profile()  # before this process's first participant, as the node's main does
    with tempfile.TemporaryDirectory() as tmp:
        model, what = onnx_model(args.model, Path(tmp))
        runs = [run_node(model, args.frames, compressed, decimation, warmup=5, feeder_env=feeder_env)
                for compressed, decimation in ((True, 1), (False, 1), (True, 2))]
        _, source = frames(1)
    cloud = cloud_vs_copy(args.repeats)
    result = {"machine": {"cpu": cpu_name(), "cores": os.cpu_count(),
                          "load_average_before": load_before, "load_average_after": os.getloadavg()},
              "model": what, "frames": source, "resolution": f"{W}x{H}",
              "transport": f"{os.environ['RMW_IMPLEMENTATION']}, node's profile: {profile}",
              "runs": runs, "cloud_vs_copy": cloud,
              "targets": {"overhead_fraction_max": 0.15, "cloud_to_copy_ratio_max": 5.0}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))

    print(f"node end to end at {W}x{H}, ONNX Runtime, organized xyzrgb cloud, {result['transport']}; model: {what}")
    for run in runs:
        name = f"{run['input']}, cloud decimation {run['decimation']} ({run['points']} points)"
        print(f"\n{name}: {run['frames']} frames timed, dropped {run['dropped'] or 'none'}; frames lost "
              f"{run['lost']} of {run['sent']}, answered without cloud {run['no_cloud']} (node received "
              f"{run['received']} after {run['priming_frames']} priming frame(s); lost in transport "
              f"{run['transport_lost']}, input QoS {run['input_qos']}; the viewer's readers report lost "
              f"{run['viewer_reader_reported_lost'] or 'none'})")
        print(f"  {'stage':12s} {'median ms':>10s} {'p90 ms':>8s}")
        for stage, t in run["stages"].items():
            print(f"  {stage:12s} {t['median_ms']:10.2f} {t['p90_ms']:8.2f}")
        ok = "ok" if run["overhead_fraction"] <= 0.15 else "OVER TARGET"
        print(f"  {'overhead':12s} {run['overhead']['median_ms']:10.2f} {run['overhead']['p90_ms']:8.2f}  "
              f"= {100 * run['overhead_fraction']:.1f}% of inference (target <= 15%: {ok})")
        e2e = run["end_to_end_to_cloud_received"]
        print(f"  {'msg->cloud':12s} {e2e['median_ms']:10.2f} {e2e['p90_ms']:8.2f}  "
              "(camera publish -> cloud received in another process)")
        delay = run["depth_image_delay"]
        print(f"  {'msg->depth':12s} {delay['median_ms']:10.2f} {delay['p90_ms']:8.2f}  (max {delay['max_ms']:.0f} ms; "
              f"{run['depth_images_after_1s']} depth image(s) over 1 s late)")
    ok = "ok" if cloud["ratio_vs_copy"] <= 5.0 else "OVER TARGET"
    print(f"cloud build {cloud['build']['median_ms']:.3f} ms vs copy of {cloud['bytes']} bytes "
          f"{cloud['copy']['median_ms']:.3f} ms (into preallocated {cloud['copy_into_preallocated']['median_ms']:.3f}"
          f" ms): {cloud['ratio_vs_copy']:.1f}x ({cloud['ratio_vs_copy_into']:.1f}x) (target <= 5x: {ok})")
    print(f"load average {load_before[0]:.1f} -> {result['machine']['load_average_after'][0]:.1f}; "
          f"wrote {args.out}")


if __name__ == "__main__":
    main()
