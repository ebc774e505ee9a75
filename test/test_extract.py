"""``depth-train extract``: pairing, registration, the extracted set, resuming, caching and bad input, on bags
written here with rosbags and on the real bag in ../shared/data when present."""

from __future__ import annotations

import argparse
import csv
import json
import os

import cv2
import numpy as np
import pytest
from bag_fixtures import (
    BUILD,
    DATA,
    DEPTH_K,
    PERIOD_NS,
    REAL_BAG,
    START_NS,
    Rig,
    color_image,
    depth_image,
    write_bag,
)
from depth_node_training.frames import split_by_time
from depth_node_training.learning.datasets import open_frames
from depth_node_training.logs import extract as extract_module
from depth_node_training.logs.bag_reader import BagError, TransformTree, decode_depth, open_bag
from depth_node_training.logs.extract import extract, extract_cached
from depth_node_training.logs.extracted_set import ExtractedSet, is_extracted_set
from depth_node_training.logs.pairing import pair_nearest
from depth_node_training.logs.poses import fixed_frames
from depth_node_training.skipped import skipped_of


def cli(*argv: str) -> None:
    parser = argparse.ArgumentParser()
    extract_module.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    args.func(args)


def index_rows(out):
    with open(out / "index.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_pair_nearest_within_tolerance():
    color = [0, 100, 200, 300, 400]
    depth = [304, 4, 104, 260]  # unsorted; 200 has none within 50, 300 is nearer 304 than 260
    pairing = pair_nearest(color, depth)  # default: half the median color period
    assert pairing.tolerance_ns == 50
    assert pairing.pairs == [(0, 1), (1, 2), (3, 0)]
    assert pairing.skipped == {"no depth within tolerance": 2}
    assert pair_nearest(color, depth, tolerance_ns=3).pairs == []


@pytest.mark.parametrize(("storage", "color", "depth"), [
    ("mcap", "jpeg", "16UC1"), ("sqlite3", "png", "32FC1"), ("mcap", "rgb8", "cd16"), ("sqlite3", "bgr8", "cd32")])
def test_identical_frames_pass_depth_through(tmp_path, storage, color, depth):
    bag = write_bag(tmp_path / "bag", Rig(frames=4, color=color, depth=depth).log(), storage)
    summary = extract([bag], tmp_path / "out", progress=False)
    assert (summary["color_frames"], summary["depth_frames"], summary["pairs"], summary["skipped"]) == (4, 4, 4, {})
    assert summary["bags"][0]["registration"] == "pass-through"
    frames = ExtractedSet(tmp_path / "out")
    assert len(frames) == 4
    for k, frame in enumerate(frames):
        assert frame.name == f"{k:06d}" and frame.stamp_ns == START_NS + k * PERIOD_NS
        assert frame.color.shape == (48, 64, 3) and frame.depth_lr.shape == (12, 16) and frame.depth_hr is None
        atol = 1e-3 if depth == "cd32" else 5e-4  # millimetre storage; 32FC1 compressedDepth is quantised
        np.testing.assert_allclose(frame.depth_lr, depth_image(k), atol=atol)
        if color != "jpeg":
            np.testing.assert_array_equal(frame.color, color_image(k))
    suffix = ".jpg" if color == "jpeg" else ".png"
    assert all(row["color"].endswith(suffix) for row in index_rows(tmp_path / "out"))


def test_jpeg_bytes_are_kept_verbatim(tmp_path):
    bag = write_bag(tmp_path / "bag", Rig(frames=2).log())
    extract([bag], tmp_path / "out", progress=False)
    with open_bag(bag) as reader:
        connection = next(c for c in reader.connections if c.topic == "/cam/image_raw/compressed")
        first = next(reader.messages(connections=[connection]))
        jpeg = bytes(reader.deserialize(first[2], connection.msgtype).data)
    assert (tmp_path / "out" / "color" / "000000.jpg").read_bytes() == jpeg


def test_different_frames_registered_with_tf_static(tmp_path):
    """Depth sensor 0.2 m to the right: on the LR grid (fx 10) a plane at z shifts by 10 * 0.2 / z pixels."""
    T = np.eye(4)
    T[:3, 3] = (0.2, 0.0, 0.0)
    rig = Rig(frames=2, depth_frame="tof_optical", T_color_depth=T)
    bag = write_bag(tmp_path / "bag", rig.log())
    summary = extract([bag], tmp_path / "out", progress=False)
    assert summary["bags"][0]["registration"] == "footprint splatting"
    intrinsics = json.loads((tmp_path / "out" / "intrinsics.json").read_text())
    np.testing.assert_allclose(intrinsics["T_color_depth"], T, atol=1e-12)
    np.testing.assert_allclose(intrinsics["lr"]["K"], DEPTH_K)
    frame = ExtractedSet(tmp_path / "out")[0]
    truth = depth_image(0)
    assert np.all(frame.depth_lr[:, 0] == 0)  # no depth ray reaches the left column
    assert (frame.depth_lr[:, 2:] > 0).mean() > 0.9
    for row, registered in zip(truth, frame.depth_lr, strict=True):  # a sideways move keeps rows and depths
        values = registered[registered > 0]
        assert np.abs(values[:, None] - row[None, :]).min(1).max() < 5e-4
        assert np.all(np.diff(values) > 0)  # the slanted plane stays ordered left to right


def test_extrinsic_from_dynamic_tf(tmp_path):
    T = np.eye(4)
    T[:3, 3] = (0.2, 0.0, 0.0)
    log = Rig(frames=2, depth_frame="tof_optical", T_color_depth=T).log()
    log = [(t, "/tf" if topic == "/tf_static" else topic, msgtype, msg) for t, topic, msgtype, msg in log]
    extract([write_bag(tmp_path / "bag", log)], tmp_path / "out", progress=False)
    intrinsics = json.loads((tmp_path / "out" / "intrinsics.json").read_text())
    np.testing.assert_allclose(intrinsics["T_color_depth"], T, atol=1e-12)


def test_identity_tf_between_named_frames_is_pass_through(tmp_path):
    bag = write_bag(tmp_path / "bag", Rig(frames=2, depth_frame="tof_optical").log())
    summary = extract([bag], tmp_path / "out", progress=False)
    assert summary["bags"][0]["registration"] == "pass-through"
    np.testing.assert_allclose(ExtractedSet(tmp_path / "out")[1].depth_lr, depth_image(1), atol=5e-4)


def test_dropped_late_and_corrupt_messages_are_counted(tmp_path, caplog):
    rig = Rig(frames=10, drop_depth={2, 7}, late_depth={4}, bad_jpeg={5}, bad_cdr={8}, no_color_info={9})
    bag = write_bag(tmp_path / "bag", rig.log())
    summary = extract([bag], tmp_path / "out", progress=False)
    assert summary["skipped"] == {"color decode error": 2, "no color camera_info": 1, "no depth within tolerance": 2}
    assert (summary["color_frames"], summary["depth_frames"], summary["pairs"]) == (10, 8, 5)
    assert summary["color_frames"] == summary["pairs"] + sum(summary["skipped"].values())
    assert summary["bags"][0]["corrupt_messages"] == {"/cam/image_raw/compressed": 1}
    assert [frame.name for frame in ExtractedSet(tmp_path / "out")] == ["000000", "000001", "000003", "000004",
                                                                        "000006"]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert f"{bag}: /cam/image_raw/compressed: 1 corrupt message(s) skipped" in warnings
    decode = [w for w in warnings if "color decode error" in w]  # one warning per reason, naming the frames
    assert decode == [f"{bag}: skipped 2 frames: color decode error (000005: color 'bgr8; jpeg compressed bgr8': not "
                      f"a decodable JPEG/PNG (25 bytes), 000008: corrupt message)"]
    # opened again later (a cached extraction), the set still counts what extraction left out, per block
    reasons = ("not extracted (2 color decode error, 1 no color camera_info, 2 no depth within tolerance in "
               "summary.json)")
    assert ExtractedSet(tmp_path / "out").skipped.as_dict() == {reasons: 5}
    assert skipped_of(open_frames(f"{tmp_path / 'out'}@0:5")).as_dict() == {reasons: 1}  # frame 2


def test_mono16_depth_is_millimetres_said_once(tmp_path, caplog):
    bag = write_bag(tmp_path / "bag", Rig(frames=3, depth="mono16").log())
    summary = extract([bag], tmp_path / "out", progress=False)
    assert summary["pairs"] == 3 and summary["bags"][0]["depth_encodings"] == {"mono16": 3}
    np.testing.assert_allclose(ExtractedSet(tmp_path / "out")[2].depth_lr, depth_image(2), atol=5e-4)
    assert caplog.text.count("mono16 depth read as millimetres") == 1


def test_unsupported_depth_encoding_exits_non_zero_naming_it(tmp_path, capsys):
    bag = write_bag(tmp_path / "bag", Rig(frames=3, depth="mono8").log())
    with pytest.raises(SystemExit) as error:
        cli("extract", "--bag", str(bag), "--out", str(tmp_path / "out"))
    assert error.value.code == 2
    assert "no depth image topic with a supported encoding" in capsys.readouterr().err
    with pytest.raises(SystemExit) as error:
        cli("extract", "--bag", str(bag), "--out", str(tmp_path / "out"), "--depth-topic", "/depth/image_raw")
    err = capsys.readouterr().err.splitlines()[-1]  # after the progress bar
    assert error.value.code == 2
    assert err == (f"depth-train extract: error: {bag}: /depth/image_raw: no supported depth encoding (saw 'mono8' "
                   "x3; supported: 16UC1, mono16, 32FC1, compressedDepth png)")
    assert not (tmp_path / "out" / "index.csv").exists() or len(index_rows(tmp_path / "out")) == 0


def test_no_pair_written_is_an_error_naming_the_cause(tmp_path):
    log = Rig(frames=3, depth="cd16").log()
    for _, topic, _, msg in log:
        if topic.endswith("compressedDepth"):
            msg.format = "16UC1; compressedDepth rvl"  # a codec extraction does not decode
    bag = write_bag(tmp_path / "bag", log)
    with pytest.raises(BagError, match=r"no pair extracted from .*bag \(skipped 3 frames: depth decode error "
                                       r"\(000000: compressedDepth codec 'rvl' is not supported \(only png\)"):
        extract([bag], tmp_path / "out", progress=False)


def test_tolerance_option(tmp_path):
    bag = write_bag(tmp_path / "bag", Rig(frames=3).log())
    with pytest.raises(BagError, match=r"no pair extracted .* \(skipped 3 frames: no depth within tolerance;"):
        extract([bag], tmp_path / "tight", tolerance=0.003, progress=False)  # depth is 4 ms late
    assert extract([bag], tmp_path / "loose", tolerance=0.005, progress=False)["pairs"] == 3


def test_camera_info_size_mismatch_is_an_error(tmp_path):
    bag = write_bag(tmp_path / "bag", Rig(frames=2, color_info_size=(640, 480)).log())
    with pytest.raises(BagError, match=r"/cam/image_raw/compressed: images are 64x48 but /cam/camera_info says "
                                       r"640x480"):
        extract([bag], tmp_path / "out", progress=False)


def test_missing_transform_is_an_error(tmp_path):
    log = [item for item in Rig(frames=2, depth_frame="tof_optical").log() if item[1] != "/tf_static"]
    with pytest.raises(BagError, match="no transform between 'tof_optical'"):
        extract([write_bag(tmp_path / "bag", log)], tmp_path / "out", progress=False)


def test_resume_keeps_written_frames_and_completes(tmp_path):
    bag = write_bag(tmp_path / "bag", Rig(frames=6).log())
    out = tmp_path / "out"
    extract([bag], out, progress=False)
    kept = (out / "color" / "000000.jpg").stat().st_mtime_ns
    lines = (out / "index.csv").read_text().splitlines(keepends=True)
    (out / "index.csv").write_text("".join(lines[:3]) + lines[3][:15])  # interrupted mid-row after two frames
    (out / "depth_lr" / "000005.png").unlink()
    summary = extract([bag], out, progress=False)
    assert summary["pairs"] == summary["frames_in_set"] == 6
    assert [row["name"] for row in index_rows(out)] == [f"{k:06d}" for k in range(6)]
    assert (out / "color" / "000000.jpg").stat().st_mtime_ns == kept
    assert len(ExtractedSet(out)) == 6
    with pytest.raises(BagError, match="other options"):
        extract([bag], out, tolerance=0.01, progress=False)


def test_several_bags_into_one_set(tmp_path):
    first = write_bag(tmp_path / "a", Rig(frames=3).log(), "mcap")
    second = write_bag(tmp_path / "b", Rig(frames=2, color="rgb8").log(), "sqlite3")
    summary = extract([first, second], tmp_path / "out", progress=False)
    assert summary["pairs"] == 5 and len(summary["bags"]) == 2
    assert sorted(row["name"] for row in index_rows(tmp_path / "out")) == [f"{k:06d}" for k in range(5)]


def test_extract_cached_keys_on_bag_identity_and_options(tmp_path):
    bag = write_bag(tmp_path / "bag", Rig(frames=2).log())
    cache = tmp_path / "cache"
    out = extract_cached([str(bag)], cache, progress=False)
    assert is_extracted_set(out) and len(ExtractedSet(out)) == 2
    stamp = (out / "summary.json").stat().st_mtime_ns
    assert extract_cached([str(bag)], cache) == out  # progress bars are not part of the key
    assert (out / "summary.json").stat().st_mtime_ns == stamp  # not extracted again
    assert extract_cached([str(bag)], cache, tolerance=0.01, progress=False) != out
    os.utime(bag / "bag.mcap", ns=(stamp, stamp + 10**9))
    assert extract_cached([str(bag)], cache, progress=False) != out


def test_split_by_time(tmp_path):
    bag = write_bag(tmp_path / "bag", Rig(frames=10).log())
    frames = ExtractedSet(extract_cached([str(bag)], tmp_path / "cache", progress=False))
    train, val = split_by_time(frames, 0.2)
    assert (len(train), len(val)) == (8, 2)
    assert max(f.stamp_ns for f in train) < min(f.stamp_ns for f in val)
    assert [len(part) for part in split_by_time(frames, 3)] == [7, 3]
    with pytest.raises(ValueError, match="fraction"):
        split_by_time(frames, 1.5)
    assert not is_extracted_set(tmp_path)


def test_cli_prints_summary_and_reports_errors(tmp_path, capsys):
    bag = write_bag(tmp_path / "bag", Rig(frames=3, drop_depth={1}).log())
    cli("extract", "--bag", str(bag), "--out", str(tmp_path / "out"))
    out = capsys.readouterr().out
    assert "color frames 3, depth frames 2, pairs 2, skipped: 1 no depth within tolerance" in out
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["complete"] is True
    broken = tmp_path / "broken.mcap"
    broken.write_bytes((bag / "bag.mcap").read_bytes()[:300])
    with pytest.raises(SystemExit) as error:
        cli("extract", "--bag", str(broken), "--out", str(tmp_path / "out2"))
    assert error.value.code == 2
    assert f"{broken}: no complete message in the log (broken.mcap: stopped at byte" in capsys.readouterr().err
    empty = write_bag(tmp_path / "empty", [])
    with pytest.raises(SystemExit):
        cli("extract", "--bag", str(empty), "--out", str(tmp_path / "out3"))
    assert "the bag is empty" in capsys.readouterr().err


@pytest.fixture(scope="module")
def real_extract(tmp_path_factory):
    if not REAL_BAG.exists():
        pytest.skip(f"real data not present at {REAL_BAG}")
    out = tmp_path_factory.mktemp("redkitchen") / "set"
    return out, extract([REAL_BAG], out, progress=False)


def test_real_bag_pairs_584_of_600(real_extract):
    out, summary = real_extract
    assert (summary["color_frames"], summary["depth_frames"], summary["pairs"]) == (600, 584, 584)
    assert summary["skipped"] == {"no depth within tolerance": 16}
    assert summary["bags"][0]["registration"] == "pass-through"  # co-located sensors, K scaled by 1/4
    names = {row["name"] for row in index_rows(out)}
    assert {f"{k:06d}" for k in range(600)} - names == {f"{k:06d}" for k in range(600) if k % 37 == 36}
    assert skipped_of(open_frames(f"{out}@0:120")).lines() == [
        "skipped 3 frames: no depth within tolerance (000036, 000073, 000110)"]


def test_real_bag_extracted_depth_equals_bag_depth(real_extract):
    out, _ = real_extract
    rows = {int(row["depth_stamp_ns"]): row for row in index_rows(out)}
    with open_bag(REAL_BAG) as reader:
        connections = [c for c in reader.connections if c.topic == "/tof/depth/image_raw"]
        compared = 0
        for connection, _, raw in reader.messages(connections=connections):
            msg = reader.deserialize(raw, connection.msgtype)
            row = rows[msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec]
            stored = cv2.imread(str(out / row["depth_lr"]), cv2.IMREAD_UNCHANGED)
            np.testing.assert_array_equal(stored, msg.data.view(np.uint16).reshape(msg.height, msg.width))
            np.testing.assert_array_equal(decode_depth(msg), stored / np.float32(1000.0))
            compared += 1
    assert compared == 584
    frame = ExtractedSet(out)[0]
    assert frame.color.shape == (480, 640, 3) and frame.depth_lr.shape == (120, 160)
    np.testing.assert_allclose(frame.K, [[585, 0, 320], [0, 585, 240], [0, 0, 1]])


def tf_log(times_ns: list[int], T_base_camera: np.ndarray) -> list[tuple[int, str, str, object]]:
    """/tf odom -> base_link sampled at ``times_ns`` from a steady screw motion (constant velocity and angular velocity
    about a fixed axis, where linear interpolation and slerp are exact), /tf_static base_link -> cam_optical."""
    items = [(START_NS, "/tf_static", "tf2_msgs/msg/TFMessage",
              BUILD.tf(START_NS, [("base_link", "cam_optical", T_base_camera)]))]
    items += [(START_NS + t, "/tf", "tf2_msgs/msg/TFMessage", BUILD.tf(START_NS + t, [("odom", "base_link",
                                                                                         screw(t))]))
              for t in times_ns]
    return items


def screw(t_ns: int) -> np.ndarray:
    t = t_ns / 1e9
    axis = np.array([0.3, 0.2, 0.93]) / np.linalg.norm([0.3, 0.2, 0.93])
    T = np.eye(4)
    T[:3, :3] = cv2.Rodrigues(axis * 0.8 * t)[0]
    T[:3, 3] = (0.5 * t, -0.2 * t, 0.05 * t)
    return T


def test_poses_interpolated_from_tf_and_frames_without_one_counted(tmp_path, caplog, capsys):
    T_base_camera = np.eye(4)
    T_base_camera[:3, :3] = [[0, 0, 1], [-1, 0, 0], [0, -1, 0]]  # optical axes on a base_link (x forward, z up)
    T_base_camera[:3, 3] = (0.1, 0.0, 0.8)
    times = [PERIOD_NS // 2 + j * PERIOD_NS for j in range(4)] + [5 * PERIOD_NS - 8_000_000]
    bag = write_bag(tmp_path / "bag", Rig(frames=6).log() + tf_log(times, T_base_camera))
    cli("extract", "--bag", str(bag), "--out", str(tmp_path / "out"))
    frames = ExtractedSet(tmp_path / "out")
    assert frames.poses[0] is None and frames[0].pose is None  # 17 ms before the first sample: not extrapolated
    for k in range(1, 5):  # between samples: interpolation is exact for this motion
        np.testing.assert_allclose(frames[k].pose, screw(k * PERIOD_NS) @ T_base_camera, atol=1e-9)
    np.testing.assert_allclose(frames[5].pose, screw(times[-1]) @ T_base_camera, atol=1e-9)  # held 8 ms
    poses = json.loads((tmp_path / "out" / "summary.json").read_text())["bags"][0]["poses"]
    reason = "stamp before the first odom -> base_link transform"
    assert poses == {"frame": "odom", "camera": "cam_optical", "frames": 5, "without": {reason: 1}, "note": ""}
    assert f"poses of cam_optical in odom: 5 frames (without: 1 {reason})" in capsys.readouterr().out
    assert f"{bag}: kept without pose 1 frame: {reason} (000000)" in caplog.text

    extract([bag], tmp_path / "base", pose_frame="base_link", progress=False)  # a frame named: the rig's own
    np.testing.assert_allclose(ExtractedSet(tmp_path / "base")[3].pose, T_base_camera, atol=1e-12)
    with pytest.raises(BagError, match="--pose-frame map: not connected to cam_optical .*frames: base_link, "):
        extract([bag], tmp_path / "map", pose_frame="map", progress=False)


def test_without_tf_extraction_has_no_poses_and_says_so_once(tmp_path, caplog):
    bag = write_bag(tmp_path / "bag", Rig(frames=3).log())
    summary = extract([bag], tmp_path / "out", progress=False)
    assert all(frame.pose is None for frame in ExtractedSet(tmp_path / "out"))
    lines = [r.getMessage() for r in caplog.records if "pose" in r.getMessage()]
    assert lines == [f"no poses: {bag}: no /tf transform moves cam_optical in a fixed frame; training uses LR depth "
                     f"only"]
    assert summary["bags"][0]["poses"]["note"] == lines[0]


def test_fixed_frame_is_the_one_moving_root():
    tree = TransformTree()
    tree.edges = {("odom", "base_link"): np.eye(4), ("base_link", "cam"): np.eye(4), ("world", "marker"): np.eye(4)}
    tree.static = {("base_link", "cam")}
    assert fixed_frames(tree, "cam") == ["odom"]  # world is a root, but not of the camera's tree
    tree.static.add(("odom", "base_link"))
    assert fixed_frames(tree, "cam") == []  # only static transforms: the camera never moves
    tree.edges[("map", "cam")] = np.eye(4)  # a second parent (a broken tree): which one is meant is not obvious
    assert fixed_frames(tree, "cam") == ["map"]
    tree.static.discard(("odom", "base_link"))
    assert fixed_frames(tree, "cam") == ["map", "odom"]


def test_real_odom_bag_poses_are_the_pose_files(tmp_path):
    """odom -> base_link in /tf composed with the static base_link -> camera_color_optical_frame: the 7-Scenes pose
    of each frame (README of the data: to 1e-4)."""
    bag = REAL_BAG.parent / "redkitchen_odom_x4"
    if not (bag / "metadata.yaml").exists():
        pytest.skip(f"real data not present at {bag}")
    summary = extract([bag], tmp_path / "out", progress=False)
    assert summary["bags"][0]["poses"]["frame"] == "odom"
    frames = ExtractedSet(tmp_path / "out")
    assert summary["bags"][0]["poses"]["frames"] == len(frames) == 195
    for name, pose in zip(frames.color_numbers, frames.poses, strict=True):
        np.testing.assert_allclose(pose, np.loadtxt(DATA / "redkitchen" / f"frame-{name:06d}.pose.txt"), atol=1e-3)
    assert frames[0].pose.dtype == np.float64


def test_real_bag_without_tf_has_no_poses(real_extract):
    out, summary = real_extract
    assert summary["bags"][0]["poses"]["note"].startswith(f"no poses: {REAL_BAG}: no /tf transform moves "
                                                           "camera_color_optical_frame")
    frames = open_frames(f"{out}@0:5")
    assert len(frames) == 5 and all(frames[k].pose is None for k in range(5))
