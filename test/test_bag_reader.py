"""Reading rosbag2 logs: storage formats, topic detection, image and depth decoding, camera models, transforms."""

from __future__ import annotations

import numpy as np
import pytest
from bag_fixtures import (
    BUILD,
    REAL_BAG,
    STORE,
    Rig,
    color_image,
    color_message,
    compressed_depth,
    depth_image,
    write_bag,
)
from depth_node_training.logs.bag_reader import (
    BagError,
    DecodeError,
    TransformTree,
    decode_color,
    decode_depth,
    detect_topics,
    list_topics,
    open_bag,
)
from depth_node_training.logs.sample_bag import quaternion


def image_msg(encoding: str, array: np.ndarray, step_pad: int = 0, bigendian: bool = False) -> object:
    """An Image message, optionally with padded rows or big-endian pixels."""
    array = np.ascontiguousarray(array)
    if bigendian:
        array = array.astype(array.dtype.newbyteorder(">"))
    rows = array.view(np.uint8).reshape(array.shape[0], -1)
    padded = np.hstack([rows, np.full((rows.shape[0], step_pad), 7, np.uint8)])
    msg = BUILD.image(0, "f", encoding, rows)
    msg.width, msg.step, msg.is_bigendian = array.shape[1], padded.shape[1], int(bigendian)
    msg.data = padded.reshape(-1)
    return msg


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8"])
def test_decode_color_raw_encodings_with_row_padding(encoding):
    rgb = color_image(3)
    channels = {"rgb8": rgb, "bgr8": rgb[..., ::-1], "rgba8": np.dstack([rgb, np.full(rgb.shape[:2], 9, np.uint8)]),
                "bgra8": np.dstack([rgb[..., ::-1], np.zeros(rgb.shape[:2], np.uint8)]), "mono8": rgb[..., 1]}
    out = decode_color(image_msg(encoding, channels[encoding], step_pad=5))
    expected = np.repeat(rgb[..., 1:2], 3, -1) if encoding == "mono8" else rgb
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize(("encoding", "order"), [("yuv422", "UYVY"), ("yuv422_yuy2", "YUYV"), ("uyvy", "UYVY")])
def test_decode_color_yuv422_byte_orders(encoding, order):
    """Neutral chroma (U = V = 128) gives gray from Y alone; a swapped byte order would read chroma as luma."""
    luma = np.arange(20, 20 + 8 * 6, dtype=np.uint8).reshape(6, 8)
    chroma = np.full_like(luma, 128)
    pairs = np.stack([chroma, luma], -1) if order == "UYVY" else np.stack([luma, chroma], -1)
    out = decode_color(image_msg(encoding, pairs))
    assert out.shape == (6, 8, 3)
    gray = np.clip(np.round((luma.astype(float) - 16) * 255 / 219), 0, 255)  # BT.601 video range
    assert np.abs(out - gray[..., None]).max() <= 1


@pytest.mark.parametrize("kind", ["jpeg", "png"])
def test_decode_color_compressed(kind):
    _, _, msg = color_message(kind, 0, "f", color_image(1))
    out = decode_color(msg)
    error = np.abs(out.astype(int) - color_image(1)).mean()
    assert out.shape == (48, 64, 3)
    assert error == 0 if kind == "png" else error < 8  # JPEG is lossy, but RGB order must be right


@pytest.mark.parametrize("payload", [b"\x00garbage", b"\xff\xd8\xff\xe0 no end marker"])
def test_decode_color_corrupt_compressed_raises(payload):
    msg = BUILD.compressed(0, "f", "jpeg", payload)
    with pytest.raises(DecodeError):
        decode_color(msg)


def test_decode_color_unknown_encoding_and_short_data():
    with pytest.raises(DecodeError, match="unknown image encoding"):
        decode_color(image_msg("weird9", np.zeros((2, 2, 3), np.uint8)))
    msg = image_msg("rgb8", np.zeros((4, 4, 3), np.uint8))
    msg.data = msg.data[:10]
    with pytest.raises(DecodeError, match="bytes"):
        decode_color(msg)


def test_decode_depth_16uc1_millimetres_and_big_endian():
    mm = np.array([[0, 1000, 2500], [65535, 1, 40000]], np.uint16)
    for bigendian in (False, True):
        depth = decode_depth(image_msg("16UC1", mm, step_pad=2, bigendian=bigendian))
        np.testing.assert_allclose(depth, mm / 1000.0, rtol=1e-7)
        assert depth.dtype == np.float32


def test_decode_depth_32fc1_invalid_values_become_zero():
    metres = np.array([[np.nan, 1.5, np.inf], [0.0, -1.0, 3.25]], np.float32)
    depth = decode_depth(image_msg("32FC1", metres))
    np.testing.assert_array_equal(depth, [[0, 1.5, 0], [0, 0, 3.25]])


