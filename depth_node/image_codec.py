"""sensor_msgs Image / CompressedImage <-> numpy, for rclpy messages and rosbags messages alike.

Decoding returns the colour image in the channel order that costs nothing: 8-bit RGB/BGR images are views of the
message buffer (the estimator takes either order), JPEG/PNG decode to BGR (OpenCV's order, which is also the byte
order of the packed ``rgb`` field of point clouds). Other encodings (mono, RGBA, YUV 4:2:2, Bayer, 16-bit) are converted
with rosbags-image. Anything else raises ``ImageDecodeError`` naming the problem.
"""

from __future__ import annotations

import array
import sys
from typing import Any

import numpy as np

PASS_THROUGH = ("rgb8", "bgr8")


class ImageDecodeError(ValueError):
    """A message that cannot be turned into a colour image (unsupported encoding, bad sizes, corrupt data)."""


def is_compressed(msg: Any) -> bool:
    """CompressedImage has a ``format``, Image an ``encoding``."""
    return hasattr(msg, "format")


def raw_view(msg: Any, dtype: np.dtype, channels: int) -> np.ndarray:
    """(H, W[, C]) view of an Image's data honouring ``step`` (rows may be padded) and byte order."""
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    row = w * channels * dtype.itemsize
    if h == 0 or w == 0:
        raise ImageDecodeError(f"empty image ({w}x{h})")
    if step < row:
        raise ImageDecodeError(f"step {step} is smaller than width {w} x {channels * dtype.itemsize} bytes per pixel")
    buf = np.frombuffer(msg.data, np.uint8)
    if buf.size < step * h:
        raise ImageDecodeError(f"data has {buf.size} bytes, {msg.encoding} {w}x{h} with step {step} needs {step * h}")
    rows = buf[: step * h].reshape(h, step)[:, :row]
    img = rows.view(dtype).reshape((h, w, channels) if channels > 1 else (h, w))
    if dtype.itemsize > 1 and bool(msg.is_bigendian) != (sys.byteorder == "big"):
        img = img.byteswap()
    return img


def decode_raw(msg: Any) -> tuple[np.ndarray, str]:
    """sensor_msgs/Image -> (HxWx3 uint8, "rgb8" | "bgr8"); no copy for rgb8/bgr8 with unpadded rows."""
    from rosbags.image.image import ImageError, convert_color, to_cvtype

    encoding = str(msg.encoding)
    try:
        bits, _, typestr, channels = to_cvtype(encoding)
    except ImageError as err:
        raise ImageDecodeError(f"unsupported image encoding {encoding!r}") from err
    img = raw_view(msg, np.dtype(typestr), channels)
    if encoding in PASS_THROUGH:
        return img, encoding
    try:
        bgr = convert_color(img, encoding, "bgr8")
    except ImageError as err:
        raise ImageDecodeError(f"image encoding {encoding!r} cannot be converted to colour: {err}") from err
    if bgr.dtype != np.uint8 or bgr.ndim != 3 or bgr.shape[2] != 3:
        raise ImageDecodeError(f"image encoding {encoding!r} ({bits}-bit, {channels} channel) is not a colour image")
    return bgr, "bgr8"


def decode_compressed(msg: Any) -> tuple[np.ndarray, str]:
    """sensor_msgs/CompressedImage (JPEG, PNG, ...) -> (HxWx3 uint8, "bgr8")."""
    import cv2

    fmt = str(msg.format)
    if "compressedDepth" in fmt:
        raise ImageDecodeError(f"format {fmt!r} is a compressed depth image, not a colour image")
    data = np.frombuffer(msg.data, np.uint8)
    if data.size == 0:
        raise ImageDecodeError(f"compressed image (format {fmt!r}) has no data")
    img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if img is None:
        raise ImageDecodeError(f"corrupt compressed image: {data.size} bytes of format {fmt!r} do not decode")
    return img, "bgr8"


def decode_color(msg: Any) -> tuple[np.ndarray, str]:
    """Image or CompressedImage -> (HxWx3 uint8, "rgb8" | "bgr8")."""
    return decode_compressed(msg) if is_compressed(msg) else decode_raw(msg)


def to_byte_array(values: np.ndarray) -> array.array:
    """A contiguous array's bytes as the ``array.array('B')`` rclpy stores uint8[] fields in (one memcpy)."""
    out = array.array("B")
    out.frombytes(np.ascontiguousarray(values).reshape(-1).view(np.uint8))
    return out


def byte_array_view(shape: tuple[int, ...], dtype: np.dtype | type) -> tuple[array.array, np.ndarray]:
    """A zeroed ``array.array('B')`` and a writable numpy view of it with ``shape`` and ``dtype``.

    Fill the view, then hand the array.array to a message created with ``check_fields=True``: rclpy keeps an
    array.array('B') as it is then, where it would otherwise copy it. Output arrays of megabytes are written once.
    """
    data = array.array("B", [0]) * (int(np.prod(shape)) * np.dtype(dtype).itemsize)
    return data, np.frombuffer(data, dtype).reshape(shape)


def fill_image(msg: Any, values: np.ndarray, encoding: str, data: array.array | None = None) -> Any:
    """Set an rclpy sensor_msgs/Image's size, encoding, step and data from an (H, W[, C]) array; returns ``msg``.

    ``data``: the array.array that ``values`` is a view of (see ``byte_array_view``), used without a copy.
    """
    h, w = values.shape[:2]
    msg.height, msg.width, msg.encoding = h, w, encoding
    msg.is_bigendian = sys.byteorder == "big"
    msg.step = w * (values.shape[2] if values.ndim == 3 else 1) * values.dtype.itemsize
    msg.data = data if data is not None else to_byte_array(values)
    return msg
