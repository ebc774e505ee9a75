"""``fit``: train the estimator on HR color + LR depth (after pre-training its frozen distillation teacher).

Reads top to bottom: set-up (devices, DDP under torchrun), data, models, optimiser, resume, then the loop with a pure
LR schedule, autocast on GPU, gradient clipping (estimator and teacher apart), an EMA of the estimator, CSV log, tqdm
progress and periodic atomic checkpoints holding every state a resumed run needs to continue exactly: weights, EMA,
optimiser, GradScaler, RNG states and the position in the data order (which with per-sample seeding fixes every later
sample, see training_pairs.py).
"""

from __future__ import annotations

import csv
import logging
import math
import os
import time
from contextlib import nullcontext
from dataclasses import replace
from itertools import islice
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader, default_collate
from tqdm import tqdm

from depth_node.model_files import file_sha256
from depth_node.network.checkpoint import float_state
from depth_node.network.depth_estimator import DepthEstimator
from depth_node.network.factory import make_network

from ..config import Config, LossConfig
from ..evaluation.evaluate import torch_predictor, validation_metrics
from ..frames import split_by_time
from .checkpoint import (
    config_changes,
    git_dirty,
    git_revision,
    read_checkpoint,
    restore_rng_states,
    rng_states,
    save_checkpoint,
)
from .datasets import Concat, open_frames
from .fastdepth_tflite import load_fastdepth_prior
from .gradient_share import SHARE_BATCHES, affinity_weight
from .neighbours import frame_poses
from .networks import ReconstructionNet
from .objective import WeakObjective, total_loss
from .teacher import IMAGE_TEACHERS, freeze, image_teacher, pretrain_teacher
from .training_pairs import EpochBatches, TrainingPairs

logger = logging.getLogger(__name__)


def learning_rate(step: int, cfg: Config) -> float:
    """Linear warm-up, then cosine decay to 5% of the peak."""
    t = cfg.train
    if step < t.warmup_steps:
        return t.lr * (step + 1) / t.warmup_steps
    progress = (step - t.warmup_steps) / max(1, t.steps - t.warmup_steps)
    return t.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def pick_device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(f"cuda:{local_rank}") if name == "cuda" else torch.device(name)


def normalise(image: torch.Tensor, cfg: Config) -> torch.Tensor:
    mean = torch.tensor(cfg.model.mean, device=image.device).view(1, 3, 1, 1)
    std = torch.tensor(cfg.model.std, device=image.device).view(1, 3, 1, 1)
    return (image - mean) / std


def batches(loader: DataLoader, sampler: EpochBatches, epoch: int, start: int):
    """Endless ``(batch, position after it)`` from batch ``start`` of ``epoch`` on; a position is (epoch, batches of
    it done), with a finished epoch written as (next epoch, 0)."""
    while True:
        sampler.set_position(epoch, start)
        last = sampler.batches_per_epoch()
        for done, batch in enumerate(loader, start + 1):
            yield batch, ((epoch, done) if done < last else (epoch + 1, 0))
        epoch, start = epoch + 1, 0


def exponential_average(model: nn.Module, decay: float) -> AveragedModel | None:
    """EMA of the weights and BatchNorm statistics; the decay ramps up as min(decay, (1+n)/(10+n)) over the first
    updates so the average is not anchored to the random initialisation. None when ``decay`` is 0."""
    if decay <= 0:
        return None

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], n: torch.Tensor) -> None:
        if not torch.is_floating_point(averaged[0]):  # counters (BatchNorm's num_batches_tracked): copied
            for a, c in zip(averaged, current):
                a.copy_(c)
            return
        updates = int(n)
        torch._foreach_lerp_(averaged, current, 1.0 - min(decay, (1.0 + updates) / (10.0 + updates)))

    return AveragedModel(model, multi_avg_fn=update, use_buffers=True)


def train_mode(objective: WeakObjective, cfg: Config) -> None:
    """Training mode, except the encoder's BatchNorm layers under ``train.freeze_encoder_bn``: in eval mode they use
    and keep their (ImageNet) running statistics instead of re-estimating them from batches of a few crops."""
    objective.train()
    if cfg.train.freeze_encoder_bn and cfg.model.pretrained:  # random weights have no statistics to keep
        for module in objective.model.encoder.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