@pytest.mark.parametrize("encoding", ["16UC1", "32FC1"])
def test_decode_compressed_depth(encoding):
    truth = depth_image(2)
    msg = BUILD.compressed(0, "f", f"{encoding}; compressedDepth png", compressed_depth(truth, encoding))
    depth = decode_depth(msg)
    assert np.array_equal(depth == 0, truth == 0)
    # 16UC1 is exact to the millimetre; 32FC1's inverse-depth quantisation step is z^2 / 10100 (0.4 mm at 2 m).
    np.testing.assert_allclose(depth, truth, atol=5e-4 if encoding == "16UC1" else 1e-3)


def test_decode_depth_rejects_unsupported_inputs():
    with pytest.raises(DecodeError, match="rvl"):
        decode_depth(BUILD.compressed(0, "f", "16UC1; compressedDepth rvl", b"\x00" * 40))
    with pytest.raises(DecodeError, match="no PNG"):
        decode_depth(BUILD.compressed(0, "f", "16UC1; compressedDepth png", b"\x00" * 40))
    with pytest.raises(DecodeError, match="not compressedDepth"):
        decode_depth(BUILD.compressed(0, "f", "jpeg", b"\xff\xd8"))
    with pytest.raises(DecodeError, match="not supported"):
        decode_depth(image_msg("mono8", np.zeros((2, 2), np.uint8)))


def test_transform_tree_chains_and_inverts():
    R = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # 90 deg about z
    T_base_a = np.eye(4)
    T_base_a[:3, 3] = (1.0, 0.0, 0.0)
    T_base_b = np.eye(4)
    T_base_b[:3, :3], T_base_b[:3, 3] = R, (0.0, 2.0, 0.0)
    tree = TransformTree()
    tree.add(BUILD.tf(0, [("base", "a", T_base_a), ("base", "b", T_base_b)]), static=True)
    tree.add(BUILD.tf(0, [("odom", "base", np.eye(4) * 2)]), static=False)  # unrelated moving edge
    np.testing.assert_allclose(tree.lookup("a", "b"), np.linalg.inv(T_base_a) @ T_base_b, atol=1e-12)
    np.testing.assert_allclose(tree.lookup("b", "a") @ tree.lookup("a", "b"), np.eye(4), atol=1e-12)
    assert tree.lookup("a", "nowhere") is None
    np.testing.assert_allclose(tree.lookup("a", "a"), np.eye(4))


def test_quaternion_round_trip_through_tf():
    rng = np.random.default_rng(1)
    for _ in range(20):
        q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
        R = q * np.sign(np.linalg.det(q))
        T = np.eye(4)
        T[:3, :3] = R
        tree = TransformTree()
        tree.add(BUILD.tf(0, [("p", "c", T)]), static=True)
        np.testing.assert_allclose(tree.lookup("p", "c")[:3, :3], R, atol=1e-9)
        assert np.isclose(np.linalg.norm(quaternion(R)), 1.0)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_open_bag_dir_or_single_file(tmp_path, storage):
    bag = write_bag(tmp_path / "bag", Rig(frames=2).log(), storage)
    topics = list_topics(bag)
    assert topics["/cam/image_raw/compressed"] == ("sensor_msgs/msg/CompressedImage", 2)
    storage_file = next(p for p in bag.iterdir() if p.suffix in (".mcap", ".db3"))
    assert list_topics(storage_file) == topics
    (bag / "metadata.yaml").unlink()  # a recording killed before it wrote its metadata
    assert list_topics(bag) == topics


def test_open_bag_errors_name_the_bag(tmp_path):
    with pytest.raises(BagError, match="no such bag"):
        list_topics(tmp_path / "missing")
    bag = write_bag(tmp_path / "bag", Rig(frames=3).log())
    mcap = bag / "bag.mcap"
    mcap.write_bytes(mcap.read_bytes()[:-200])  # the summary is lost, every message is still there
    assert sum(count for _, count in list_topics(bag).values()) == 12
    junk_mcap = tmp_path / "junk.mcap"
    junk_mcap.write_bytes(b"not an mcap file" * 100)
    with pytest.raises(BagError, match=f"{junk_mcap}: cannot open bag .*not a rosbag2 log or damaged"):
        list_topics(junk_mcap)
    junk = tmp_path / "junk.db3"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(BagError, match="junk.db3"):
        list_topics(junk)
    (tmp_path / "plain").mkdir()
    with pytest.raises(BagError, match="not a rosbag2 bag"):
        list_topics(tmp_path / "plain")


def detect(bag, **given):
    with open_bag(bag) as reader:
        return detect_topics(reader, bag, **given)


