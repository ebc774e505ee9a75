"""Two CPU processes under torchrun (gloo) train the same model: DistributedDataParallel keeps their weights equal."""

import os
import subprocess
import sys

import torch
from depth_node_training.config import load_config
from depth_node_training.learning.train import fit

from depth_node.network.checkpoint import read_checkpoint

SCRIPT = """
import sys
from pathlib import Path
from depth_node_training.config import load_config
from depth_node_training.learning.train import fit
cfg = load_config(None, sys.argv[2:])
fit(cfg, [sys.argv[1]], Path(sys.argv[1]).parent / "run", progress=False)
"""


def test_two_process_ddp_fit(redkitchen, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(4):
        for suffix in ("color.jpg", "depth.png"):
            (data / f"frame-{i:06d}.{suffix}").symlink_to(redkitchen / f"frame-{i:06d}.{suffix}")
    overrides = ["train.steps=2", "train.batch_size=2", "train.device=cpu", "model.pretrained=false",
                 "data.crop_height=64", "data.crop_width=96", "train.log_every=1", "train.checkpoint_every=1",
                 "loss.teacher_steps=3"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    script = tmp_path / "ddp_fit.py"
    script.write_text(SCRIPT)
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script), str(data),
         *overrides], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    state = read_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert state["step"] == 2 and state["meta"]["world_size"] == 2
    # the same seed on one process gives different weights: the run above really averaged two processes' gradients
    single = fit(load_config(None, overrides), [str(data)], tmp_path / "single", progress=False)
    key = next(iter(state["model"]))  # the first layer's weights
    assert not torch.equal(read_checkpoint(single)["model"][key], state["model"][key])
