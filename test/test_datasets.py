"""Data readers on files the tests write themselves, and on the real 7-Scenes frames when present."""

import dataclasses
import json

import cv2
import numpy as np
import pytest
import torch
from depth_node_training.config import DataConfig
from depth_node_training.learning.datasets import open_frames
from depth_node_training.learning.training_pairs import TrainingPairs, lr_supervision


def write_frame(folder, stem, color, depth_mm):
    cv2.imwrite(str(folder / f"{stem}.color.png"), cv2.cvtColor(color, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(folder / f"{stem}.depth.png"), depth_mm)


def test_seven_scenes_reader(tmp_path):
    rng = np.random.default_rng(0)
    colors = [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(3)]
    depth = np.full((48, 64), 1500, np.uint16)
    depth[0, 0], depth[0, 1] = 0, 65535
    for i, c in enumerate(colors):
        write_frame(tmp_path, f"frame-{i:06d}", c, depth)
    np.savetxt(tmp_path / "camera-intrinsics.txt", np.array([[50, 0, 32], [0, 50, 24], [0, 0, 1]]))
    frames = open_frames(str(tmp_path))
    assert len(frames) == 3 and frames[2].name == "frame-000002"
    np.testing.assert_array_equal(frames[1].color, colors[1])
    assert frames[0].depth_hr[0, 0] == 0 and frames[0].depth_hr[0, 1] == 0 and frames[0].depth_hr[5, 5] == 1.5
    assert frames[0].K[0, 0] == 50
    block = open_frames(f"{tmp_path}@1:3")
    assert len(block) == 2 and block[0].name == "frame-000001"


def test_seven_scenes_poses_missing_or_unreadable_are_none_and_counted(tmp_path, caplog):
    pose = np.eye(4)
    pose[:3, 3] = (0.5, -0.25, 2.0)
    for i in range(4):
        write_frame(tmp_path, f"frame-{i:06d}", np.zeros((8, 8, 3), np.uint8), np.full((8, 8), 1000, np.uint16))
    np.savetxt(tmp_path / "frame-000000.pose.txt", pose)
    (tmp_path / "frame-000002.pose.txt").write_text("1 0 0\n0 1 0\n")  # cut short
    np.savetxt(tmp_path / "frame-000003.pose.txt", np.full((4, 4), -np.inf))  # what a lost tracker writes
    frames = open_frames(str(tmp_path))
    np.testing.assert_array_equal(frames[0].pose, pose)
    assert frames[0].pose.dtype == np.float64 and [f.pose is None for f in frames] == [False, True, True, True]
    assert frames.poses[0] is not frames[0].pose  # a frame's pose is its own copy
    assert frames.without_pose.as_dict() == {"missing pose file": 1, "unreadable pose file": 2}
    warnings = [r.getMessage() for r in caplog.records if "pose" in r.getMessage()]
    assert warnings == [f"{tmp_path}: kept without pose 1 frame: missing pose file (frame-000001.pose.txt)",
                        f"{tmp_path}: kept without pose 2 frames: unreadable pose file (frame-000002.pose.txt, "
                        "frame-000003.pose.txt)"]


def test_real_seven_scenes_poses(redkitchen):
    frame = open_frames(f"{redkitchen}@100:101")[0]
    np.testing.assert_array_equal(frame.pose, np.loadtxt(redkitchen / "frame-000100.pose.txt"))


def test_tum_reader_associates_by_timestamp(tmp_path):
    (tmp_path / "rgb").mkdir()
    (tmp_path / "depth").mkdir()
    color = np.zeros((8, 8, 3), np.uint8)
    depth = np.full((8, 8), 10000, np.uint16)  # 2 m at 5000 units per metre
    rgb_lines, depth_lines = [], []
    for t in [1.00, 1.033, 1.066]:
        cv2.imwrite(str(tmp_path / f"rgb/{t:.3f}.png"), color)
        rgb_lines.append(f"{t:.3f} rgb/{t:.3f}.png")
    for t in [1.005, 1.039, 1.2]:  # the third color frame has no depth within 20 ms
        cv2.imwrite(str(tmp_path / f"depth/{t:.3f}.png"), depth)
        depth_lines.append(f"{t:.3f} depth/{t:.3f}.png")
    (tmp_path / "rgb.txt").write_text("# color\n" + "\n".join(rgb_lines))
    (tmp_path / "depth.txt").write_text("# depth\n" + "\n".join(depth_lines))
    with pytest.raises(ValueError, match="intrinsics"):
        open_frames(str(tmp_path))
    (tmp_path / "camera.json").write_text(json.dumps({"fx": 5, "fy": 5, "cx": 4, "cy": 4}))
    frames = open_frames(str(tmp_path))
    assert len(frames) == 2 and frames[1].depth_hr[0, 0] == pytest.approx(2.0)
    assert open_frames(str(tmp_path), intrinsics=(7, 7, 4, 4))[0].K[0, 0] == 7


def test_training_pairs_crop_is_aligned_to_the_lr_grid(redkitchen):
    frames = open_frames(f"{redkitchen}@0:2")
    data = DataConfig(factor=4, crop_height=240, crop_width=320, hflip=False, color_jitter=0)
    sample = TrainingPairs(frames, data, seed=3)[0]
    assert sample["image"].shape == (3, 240, 320) and sample["depth_lr"].shape == (1, 60, 80)
    assert sample["depth_hr"].shape == (1, 240, 320)
    from depth_node.network.reduce import down_depth_np

    # the LR crop equals the reduction of the HR crop: footprints were not cut
    np.testing.assert_allclose(sample["depth_lr"][0].numpy(), down_depth_np(sample["depth_hr"][0].numpy(), 4, 0.5,
                                                                            0.1, 10.0), atol=1e-5)


def test_real_seven_scenes_frames(redkitchen):
    frames = open_frames(f"{redkitchen}@500:600")
    assert len(frames) == 100
    f = frames[0]
    assert f.name == "frame-000500" and f.color.shape == (480, 640, 3) and f.color.dtype == np.uint8
    valid = f.depth_hr > 0
    assert 0.7 < valid.mean() < 1.0 and 0.5 < f.depth_hr[valid].min() and f.depth_hr[valid].max() < 5.0
    lr = lr_supervision(f, DataConfig(factor=4))
    assert lr.shape == (120, 160) and 0.7 < (lr > 0).mean() <= 1.0


def test_missing_files_are_skipped_and_counted_in_every_folder_reader(tmp_path, caplog):
    """7-Scenes, TUM and extracted sets: an index or listing that names a file not there loses that frame only,
    with one warning per reason naming the first files; nothing usable left is a one-line error."""
    seven = tmp_path / "seven"
    seven.mkdir()
    for i in range(4):
        write_frame(seven, f"frame-{i:06d}", np.zeros((8, 8, 3), np.uint8), np.full((8, 8), 1000, np.uint16))
    (seven / "frame-000001.depth.png").unlink()
    (seven / "frame-000003.depth.png").unlink()
    frames = open_frames(str(seven))
    assert [f.name for f in frames] == ["frame-000000", "frame-000002"]
    assert frames.skipped.as_dict() == {"missing depth file": 2}
    assert (f"{seven}: skipped 2 frames: missing depth file (frame-000001.depth.png, frame-000003.depth.png)"
            in caplog.text)
    block = open_frames(f"{seven}@2:4")  # a block counts only what it left out itself
    assert [f.name for f in block] == ["frame-000002"]
    assert block.skipped.lines() == ["skipped 1 frame: missing depth file (frame-000003.depth.png)"]

    tum = tmp_path / "tum"
    tum.mkdir()
    for t in (1.0, 2.0, 3.0):
        cv2.imwrite(str(tum / f"c{t}.png"), np.zeros((8, 8, 3), np.uint8))
        cv2.imwrite(str(tum / f"d{t}.png"), np.full((8, 8), 5000, np.uint16))
    (tum / "rgb.txt").write_text("1.0 c1.0.png\n2.0 c2.0.png\n3.0 gone.png\n")
    (tum / "depth.txt").write_text("1.0 d1.0.png\n2.0 missing.png\n3.0 d3.0.png\n")
    (tum / "camera.json").write_text(json.dumps({"fx": 5, "fy": 5, "cx": 4, "cy": 4}))
    frames = open_frames(str(tum))
    assert len(frames) == 1 and frames[0].name == "c1.0"
    assert frames.skipped.as_dict() == {"missing color file": 1, "missing depth file": 1}

    from depth_node_training.logs.extracted_set import ExtractedSet

    extracted = tmp_path / "set"
    (extracted / "color").mkdir(parents=True)
    (extracted / "depth_lr").mkdir()
    K = [[5, 0, 4], [0, 5, 4], [0, 0, 1]]
    (extracted / "intrinsics.json").write_text(json.dumps({"color": {"K": K}, "factor": 4, "lr": {"width": 2,
                                                                                                  "height": 2}}))
    rows = ["name,stamp_ns,depth_stamp_ns,color,depth_lr,depth_hr"]
    for i in range(3):
        cv2.imwrite(str(extracted / f"color/{i:06d}.png"), np.zeros((8, 8, 3), np.uint8))
        cv2.imwrite(str(extracted / f"depth_lr/{i:06d}.png"), np.full((2, 2), 1000, np.uint16))
        rows.append(f"{i:06d},{i},{i},color/{i:06d}.png,depth_lr/{i:06d}.png,")
    (extracted / "index.csv").write_text("\n".join(rows) + "\n")
    (extracted / "depth_lr/000001.png").unlink()
    frames = ExtractedSet(extracted)
    assert [f.name for f in frames] == ["000000", "000002"]
    assert frames.skipped.as_dict() == {"missing depth_lr file": 1}
    assert frames[0].pose is None  # a set extracted before poses were: no pose column
    for name in ("000000", "000002"):
        (extracted / f"depth_lr/{name}.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"no usable frame in index.csv \(skipped 3 frames: missing depth_lr"):
        ExtractedSet(extracted)


def test_cached_frames_give_the_same_samples_without_reading_files_again(tmp_path):
    rng = np.random.default_rng(1)
    for i in range(3):
        depth = rng.integers(800, 3000, (48, 64)).astype(np.uint16)
        write_frame(tmp_path, f"frame-{i:06d}", rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), depth)
    data = DataConfig(factor=4, crop_height=16, crop_width=32)
    plain = TrainingPairs(open_frames(str(tmp_path)), data, seed=3)
    cached = TrainingPairs(open_frames(str(tmp_path)), dataclasses.replace(data, cache_frames=True), seed=3)
    expected = [plain[i] for i in range(3)]
    first = [cached[i] for i in range(3)]
    for path in tmp_path.glob("frame-*"):
        path.unlink()  # a cached dataset no longer needs its files
    again = [cached[i] for i in range(3)]
    for a, b, c in zip(expected, first, again):
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
            torch.testing.assert_close(a[key], c[key], rtol=0, atol=0)
    with pytest.raises(ValueError, match="no readable frame"):
        plain[0]  # the uncached one does read them
