"""Image / CompressedImage / depth messages <-> numpy, on real rclpy messages and on rosbags messages."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from rosbags.typesys import Stores, get_typestore
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from depth_node.depth_image import camera_info_problem, decode_depth, depth_camera_info, encode_depth
from depth_node.image_codec import ImageDecodeError, decode_color, fill_image

DATA = Path(os.environ.get("DEPTH_NODE_DATA", Path(__file__).parents[2] / "shared" / "data"))
RNG = np.random.default_rng(0)
BGR = RNG.integers(0, 256, (6, 10, 3), dtype=np.uint8)


def raw(values: np.ndarray, encoding: str, pad: int = 0, bigendian: bool = False) -> Image:
    """An rclpy Image holding ``values`` with ``pad`` extra bytes per row."""
    h, w = values.shape[:2]
    rows = values.reshape(h, -1).view(np.uint8) if values.dtype.itemsize == 1 else values.reshape(h, -1)
    rows = rows.astype(rows.dtype.newbyteorder(">" if bigendian else "<")).view(np.uint8)
    padded = np.zeros((h, rows.shape[1] + pad), np.uint8)
    padded[:, : rows.shape[1]] = rows
    return Image(height=h, width=w, encoding=encoding, is_bigendian=bigendian, step=padded.shape[1],
                 data=padded.tobytes())


@pytest.mark.parametrize("pad", [0, 6])
def test_rgb8_and_bgr8_come_back_unchanged(pad: int) -> None:
    for encoding, values in (("bgr8", BGR), ("rgb8", BGR[..., ::-1].copy())):
        image, order = decode_color(raw(values, encoding, pad))
        assert order == encoding
        np.testing.assert_array_equal(image, values)


@pytest.mark.parametrize("encoding", ["rgba8", "bgra8", "mono8", "rgb16", "yuv422", "bayer_rggb8"])
def test_other_encodings_become_bgr8(encoding: str) -> None:
    if encoding == "rgba8":
        values, expect = cv2.cvtColor(BGR, cv2.COLOR_BGR2RGBA), BGR
    elif encoding == "bgra8":
        values, expect = cv2.cvtColor(BGR, cv2.COLOR_BGR2BGRA), BGR
    elif encoding == "mono8":
        values = BGR[..., 0].copy()
        expect = np.repeat(values[..., None], 3, axis=2)
    elif encoding == "rgb16":
        values, expect = BGR[..., ::-1].astype(np.uint16) * 257, BGR
    elif encoding == "yuv422":
        values, expect = RNG.integers(0, 256, (6, 10, 2), dtype=np.uint8), None
    else:
        values, expect = RNG.integers(0, 256, (6, 10), dtype=np.uint8), None
    image, order = decode_color(raw(values, encoding))
    assert order == "bgr8" and image.shape == (6, 10, 3) and image.dtype == np.uint8
    if expect is not None:
        np.testing.assert_array_equal(image, expect)


def test_big_endian_16_bit_is_swapped() -> None:
    values = BGR[..., ::-1].astype(np.uint16) * 257
    image, _ = decode_color(raw(values, "rgb16", bigendian=True))
    np.testing.assert_array_equal(image, BGR)


def test_rosbags_messages_decode_too() -> None:
    store = get_typestore(Stores.ROS2_HUMBLE)
    msg_t, header_t, time_t = (store.types[n] for n in ("sensor_msgs/msg/Image", "std_msgs/msg/Header",
                                                        "builtin_interfaces/msg/Time"))
    msg = msg_t(header=header_t(stamp=time_t(sec=1, nanosec=2), frame_id="cam"), height=6, width=10, encoding="bgr8",
                is_bigendian=0, step=30, data=BGR.reshape(-1))
    np.testing.assert_array_equal(decode_color(msg)[0], BGR)


@pytest.mark.parametrize("encoding, problem", [("32FC1", "not a colour image|cannot be converted"),
                                               ("16UC1", "not a colour image|cannot be converted"),
                                               ("weird", "unsupported image encoding 'weird'")])
def test_unsupported_encodings_are_named(encoding: str, problem: str) -> None:
    msg = Image(height=2, width=2, encoding=encoding, step=8, data=bytes(16))
    with pytest.raises(ImageDecodeError, match=problem):
        decode_color(msg)


def test_short_data_and_bad_step_are_errors() -> None:
    msg = raw(BGR, "bgr8")
    msg.data = msg.data[:-1]
    with pytest.raises(ImageDecodeError, match="needs 180"):
        decode_color(msg)
    msg = raw(BGR, "bgr8")
    msg.step = 10
    with pytest.raises(ImageDecodeError, match="step 10 is smaller"):
        decode_color(msg)


@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_compressed_decodes_to_bgr(ext: str) -> None:
    smooth = cv2.resize(BGR, (40, 24), interpolation=cv2.INTER_CUBIC)
    data = cv2.imencode(ext, smooth)[1].tobytes()
    image, order = decode_color(CompressedImage(format=f"bgr8; {ext[1:]} compressed bgr8", data=data))
    assert order == "bgr8" and image.shape == smooth.shape
    np.testing.assert_array_equal(image, cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR))
    assert np.abs(image.astype(int) - smooth).mean() < (12 if ext == ".jpg" else 1e-9)  # not channel-swapped


def test_corrupt_empty_and_depth_compressed_images_are_named() -> None:
    data = cv2.imencode(".jpg", BGR)[1].tobytes()
    with pytest.raises(ImageDecodeError, match="corrupt compressed image"):
        decode_color(CompressedImage(format="jpeg", data=b"\x00garbage" + data[40:80]))
    with pytest.raises(ImageDecodeError, match="no data"):
        decode_color(CompressedImage(format="jpeg", data=b""))
    with pytest.raises(ImageDecodeError, match="compressed depth"):
        decode_color(CompressedImage(format="16UC1; compressedDepth png", data=data))


def test_real_jpeg_frame() -> None:
    path = DATA / "redkitchen" / "frame-000000.color.jpg"
    if not path.exists():
        pytest.skip(f"real data not found at {path} (set DEPTH_NODE_DATA)")
    image, order = decode_color(CompressedImage(format="bgr8; jpeg compressed bgr8", data=path.read_bytes()))
    np.testing.assert_array_equal(image, cv2.imread(str(path)))
    assert (order, image.shape) == ("bgr8", (480, 640, 3))


def test_depth_encodings_follow_rep118() -> None:
    depth = np.array([[0.5, 2.0, np.nan], [np.inf, 20.0, 0.05]], np.float32)
    metres = encode_depth(depth, "32FC1", 0.1, 10.0)
    np.testing.assert_array_equal(np.isnan(metres), [[False, False, True], [True, True, True]])
    mm = encode_depth(depth, "16UC1", 0.1, 100.0)
    np.testing.assert_array_equal(mm, [[500, 2000, 0], [0, 20000, 0]])
    assert mm.dtype == np.uint16 and encode_depth(np.float32([[70.0]]), "16UC1", 0.1, 100.0)[0, 0] == 0
    with pytest.raises(ValueError, match="unsupported depth encoding"):
        encode_depth(depth, "8UC1", 0.1, 10.0)


@pytest.mark.parametrize("encoding", ["32FC1", "16UC1"])
def test_depth_message_round_trip(encoding: str) -> None:
    depth = RNG.uniform(0.2, 8.0, (5, 7)).astype(np.float32)
    depth[0, :3] = np.nan
    msg = fill_image(Image(), encode_depth(depth, encoding, 0.1, 10.0), encoding)
    assert (msg.height, msg.width, msg.encoding) == (5, 7, encoding)
    assert msg.step == 7 * (4 if encoding == "32FC1" else 2)
    back = decode_depth(msg)
    np.testing.assert_array_equal(np.isnan(back), np.isnan(depth))
    np.testing.assert_allclose(back, depth, atol=0.0005 if encoding == "16UC1" else 0)


def test_camera_info_checks_and_restamps() -> None:
    info = CameraInfo(height=6, width=10, k=[500.0, 0, 5, 0, 500, 3, 0, 0, 1], header=Header(frame_id="cam"))
    assert camera_info_problem(info, 6, 10) is None
    assert "camera_info is 10x6 but the image is 20x12" in camera_info_problem(info, 12, 20)
    assert "no valid focal length" in camera_info_problem(CameraInfo(height=6, width=10), 6, 10)
    header = Header(frame_id="cam")
    header.stamp.sec = 7
    out = depth_camera_info(info, header)
    assert out.header.stamp.sec == 7 and info.header.stamp.sec == 0 and list(out.k) == list(info.k)


@pytest.mark.parametrize("encoding, dtype", [("32FC1", np.float32), ("16UC1", np.uint16)])
def test_depth_written_into_a_message_buffer_is_published_without_a_copy(encoding: str, dtype: type) -> None:
    from depth_node.image_codec import byte_array_view

    depth = RNG.uniform(0.2, 8.0, (5, 7)).astype(np.float32)
    data, view = byte_array_view((5, 7), dtype)
    out = encode_depth(depth, encoding, 0.1, 5.0, out=view)
    assert out is view
    np.testing.assert_array_equal(view, encode_depth(depth, encoding, 0.1, 5.0))
    msg = fill_image(Image(check_fields=True), view, encoding, data)
    assert msg.data is data  # rclpy keeps an array.array('B') as is when fields are checked
    np.testing.assert_array_equal(np.isnan(decode_depth(msg)), (depth > 5.0))
