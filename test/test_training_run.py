"""``fit`` on a log whose depth camera has another field of view and resolution (LR grid 12x9 for 64x48 colour,
factor 5.33, written here with rosbags and extracted for real), with every recipe option on: it trains, evaluates,
resumes to exactly the run it continues, refuses a changed config, and records its provenance."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from bag_fixtures import BUILD, COLOR_K, COLOR_SIZE, PERIOD_NS, START_NS, color_image, color_message, write_bag
from depth_node_training.config import load_config
from depth_node_training.evaluation.evaluate import evaluate_frames, torch_predictor
from depth_node_training.learning.checkpoint import load_model
from depth_node_training.learning.datasets import open_frames
from depth_node_training.learning.train import fit
from depth_node_training.logs.extract import extract

from depth_node.network.checkpoint import read_checkpoint

DEPTH_FX = COLOR_K[0, 0] / 5.16  # an SR300-like depth camera: 5.16x coarser angular resolution
DEPTH_SIZE = (14, 10)  # wider than the colour camera's field of view
RECIPE = ["model.pretrained=false", "train.device=cpu", "train.batch_size=2", "data.crop_height=32",
          "data.crop_width=48", "data.full_frame_fraction=0.5", "data.scale_jitter=0.25", "train.ema_decay=0.8",
          "train.freeze_encoder_bn=true", "train.log_every=1", "train.warmup_steps=2", "train.steps=5",
          "loss.affinity_grid=[3,4]", "loss.w_cons=0.5", "loss.w_affinity=1", "loss.teacher_steps=3"]


@pytest.fixture(autouse=True)
def one_thread():
    """Two shared cores: one intra-op thread is several times faster than two fighting over them."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def plane_depth(K: np.ndarray, size: tuple[int, int], k: int) -> np.ndarray:
    """Depth of a slanted plane seen by a camera at the colour camera's centre (inverse depth is linear in the
    colour image's pixel coordinates), on the pixel grid of ``K`` and ``size`` (width, height)."""
    v, u = np.mgrid[0:size[1], 0:size[0]].astype(np.float64)
    uc = COLOR_K[0, 2] + (u - K[0, 2]) * COLOR_K[0, 0] / K[0, 0]  # the same ray in colour pixels
    vc = COLOR_K[1, 2] + (v - K[1, 2]) * COLOR_K[1, 1] / K[1, 1]
    return 1.0 / (0.45 + 0.01 * k + 0.004 * uc + 0.006 * vc)


@pytest.fixture(scope="module")
def wide_fov_set(tmp_path_factory):
    """6 frames: JPEG colour 64x48, 16UC1 depth 14x10 on its own intrinsics, HR ground truth in the colour camera."""
    K_depth = np.array([[DEPTH_FX, 0, 6.5], [0, DEPTH_FX, 4.5], [0, 0, 1]])
    log = []
    for k in range(6):
        stamp = START_NS + k * PERIOD_NS
        log.append((stamp + 10_000_000, *color_message("jpeg", stamp, "cam", color_image(k))))
        log.append((stamp + 10_000_000, "/cam/camera_info", "sensor_msgs/msg/CameraInfo",
                    BUILD.camera_info(stamp, "cam", COLOR_K, COLOR_SIZE)))
        mm = np.round(plane_depth(K_depth, DEPTH_SIZE, k) * 1000).astype(np.uint16)
        log.append((stamp + 9_000_000, "/depth/image_raw", "sensor_msgs/msg/Image",
                    BUILD.image(stamp + 4_000_000, "cam", "16UC1", mm)))
        log.append((stamp + 9_000_000, "/depth/camera_info", "sensor_msgs/msg/CameraInfo",
                    BUILD.camera_info(stamp + 4_000_000, "cam", K_depth, DEPTH_SIZE)))
        gt = np.round(plane_depth(COLOR_K, COLOR_SIZE, k) * 1000).astype(np.uint16)
        log.append((stamp + 12_000_000, "/gt/image_raw", "sensor_msgs/msg/Image",
                    BUILD.image(stamp, "cam", "16UC1", gt)))
    root = tmp_path_factory.mktemp("wide_fov")
    summary = extract([write_bag(root / "bag", log)], root / "set", gt_topic="/gt/image_raw", progress=False)
    assert summary["pairs"] == 6 and summary["bags"][0]["factor"] == pytest.approx(64 / 12)
    return str(root / "set")


