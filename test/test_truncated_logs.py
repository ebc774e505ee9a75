"""Logs cut short (a robot that lost power mid-recording): bags written here with rosbags, then truncated at several
byte offsets. The oracle is independent of the reader: a message is complete before the cut when its serialised
bytes, found in the intact file, end at or before the cut."""

from __future__ import annotations

import numpy as np
import pytest
from bag_fixtures import BUILD, START_NS, Rig, write_bag
from depth_node_training.learning.datasets import open_frames
from depth_node_training.logs.bag_reader import BagError, open_bag
from depth_node_training.logs.extract import extract
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer

CUTS = (0.15, 0.5, 0.77, 0.93, 0.999)


def storage_file(bag):
    return next(p for p in bag.iterdir() if p.suffix in (".mcap", ".db3"))


def payload_ends(bag) -> tuple[bytes, list[tuple[str, bytes, int]]]:
    """The storage file's bytes and (topic, CDR, end offset in the file) of every message of the intact bag."""
    data = storage_file(bag).read_bytes()
    with AnyReader([bag]) as reader:
        messages = [(c.topic, bytes(raw)) for c, _, raw in reader.messages()]
    found = []
    for topic, raw in messages:
        at = data.find(raw)
        assert at >= 0 and data.find(raw, at + 1) < 0, "payloads must be unique and stored contiguously"
        found.append((topic, raw, at + len(raw)))
    return data, found


def cut_copy(data: bytes, fraction: float, path, tail: bytes = b""):
    path.write_bytes(data[:int(len(data) * fraction)] + tail)
    return path, int(len(data) * fraction)


def read_all(path) -> tuple[list[bytes], list]:
    with open_bag(path) as reader:
        return [bytes(raw) for _, _, raw in reader.messages()], list(reader.damage)


@pytest.fixture(scope="module")
def mcap_bag(tmp_path_factory):
    bag = write_bag(tmp_path_factory.mktemp("mcap") / "bag", Rig(frames=12).log())
    return bag, *payload_ends(bag)


@pytest.mark.parametrize("fraction", CUTS)
def test_mcap_cut_keeps_every_complete_message(mcap_bag, tmp_path, fraction, caplog):
    bag, data, messages = mcap_bag
    path, cut = cut_copy(data, fraction, tmp_path / "cut.mcap")
    complete = [raw for _, raw, end in messages if end <= cut]
    if not complete:
        with pytest.raises(BagError, match=f"{path}: no complete message in the log"):
            read_all(path)
        return
    got, damage = read_all(path)
    assert got == complete
    assert len(damage) == 1 and damage[0].position.endswith(f" of {cut}")
    if fraction == CUTS[-1]:  # only the summary is cut
        assert damage[0].reason == "summary or footer damaged after the last message; no message lost"
    assert f"{path}: log cut short, reading the {len(complete)} complete messages" in caplog.text


