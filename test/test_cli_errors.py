"""``depth-train`` on bad input: one line naming the file, key or value, exit 2; missing and unreadable frames skipped
and counted; Ctrl-C exits 130 saying what is kept. Real files, the real console script where a process matters."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bag_fixtures import Rig, write_bag
from depth_node_training.cli import main

DEPTH_TRAIN = str(Path(sys.executable).parent / "depth-train")
ENV = {**os.environ, "OMP_NUM_THREADS": "2"}


def error_line(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as error:
        main(list(argv))
    assert error.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith(f"depth-train {argv[0]}: error: ")
    return lines[-1]


@pytest.fixture
def folder(redkitchen, tmp_path):
    """Four real 7-Scenes frames, the depth of frame 2 missing and the color of frame 3 not an image."""
    out = tmp_path / "frames"
    out.mkdir()
    for i in range(4):
        for kind in ("color.jpg", "depth.png"):
            shutil.copy(redkitchen / f"frame-{i:06d}.{kind}", out)
    (out / "frame-000002.depth.png").unlink()
    (out / "frame-000003.color.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    return out


def test_config_value_error_names_the_key(capsys, tmp_path):
    line = error_line(capsys, "fit", "train.steps=abc", "--data", str(tmp_path))
    assert line == "depth-train fit: error: train.steps='abc': expected an integer (from the command line)"
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  amp: maybe\n")
    line = error_line(capsys, "fit", "--config", str(bad), "--data", str(tmp_path))
    assert line.endswith(f"train.amp='maybe': expected true or false (from {bad})")
    bad.write_text("train: [steps\n")
    assert error_line(capsys, "fit", "--config", str(bad), "--data", str(tmp_path)).startswith(
        f"depth-train fit: error: config {bad}: not valid YAML (")


def test_garbage_model_file_is_one_line(capsys, folder, tmp_path):
    garbage = tmp_path / "model.pt"
    garbage.write_bytes(os.urandom(4096))
    line = error_line(capsys, "evaluate", "--model", str(garbage), "--data", str(folder))
    assert line.startswith(f"depth-train evaluate: error: {garbage}: cannot be loaded as a model (")


def test_fit_and_evaluate_skip_missing_and_unreadable_frames(folder, tmp_path, caplog, capsys):
    main(["fit", "train.steps=1", "train.batch_size=2", "data.crop_height=64", "data.crop_width=96",
          "loss.w_affinity=1", "loss.teacher_steps=2", "model.pretrained=false", "model.input_height=96",
          "model.input_width=128",
          "--data", str(folder), "--out", str(tmp_path / "run")])
    assert f"{folder}: skipped 1 frame: missing depth file (frame-000002.depth.png)" in caplog.text
    # the corrupt colour image is found when it is first read (the teacher reads every frame), skipped and said once
    assert caplog.text.count("training skips frame") == 1
    assert "frame-000003.color.jpg: unreadable color image (1 unreadable so far)" in caplog.text
    main(["evaluate", "--model", str(tmp_path / "run" / "checkpoint.pt"), "--backend", "torch", "--data", str(folder),
          "--json", str(tmp_path / "eval.json"), "--csv", str(tmp_path / "eval.csv")])
    summary = json.loads((tmp_path / "eval.json").read_text())
    assert summary["frames"] == 2
    assert summary["skipped"] == {"missing depth file": 1, "unreadable color image": 1}
    assert len((tmp_path / "eval.csv").read_text().splitlines()) == 3
    assert "skipped 1 frame: unreadable color image (frame-000003.color.jpg)" in caplog.text
    assert "frames scored 2, skipped: {'missing depth file': 1, 'unreadable color image': 1}" in capsys.readouterr().out


def test_evaluate_with_nothing_usable_fails_in_one_line(capsys, folder, checkpoint):
    for color in folder.glob("*.color.jpg"):
        color.write_bytes(b"broken")
    line = error_line(capsys, "evaluate", "--model", str(checkpoint), "--backend", "torch", "--data", str(folder))
    assert line.startswith("depth-train evaluate: error: no frame to evaluate: skipped 1 frame: missing depth file "
                           "(frame-000002.depth.png); skipped 3 frames: unreadable color image (frame-000000")


def test_ctrl_c_during_extract_exits_130_and_a_rerun_completes(tmp_path):
    frames = 1000
    bag = write_bag(tmp_path / "bag", Rig(frames=frames).log())
    out = tmp_path / "out"
    command = [DEPTH_TRAIN, "extract", "--bag", str(bag), "--out", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    index = out / "index.csv"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (index.exists() and len(index.read_text().splitlines()) > 10):
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    kept = len(index.read_text().splitlines()) - 1
    assert process.returncode == 130, err[-2000:]
    assert 10 <= kept < frames
    assert err.strip().splitlines()[-1] == (f"depth-train extract: interrupted; {kept} frames in {out} are kept; "
                                            f"rerun the same command to continue")
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300, env=ENV)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"wrote {frames} frames" in rerun.stdout