def log_rows(run) -> list[dict[str, str]]:
    with open(run / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_non_integer_factor_trains_and_evaluates(wide_fov_set, tmp_path):
    frames = open_frames(wide_fov_set)
    assert frames[0].depth_lr.shape == (9, 12) and frames[0].color.shape == (48, 64, 3)
    cfg = load_config(None, [*RECIPE, "train.steps=3"])
    path = fit(cfg, [wide_fov_set], tmp_path, progress=False)
    rows = log_rows(tmp_path)
    assert [r["step"] for r in rows] == ["1", "2", "3"]
    for name in ("l_lr", "l_hr", "l_cons", "l_affinity", "grad_norm"):
        assert all(np.isfinite(float(r[name])) for r in rows), name
    model, _, meta = load_model(path)
    summary = evaluate_frames(torch_predictor(model, cfg.model.mean, cfg.model.std), frames, previews=0)
    assert summary["frames"] == 6 and 0 < summary["abs_rel"] < 10 and meta["step"] == 3


def test_resumed_run_equals_the_uninterrupted_run(wide_fov_set, tmp_path):
    """5 steps straight vs 2 steps, stop, resume for 3 more, crossing an epoch (3 batches of 2 frames), with two data
    workers: the samples do not depend on who loads them. Tolerance: none, the weights, EMA, teacher and optimiser
    state are bitwise equal on CPU."""
    cfg = load_config(None, RECIPE)
    straight = read_checkpoint(fit(cfg, [wide_fov_set], tmp_path / "straight", progress=False))
    fit(cfg, [wide_fov_set], tmp_path / "split", progress=False, stop_after=2)
    assert read_checkpoint(tmp_path / "split" / "checkpoint.pt")["resume"]["batch"] == 2
    resumed_cfg = load_config(None, [*RECIPE, "train.num_workers=2"])
    resumed = read_checkpoint(fit(resumed_cfg, [wide_fov_set], tmp_path / "split", resume=True, progress=False))
    assert resumed["step"] == straight["step"] == 5 and resumed["resume"]["epoch"] == 1
    for part in ("model", "teacher"):
        for key, value in straight[part].items():
            assert torch.equal(value, resumed[part][key]), f"{part}.{key}"
    for key, value in straight["resume"]["raw_model"].items():
        assert torch.equal(value, resumed["resume"]["raw_model"][key]), key
    for state, other in zip(straight["optimizer"]["state"].values(), resumed["optimizer"]["state"].values()):
        assert all(torch.equal(state[k], other[k]) for k in state)
    assert not torch.equal(straight["model"]["head.conv.weight"], straight["resume"]["raw_model"]["head.conv.weight"])
    losses = [{k: v for k, v in r.items() if k != "seconds"} for r in log_rows(tmp_path / "straight")]
    assert losses == [{k: v for k, v in r.items() if k != "seconds"} for r in log_rows(tmp_path / "split")]


def test_resume_refuses_another_config_or_data_unless_allowed(wide_fov_set, tmp_path):
    cfg = load_config(None, [*RECIPE, "train.steps=2"])
    fit(cfg, [wide_fov_set], tmp_path, progress=False, stop_after=1)
    with pytest.raises(ValueError, match=r"pt was trained with another config \(train\.lr: 0\.0005 -> 0\.001\)"):
        fit(load_config(None, [*RECIPE, "train.steps=2", "train.lr=0.001"]), [wide_fov_set], tmp_path, resume=True,
            progress=False)
    with pytest.raises(ValueError, match="data: "):
        fit(cfg, [f"{wide_fov_set}@0:4"], tmp_path, resume=True, progress=False)
    assert read_checkpoint(tmp_path / "checkpoint.pt")["step"] == 1  # nothing was touched
    more = load_config(None, [*RECIPE, "train.steps=3"])
    state = read_checkpoint(fit(more, [wide_fov_set], tmp_path, resume=True, allow_config_change=True,
                                progress=False))
    assert state["step"] == 3 and state["config"]["train"]["steps"] == 3
    assert [r["step"] for r in log_rows(tmp_path)] == ["1", "2", "3"]


def test_checkpoint_records_provenance_and_resume_drops_rows_past_it(wide_fov_set, tmp_path):
    cfg = load_config(None, [*RECIPE, "train.steps=3", "train.checkpoint_every=1", "train.seed=7"])
    fit(cfg, [wide_fov_set], tmp_path, progress=False, stop_after=2)
    state = read_checkpoint(tmp_path / "checkpoint.pt")
    meta = state["meta"]
    assert meta["seed"] == 7 and meta["steps"] == 3 and meta["step"] == 2 and meta["data"] == [wide_fov_set]
    assert len(meta["git_rev"]) >= 7 and meta["git_dirty"] in (True, False)
    assert state["config"]["data"]["scale_jitter"] == 0.25 and state["config"]["train"]["ema_decay"] == 0.8
    assert set(state["resume"]) >= {"epoch", "batch", "rng", "scaler", "raw_model", "ema_updates"}
    # a crash after logging step 3 but before its checkpoint: the resumed run trains step 3 again, logged once
    with open(tmp_path / "log.csv", "a") as f:
        f.write("3,0,0,0,0,0,0,0,0,0,0\n")
    fit(cfg, [wide_fov_set], tmp_path, resume=True, progress=False)
    rows = log_rows(tmp_path)
    assert [r["step"] for r in rows] == ["1", "2", "3"] and float(rows[-1]["loss"]) > 0


@pytest.mark.parametrize("pretrained", [True, False])
def test_encoder_batchnorm_keeps_imagenet_statistics_only_when_there_are_some(pretrained):
    from depth_node_training.learning.objective import WeakObjective
    from depth_node_training.learning.train import train_mode
    from torch import nn

    from depth_node.network.depth_estimator import DepthEstimator

    cfg = load_config(None, [f"model.pretrained={str(pretrained).lower()}"])
    assert cfg.train.freeze_encoder_bn  # the default, chosen on validation
    objective = WeakObjective(DepthEstimator(cfg.model), None, cfg)
    train_mode(objective, cfg)
    encoder_bn = [m for m in objective.model.encoder.modules() if isinstance(m, nn.BatchNorm2d)]
    decoder_bn = [m for m in objective.model.decoder.modules() if isinstance(m, nn.BatchNorm2d)]
    assert encoder_bn and all(m.training != pretrained for m in encoder_bn)
    assert decoder_bn and all(m.training for m in decoder_bn)
    before = encoder_bn[0].running_mean.clone()
    objective.model(torch.rand(2, 3, 64, 64))
    assert torch.equal(encoder_bn[0].running_mean, before) == pretrained


@pytest.mark.parametrize("stats", ["both", "hr"])
def test_decoder_running_statistics_come_from_the_passes_asked_for(stats):
    """`hr`: the LR pass normalises with its own batch statistics but leaves the running ones to the deployed HR
    pass, so they equal what the HR pass alone gives; `both` mixes the two (the earlier behaviour)."""
    from depth_node_training.learning.objective import weak_losses
    from torch import nn

    from depth_node.network.depth_estimator import DepthEstimator

    cfg = load_config(None, ["model.pretrained=false", f"train.decoder_bn_stats={stats}"])
    torch.manual_seed(0)
    model = DepthEstimator(cfg.model).train()
    alone = DepthEstimator(cfg.model).train()
    alone.load_state_dict(model.state_dict())
    image, depth_lr = torch.rand(2, 3, 64, 64), 1 + torch.rand(2, 1, 16, 16)
    terms = weak_losses(model, None, image, depth_lr, torch.zeros(2, 1, 64, 64), cfg)
    assert {"l_lr", "l_hr"} <= set(terms)  # both passes ran
    alone.forward_features(image)
    bn = [(a, b) for a, b in zip(model.decoder.modules(), alone.decoder.modules()) if isinstance(a, nn.BatchNorm2d)]
    same = all(torch.allclose(a.running_mean, b.running_mean) and torch.allclose(a.running_var, b.running_var)
               for a, b in bn)
    assert same == (stats == "hr")
    assert all(a.momentum == 0.1 for a, _ in bn)  # restored after the LR pass


def test_the_log_says_how_often_the_gradient_was_clipped(wide_fov_set, tmp_path):
    fit(load_config(None, [*RECIPE, "train.steps=4", "train.log_every=2", "train.grad_clip=1e-6"]), [wide_fov_set],
        tmp_path / "always", progress=False)
    fit(load_config(None, [*RECIPE, "train.steps=4", "train.log_every=2", "train.grad_clip=0"]), [wide_fov_set],
        tmp_path / "never", progress=False)
    assert [r["clipped"] for r in log_rows(tmp_path / "always")] == ["1.0", "1.0"]
    assert [r["clipped"] for r in log_rows(tmp_path / "never")] == ["0.0", "0.0"]


@pytest.mark.parametrize("cons_grad", ["both", "hr_teaches_lr", "lr_teaches_hr"])
def test_consistency_sends_its_gradient_only_to_the_side_that_learns(cons_grad):
    from depth_node_training.learning.objective import consistency

    cfg = load_config(None, [f"loss.cons_grad={cons_grad}", "loss.cons_penalty=charbonnier"])
    d_lr, d_hr = (torch.full((1, 1, 4, 4), v, requires_grad=True) for v in (1.0, 2.0))
    consistency(d_lr, d_hr, cfg).backward()
    assert (d_lr.grad is not None and d_lr.grad.abs().sum() > 0) == (cons_grad != "lr_teaches_hr")
    assert (d_hr.grad is not None and d_hr.grad.abs().sum() > 0) == (cons_grad != "hr_teaches_lr")


def test_lr_coarse_distils_the_lr_branch_one_to_one_at_the_teachers_coarsest_level():
    from depth_node_training.learning.objective import STUDENT_STRIDES, distilled

    lr_feats, hr_feats = ["lr"] * 5, ["hr"] * 5
    pairs = distilled([(lr_feats, (60, 80)), (hr_feats, (240, 320))], (60, 80), "lr_coarse")
    assert [(f[0], size, level, stride, t) for f, size, level, stride, t in pairs] == [
        ("lr", (60, 80), STUDENT_STRIDES.index(4), 4, 0)]
    matched = distilled([(lr_feats, (60, 80)), (hr_feats, (240, 320))], (60, 80), "matched")
    assert {f[0] for f, *_ in matched} == {"lr", "hr"} and len(matched) == 4


def test_every_variant_of_the_papers_parts_trains(wide_fov_set, tmp_path):
    cfg = load_config(None, [*RECIPE, "train.steps=2", "loss.cons_grad=hr_teaches_lr", "loss.cons_penalty=charbonnier",
                             "loss.teacher_view=full", "loss.distill=lr_coarse", "loss.affinity_form=reference",
                             "loss.affinity_grid=[2,3]", "train.decoder_bn_stats=hr", "loss.w_planar=1"])
    fit(cfg, [wide_fov_set], tmp_path, progress=False)
    rows = log_rows(tmp_path)
    assert [r["step"] for r in rows] == ["1", "2"]
    assert all(np.isfinite(float(r[k])) and float(r[k]) >= 0 for r in rows for k in ("l_cons", "l_affinity",
                                                                                      "l_planar"))


def test_train_init_starts_from_another_checkpoint_and_names_a_bad_one(wide_fov_set, tmp_path):
    cfg = load_config(None, [*RECIPE, "train.steps=1"])
    first = fit(cfg, [wide_fov_set], tmp_path / "first", progress=False)
    tuned = fit(load_config(None, [*RECIPE, "train.steps=1", f"train.init={first}", "train.lr=1e-12",
                                   "train.ema_decay=0"]), [wide_fov_set], tmp_path / "tuned", progress=False)
    state, start = read_checkpoint(tuned), read_checkpoint(first)["model"]
    assert state["meta"]["init"] == str(first) and len(state["meta"]["init_sha256"]) == 64
    assert torch.allclose(state["model"]["head.conv.weight"], start["head.conv.weight"], atol=1e-6)
    with pytest.raises(ValueError, match=r"^train\.init=.*missing\.pt: cannot start from it \(checkpoint .* does not "):
        fit(load_config(None, [*RECIPE, "train.steps=1", f"train.init={tmp_path / 'missing.pt'}"]), [wide_fov_set],
            tmp_path / "bad", progress=False)


def test_affinity_share_measures_the_weight_once_and_a_resumed_run_reads_it_back(wide_fov_set, tmp_path, capsys):
    cfg = load_config(None, [*RECIPE, "train.steps=3", "loss.affinity_share=0.25", "loss.affinity_warmup=0",
                             "train.ema_decay=0"])
    straight = read_checkpoint(fit(cfg, [wide_fov_set], tmp_path / "straight", progress=False))
    weight = straight["meta"]["affinity_weight"]
    assert weight > 0 and f"w_affinity = {weight:.4g}" in capsys.readouterr().out

    def summed(row: dict[str, str], w: float) -> float:  # the log's loss as the weights say it is made
        return float(row["l_lr"]) + float(row["l_hr"]) + 0.5 * float(row["l_cons"]) + w * float(row["l_affinity"])

    rows = log_rows(tmp_path / "straight")[1:]  # from step 2: the term at full weight
    assert all(float(r["loss"]) == pytest.approx(summed(r, weight), rel=1e-5) for r in rows)
    split = tmp_path / "split"
    fit(cfg, [wide_fov_set], split, progress=False, stop_after=1)
    state = read_checkpoint(split / "checkpoint.pt")
    assert state["meta"]["affinity_weight"] == weight
    state["meta"]["affinity_weight"] = 2 * weight  # the resumed run must use the kept weight, not measure again
    torch.save(state, split / "checkpoint.pt")
    fit(cfg, [wide_fov_set], split, resume=True, progress=False)
    assert all(float(r["loss"]) == pytest.approx(summed(r, 2 * weight), rel=1e-5) for r in log_rows(split)[1:])