def test_detect_topics_obvious_candidates(tmp_path):
    log = Rig(frames=2, depth="cd32").log()
    log.append((0, "/chatter", "std_msgs/msg/String", STORE.types["std_msgs/msg/String"](data="hi")))
    topics = detect(write_bag(tmp_path / "bag", log))
    assert (topics.color, topics.depth) == ("/cam/image_raw/compressed", "/depth/image_raw/compressedDepth")
    assert (topics.color_info, topics.depth_info, topics.gt) == ("/cam/camera_info", "/depth/camera_info", None)


def test_detect_topics_prefers_raw_over_its_transport_and_color_over_mono(tmp_path):
    log = Rig(frames=2, color="rgb8").log()
    _, _, compressed = color_message("jpeg", 0, "cam_optical", color_image(0))
    infra = BUILD.image(0, "ir_optical", "mono8", np.zeros((4, 4), np.uint8))
    log += [(1, "/cam/image_raw/compressed", "sensor_msgs/msg/CompressedImage", compressed),
            (1, "/ir/image_raw", "sensor_msgs/msg/Image", infra)]
    assert detect(write_bag(tmp_path / "bag", log)).color == "/cam/image_raw"


def test_detect_topics_ambiguous_lists_candidates(tmp_path):
    log = Rig(frames=2).log()
    second = [(t, topic.replace("/cam/", "/cam2/"), msgtype, msg) for t, topic, msgtype, msg in log
              if topic.startswith("/cam/")]
    bag = write_bag(tmp_path / "bag", log + second)
    with pytest.raises(BagError, match=r"several color image topics: /cam/image_raw/compressed, "
                                       r"/cam2/image_raw/compressed; choose one with --color-topic"):
        detect(bag)
    assert detect(bag, color="/cam2/image_raw/compressed").color_info == "/cam2/camera_info"


def test_detect_topics_missing_or_wrong_topics(tmp_path):
    bag = write_bag(tmp_path / "bag", Rig(frames=2).log())
    with pytest.raises(BagError, match=r"topic /nope not in the bag \(topics: .*/cam/camera_info"):
        detect(bag, depth="/nope")
    with pytest.raises(BagError, match="has type sensor_msgs/msg/CameraInfo"):
        detect(bag, color="/cam/camera_info")
    only_color = [item for item in Rig(frames=2).log() if item[1].startswith("/cam/")]
    with pytest.raises(BagError, match=r"no depth image topic with a supported encoding \(16UC1, mono16, 32FC1, "
                                       r"compressedDepth\); image topics: /cam/image_raw/compressed \(bgr8; jpeg"):
        detect(write_bag(tmp_path / "color_only", only_color))
    no_info = [item for item in Rig(frames=2).log() if item[1] != "/depth/camera_info"]
    with pytest.raises(BagError, match="no CameraInfo topic for /depth/image_raw"):
        detect(write_bag(tmp_path / "no_info", no_info))


def test_detect_topics_empty_bag(tmp_path):
    bag = write_bag(tmp_path / "empty", [])
    with pytest.raises(BagError, match="the bag is empty"):
        detect(bag)


def test_detect_topics_finds_ground_truth_and_info_by_frame_id(tmp_path):
    log = Rig(frames=2, depth_frame="tof_optical").log()
    gt = BUILD.image(0, "cam_optical", "32FC1", np.ones((48, 64), np.float32))
    log = [(t, "/info_elsewhere" if topic == "/cam/camera_info" else topic, msgtype, msg)
           for t, topic, msgtype, msg in log]
    log.append((5, "/cam/depth_gt/image_raw", "sensor_msgs/msg/Image", gt))
    topics = detect(write_bag(tmp_path / "bag", log))
    assert topics.gt == "/cam/depth_gt/image_raw"
    assert topics.color_info == "/info_elsewhere"


@pytest.mark.skipif(not REAL_BAG.exists(), reason=f"real data not present at {REAL_BAG}")
def test_real_bag_topics_and_camera_models():
    with open_bag(REAL_BAG) as reader:
        topics = detect_topics(reader, REAL_BAG)
    assert (topics.color, topics.depth) == ("/camera/color/image_raw/compressed", "/tof/depth/image_raw")
    assert (topics.color_info, topics.depth_info) == ("/camera/color/camera_info", "/tof/depth/camera_info")


def test_several_ground_truth_topics_are_skipped_with_a_warning(tmp_path, caplog):
    log = Rig(frames=2).log()
    gt = BUILD.image(0, "cam_optical", "32FC1", np.ones((48, 64), np.float32))
    log += [(5, "/a/depth_gt", "sensor_msgs/msg/Image", gt), (5, "/b/depth_gt", "sensor_msgs/msg/Image", gt)]
    topics = detect(write_bag(tmp_path / "bag", log))
    assert topics.gt is None and topics.depth == "/depth/image_raw"
    assert "several ground-truth depth topics (/a/depth_gt, /b/depth_gt)" in caplog.text