def fit(cfg: Config, data: list[str], out_dir: Path, resume: bool = False, progress: bool = True,
        allow_config_change: bool = False, stop_after: int | None = None) -> Path:
    """Train for ``cfg.train.steps`` steps on the frames of ``data``; returns the final checkpoint's path.

    ``resume`` continues OUT/checkpoint.pt where it stopped and refuses one trained with another config or data
    unless ``allow_config_change``. ``stop_after`` ends this session after that many steps in all, checkpointed, as
    an interruption would (the schedule still spans ``train.steps``; resume to go on).
    """
    out_dir, t = Path(out_dir), cfg.train
    ddp = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if ddp:
        dist.init_process_group("nccl" if torch.cuda.is_available() and t.device != "cpu" else "gloo")
    rank, world = (dist.get_rank(), dist.get_world_size()) if ddp else (0, 1)
    device = pick_device(t.device, int(os.environ.get("LOCAL_RANK", "0")))
    master = rank == 0
    torch.manual_seed(t.seed + rank)

    frames = Concat([open_frames(spec, cfg) for spec in data])
    if len(frames) == 0:
        raise ValueError(f"no frames in {data}")
    val_frames = None
    if cfg.data.val_fraction > 0:
        frames, val_frames = split_by_time(frames, cfg.data.val_fraction)
    checkpoint_path = out_dir / "checkpoint.pt"
    state = read_checkpoint(checkpoint_path) if resume and checkpoint_path.exists() else None
    if state is not None:
        check_same_run(state, cfg, data, len(frames), checkpoint_path, allow_config_change)
    dataset = TrainingPairs(frames, cfg.data, seed=t.seed, loss=cfg.loss)
    if cfg.loss.w_motion > 0 and master:
        say_posed(frames, cfg.loss)
    sampler = EpochBatches(len(dataset), t.batch_size, t.seed, cfg.data.full_frame_fraction, rank, world)
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=t.num_workers, pin_memory=device.type == "cuda",
                        persistent_workers=t.num_workers > 0)  # workers keep their frame cache across epochs

    model = make_network(cfg.model).to(device)
    if state is None and t.init:  # fine-tuning: another checkpoint's weights (a resumed run has its own)
        start_from(model, Path(t.init))
    elif state is None and cfg.model.arch == "fastdepth" and cfg.model.pretrained:  # the prior: NYU-trained weights
        load_fastdepth_prior(model, cfg.model)
    teacher = None
    if cfg.loss.w_affinity > 0:  # pre-trained on the training frames' LR depth, then frozen (teacher.py)
        if cfg.loss.teacher in IMAGE_TEACHERS:  # trained elsewhere: used as it is
            teacher = image_teacher(cfg, device)
        elif state is not None and "teacher" in state:
            teacher = freeze(ReconstructionNet(cfg.model.min_depth, cfg.model.max_depth).to(device))
        else:
            teacher = pretrain_teacher(dataset, cfg, device, progress=master and progress)
    ema = exponential_average(model, t.ema_decay)
    groups = [{"params": model.encoder.parameters(), "scale": t.encoder_lr_scale},
              {"params": [*model.decoder.parameters(), *model.head.parameters()], "scale": 1.0}]
    optimizer = torch.optim.AdamW(groups, lr=t.lr, weight_decay=t.weight_decay)
    use_amp = t.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    autocast = torch.autocast("cuda", dtype=amp_dtype) if use_amp else nullcontext()
    scaler = torch.amp.GradScaler(enabled=use_amp and amp_dtype == torch.float16)

    step, position = 0, (0, 0)
    if state is not None:
        step, position = restore(state, model, teacher, ema, optimizer, scaler)
    objective = WeakObjective(model, teacher, cfg)
    train_objective = DistributedDataParallel(objective) if ddp else objective
    meta = {"data": data, "frames": len(frames), "git_rev": git_revision(), "git_dirty": git_dirty(),
            **({"init": t.init, "init_sha256": file_sha256(t.init)} if t.init else {}),
            "seed": t.seed, "steps": t.steps, "world_size": world}
    weights = cfg  # the config whose loss weights are summed: w_affinity measured when loss.affinity_share is set
    if teacher is not None and cfg.loss.affinity_share > 0:
        meta["affinity_weight"] = (state or {}).get("meta", {}).get("affinity_weight") or measure_affinity_weight(
            objective, dataset, cfg, device, say=master)
        weights = replace(cfg, loss=replace(cfg.loss, w_affinity=meta["affinity_weight"]))

    log_file = None
    if master:
        out_dir.mkdir(parents=True, exist_ok=True)
        log_file = open_log(out_dir / "log.csv", step)
        if val_frames is not None:
            open_log(out_dir / "val.csv", step).close()
    writer = log = None
    end = min(t.steps, stop_after) if stop_after is not None else t.steps
    bar = tqdm(total=end, initial=step, disable=not (master and progress), desc="fit", dynamic_ncols=True)
    stream = batches(loader, sampler, *position)
    start = time.time()
    clipped, logged = 0, step  # steps whose gradient was clipped since the last log row
    seen, samples = 0, 0  # samples with a usable neighbour for the motion term since the last log row
    train_mode(objective, cfg)
    while step < end:
        batch, position = next(stream)
        lr = learning_rate(step, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr * group["scale"]
        image = normalise(batch["image"].to(device, non_blocking=True), cfg)
        depth_lr = batch["depth_lr"].to(device, non_blocking=True)
        depth_hr = batch["depth_hr"].to(device, non_blocking=True)
        motion = {k: v.to(device, non_blocking=True) for k, v in batch.items() if k.startswith("motion_")} or None
        if motion is not None:
            seen += int(motion["motion_available"].any(1).sum())
            samples += len(image)
        with autocast:
            terms = train_objective(image, depth_lr, depth_hr, motion)
            ramp = min(1.0, step / max(1.0, cfg.loss.affinity_warmup * t.steps))
            loss = total_loss(terms, weights, ramp)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        grad_norm = nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip or math.inf)
        clipped += bool(t.grad_clip and grad_norm > t.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        if ema is not None:
            ema.update_parameters(model)
        step += 1

        if master:
            bar.update()
            if step % t.log_every == 0 or step == end:  # reading values waits for the GPU: only when logged
                values = {k: v.item() for k, v in terms.items()}
                bar.set_postfix({k: f"{v:.3f}" for k, v in values.items()})
                row = {"step": step, "lr": lr, "loss": loss.item(), "seconds": round(time.time() - start, 2),
                       **values, "grad_norm": grad_norm.item(), "clipped": round(clipped / (step - logged), 3)}
                if samples:
                    row["motion_seen"] = round(seen / samples, 3)
                clipped, logged, seen, samples = 0, step, 0, 0
                log = log or csv.DictWriter(log_file, fieldnames=list(row))
                if log_file.tell() == 0:
                    log.writeheader()
                log.writerow(row)
                log_file.flush()
                if t.tensorboard:
                    writer = writer or _tensorboard(out_dir)
                    for k, v in row.items():
                        writer.add_scalar(f"train/{k}", v, step)
            if step % t.checkpoint_every == 0 or step == end:
                deployed = ema.module if ema is not None else model
                save_checkpoint(checkpoint_path, deployed, cfg, step, {**meta, "epoch": position[0]}, optimizer,
                                teacher, resume=resume_state(position, model, ema, scaler))
                if val_frames is not None and len(val_frames):
                    validate(deployed, val_frames, cfg, step, out_dir / "val.csv", bar)
                    train_mode(objective, cfg)
    bar.close()
    if log_file:
        log_file.close()
    if ddp:
        dist.barrier()
        dist.destroy_process_group()
    return checkpoint_path


def measure_affinity_weight(objective: WeakObjective, dataset: TrainingPairs, cfg: Config, device: torch.device,
                            say: bool = True) -> float:
    """``w_affinity`` from ``loss.affinity_share`` on the first batches of epoch 0 (rank 0's, so every rank agrees)."""
    order = EpochBatches(len(dataset), cfg.train.batch_size, cfg.train.seed, cfg.data.full_frame_fraction)
    batches = [default_collate([dataset[k] for k in batch]) for batch in islice(order, SHARE_BATCHES)]
    train_mode(objective, cfg)
    weight = affinity_weight(objective, [(normalise(b["image"].to(device), cfg), b["depth_lr"].to(device),
                                          b["depth_hr"].to(device)) for b in batches], cfg)
    if say:
        print(f"distillation (loss.affinity_share={cfg.loss.affinity_share:g}): w_affinity = {weight:.4g}, measured "
              f"on {len(batches)} batches before the first step (kept in the checkpoint's meta)")
    return weight


def say_posed(frames, loss: LossConfig) -> None:
    """One line on how many training frames the motion term can use (a log without poses trains as without it)."""
    poses = frame_poses(frames)
    if poses is None:
        print("motion term (loss.w_motion): the readers keep no pose list; the log's motion_seen column says which "
              "share of samples had a usable neighbour")
        return
    posed = sum(p is not None for p in poses)
    if posed == 0:
        logger.warning("motion term (loss.w_motion): none of the %d training frames has a camera pose; it gives no "
                       "signal and training goes on with the other terms", len(poses))
    else:
        print(f"motion term (loss.w_motion): {posed} of {len(poses)} training frames have a camera pose; frames "
              f"without one, or without a neighbour {' or '.join(map(str, loss.motion_offsets))} frames away and at "
              f"least {loss.motion_min_baseline:g} m off, get no motion signal (log column motion_seen)")


def start_from(model: nn.Module, checkpoint: Path) -> None:
    """Fine-tuning: the estimator weights of another checkpoint (the same architecture; strict keys)."""
    try:
        state = read_checkpoint(checkpoint)["model"]
        model.load_state_dict(float_state(state))
    except (RuntimeError, ValueError, OSError) as error:
        first = str(error).strip().splitlines()[0]
        raise ValueError(f"train.init={checkpoint}: cannot start from it ({first})") from None


def check_same_run(state: dict[str, Any], cfg: Config, data: list[str], frames: int, path: Path,
                   allow_change: bool) -> None:
    """Refuse to continue a checkpoint under another config or data: the result would be neither run."""
    changes = config_changes(state["config"], cfg)
    meta = state.get("meta", {})
    if list(meta.get("data", data)) != list(data):
        changes.append(f"data: {meta['data']} -> {data}")
    elif meta.get("frames", frames) != frames:
        changes.append(f"training frames: {meta['frames']} -> {frames}")
    if changes and not allow_change:
        raise ValueError(f"{path} was trained with another config ({'; '.join(changes)}); resume with the same "
                         "config and data, or allow the change (allow_config_change) to continue anyway")


def resume_state(position: tuple[int, int], model: nn.Module, ema: AveragedModel | None,
                 scaler: torch.amp.GradScaler) -> dict[str, Any]:
    """What a checkpoint needs beyond the deployed weights, optimiser and teacher to continue exactly."""
    state = {"epoch": position[0], "batch": position[1], "rng": rng_states(), "scaler": scaler.state_dict()}
    if ema is not None:
        state.update(raw_model=model.state_dict(), ema_updates=int(ema.n_averaged))
    return state


def restore(state: dict[str, Any], model: nn.Module, teacher: nn.Module | None, ema: AveragedModel | None,
            optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> tuple[int, tuple[int, int]]:
    """Load every training state of a checkpoint; returns (step, data position)."""
    extra = state.get("resume", {})
    if not extra:
        logger.warning("checkpoint at step %d predates exact resume: its data order and RNG states start afresh",
                       state["step"])
    model.load_state_dict(extra.get("raw_model", state["model"]))
    if ema is not None:
        if "ema_updates" in extra:
            ema.module.load_state_dict(state["model"])
            ema.n_averaged.fill_(extra["ema_updates"])
        else:  # EMA switched on for this run: it starts from the current weights
            ema.n_averaged.zero_()
    optimizer.load_state_dict(state["optimizer"])
    if teacher is not None:
        teacher.load_state_dict(state["teacher"])
    scaler.load_state_dict(extra.get("scaler", {}))
    if "rng" in extra:
        restore_rng_states(extra["rng"])
    return state["step"], (extra.get("epoch", 0), extra.get("batch", 0))


def open_log(path: Path, step: int):
    """The CSV log opened for appending, holding only rows up to ``step``: a fresh run (step 0) starts it anew, a
    resumed one drops rows logged after its checkpoint (they are trained again)."""
    rows = path.read_text().splitlines(keepends=True) if path.exists() and step > 0 else []
    kept = rows[:1] + [r for r in rows[1:] if r.split(",", 1)[0].isdigit() and int(r.split(",", 1)[0]) <= step]
    path.write_text("".join(kept))
    return path.open("a", newline="")


def validate(model: DepthEstimator, frames, cfg: Config, step: int, path: Path, bar: tqdm) -> None:
    """Held-out metrics (the last ``data.val_fraction`` of the data by time) appended to val.csv."""
    model.eval()
    metrics = {"step": step, **validation_metrics(torch_predictor(model, cfg.model.mean, cfg.model.std), frames,
                                                  cfg.data)}
    new = not path.exists() or path.stat().st_size == 0
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(metrics))
        if new:
            writer.writeheader()
        writer.writerow(metrics)
    bar.write("validation " + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))


def _tensorboard(out_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:
        raise ImportError("train.tensorboard=true needs `pip install tensorboard`") from error
    return SummaryWriter(str(out_dir / "tensorboard"))