def test_mcap_zero_filled_tail_and_cut_between_records(mcap_bag, tmp_path):
    """A power loss can leave the file's last blocks allocated but zero; a cut may also fall between records."""
    bag, data, messages = mcap_bag
    _, _, end = messages[len(messages) // 2]
    path, _ = cut_copy(data[:end], 1.0, tmp_path / "zeros.mcap", tail=bytes(4096))
    got, damage = read_all(path)
    assert got == [raw for _, raw, e in messages if e <= end]
    assert damage[0].reason.startswith("invalid record opcode 0x00")
    path, _ = cut_copy(data[:end], 1.0, tmp_path / "boundary.mcap")
    assert read_all(path)[0] == [raw for _, raw, e in messages if e <= end]


def test_intact_mcap_is_not_reported_damaged(mcap_bag):
    bag, _, messages = mcap_bag
    with open_bag(bag) as reader:
        assert reader.damage == [] and reader.message_count == len(messages)


def test_mcap_with_several_chunks(tmp_path):
    """rosbags closes a chunk after 1 MiB: cuts inside the second chunk keep the first whole and the second's head."""
    rng = np.random.default_rng(0)
    log = [(START_NS + k, "/depth/image_raw", "sensor_msgs/msg/Image",
            BUILD.image(START_NS + k, "cam", "16UC1", rng.integers(0, 65535, (240, 320), dtype=np.uint16)))
           for k in range(20)]
    bag = write_bag(tmp_path / "big", log)
    data, messages = payload_ends(bag)
    for fraction in (0.3, 0.55, 0.8):
        path, cut = cut_copy(data, fraction, tmp_path / f"big{fraction}.mcap")
        complete = [raw for _, raw, end in messages if end <= cut]
        assert read_all(path)[0] == complete and len(complete) > 0


def test_zstd_chunks_cut_short_keep_their_decodable_head(tmp_path):
    """No byte oracle inside a compressed chunk: the recovered messages must be the intact bag's first ones, byte for
    byte, and reach into the chunk the file ends in (noise does not compress, so bytes track messages)."""
    bag = tmp_path / "compressed"
    writer = Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP)
    writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
    rng = np.random.default_rng(0)
    with writer:
        conn = writer.add_connection("/depth/image_raw", "sensor_msgs/msg/Image", typestore=BUILD.store)
        for k in range(20):  # 150 kB each: chunks of 7 messages
            msg = BUILD.image(START_NS + k, "cam", "16UC1", rng.integers(0, 65535, (240, 320), dtype=np.uint16))
            writer.write(conn, START_NS + k, BUILD.store.serialize_cdr(msg, "sensor_msgs/msg/Image"))
    with AnyReader([bag]) as reader:
        intact = [bytes(raw) for _, _, raw in reader.messages()]
    path, _ = cut_copy(storage_file(bag).read_bytes(), 0.6, tmp_path / "cut.mcap")
    got, damage = read_all(path)
    assert got == intact[:len(got)]
    assert len(got) > 7 and len(got) >= 0.6 * 20 - 2  # the first chunk whole and most of the second
    assert damage[0].reason.endswith("of an unfinished zstd chunk")


@pytest.fixture(scope="module")
def db3_bag(tmp_path_factory):
    bag = write_bag(tmp_path_factory.mktemp("db3") / "bag", Rig(frames=20).log(), "sqlite3")
    return bag, *payload_ends(bag)


@pytest.mark.parametrize("fraction", (0.2, 0.3, 0.5, 0.6, 0.8, 0.9, 0.95))
def test_db3_cut_keeps_every_message_of_the_whole_pages(db3_bag, tmp_path, fraction):
    """SQLite stores a row in a page, filled from the page's end; the page the cut falls in is partly zero, so only
    whole pages are trusted: a message is complete when its bytes end within them (rows here are < 4 kB, stored
    whole in one page). rosbags returns rows by timestamp, ties in any order, so they are compared as sets."""
    bag, data, messages = db3_bag
    path, cut = cut_copy(data, fraction, tmp_path / "cut.db3")
    page = int.from_bytes(data[16:18], "big")
    complete = sorted(raw for _, raw, end in messages if end <= cut - cut % page)
    if not complete:
        with pytest.raises(BagError, match=f"{path}: no complete message in the log"):
            read_all(path)
        return
    got, damage = read_all(path)
    assert sorted(got) == complete
    assert damage[0].file == str(path) and damage[0].reason.endswith(f"{len(complete)} messages read")


def test_extract_truncated_bag_pairs_every_complete_frame(tmp_path, caplog):
    """A frame is whole when its color, color CameraInfo, depth and depth CameraInfo all end before the cut."""
    bag = write_bag(tmp_path / "bag", Rig(frames=12).log())
    data, messages = payload_ends(bag)
    path, cut = cut_copy(data, 0.6, tmp_path / "cut.mcap")
    by_topic: dict[str, list[int]] = {}
    for topic, _, end in messages:
        by_topic.setdefault(topic, []).append(end)
    whole = sum(max(ends[k] for ends in by_topic.values()) <= cut for k in range(12))
    summary = extract([path], tmp_path / "out", progress=False)
    assert summary["pairs"] == whole > 0
    assert summary["truncated"] is True
    entry = summary["bags"][0]
    assert entry["messages_read"] == sum(end <= cut for _, _, end in messages)
    assert entry["truncated"][0].startswith("cut.mcap: stopped at byte ")
    assert entry["truncated"][0].endswith("of an unfinished uncompressed chunk)")
    recording = tmp_path / "recording"  # what a recorder leaves on power loss: the storage file, no metadata.yaml
    recording.mkdir()
    path.rename(recording / "bag_0.mcap")
    assert len(open_frames(str(recording), cache_root=tmp_path / "cache")) == whole  # what `fit --data` reads
