"""``fit``: train the estimator on HR color + LR depth (after pre-training its frozen distillation teacher).

Reads top to bottom: set-up (devices, DDP under torchrun), data, models, optimiser, then the loop with a pure LR
schedule, autocast on GPU, gradient clipping, CSV log, tqdm progress, periodic atomic checkpoints and resume.
"""

from __future__ import annotations

import csv
import math
import os
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler
from tqdm import tqdm

from .checkpoint import git_revision, read_checkpoint, save_checkpoint
from .config import Config
from .datasets import Concat, open_frames
from .evaluate import torch_predictor, validation_metrics
from .frames import split_by_time
from .networks import DepthEstimator, ReconstructionNet
from .objective import WeakObjective, total_loss
from .teacher import freeze, pretrain_teacher
from .training_pairs import TrainingPairs


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


def batches(loader: DataLoader):
    """Endless stream of batches; tells a DistributedSampler the epoch so each epoch is shuffled differently."""
    epoch = 0
    while True:
        if isinstance(loader.sampler, DistributedSampler):
            loader.sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def fit(cfg: Config, data: list[str], out_dir: Path, resume: bool = False, progress: bool = True) -> Path:
    """Train for ``cfg.train.steps`` steps on the frames of ``data``; returns the final checkpoint's path."""
    out_dir = Path(out_dir)
    ddp = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if ddp:
        dist.init_process_group("nccl" if torch.cuda.is_available() and cfg.train.device != "cpu" else "gloo")
    rank, world = (dist.get_rank(), dist.get_world_size()) if ddp else (0, 1)
    device = pick_device(cfg.train.device, int(os.environ.get("LOCAL_RANK", "0")))
    master = rank == 0
    torch.manual_seed(cfg.train.seed + rank)

    frames = Concat([open_frames(spec, cfg) for spec in data])
    if len(frames) == 0:
        raise ValueError(f"no frames in {data}")
    val_frames = None
    if cfg.data.val_fraction > 0:
        frames, val_frames = split_by_time(frames, cfg.data.val_fraction)
    dataset = TrainingPairs(frames, cfg.data, seed=cfg.train.seed + rank)
    sampler = (DistributedSampler(dataset, seed=cfg.train.seed) if ddp
               else RandomSampler(dataset, generator=torch.Generator().manual_seed(cfg.train.seed)))
    loader = DataLoader(dataset, batch_size=cfg.train.batch_size, sampler=sampler, num_workers=cfg.train.num_workers,
                        pin_memory=device.type == "cuda")

    model = DepthEstimator(cfg.model).to(device)
    groups = [{"params": model.encoder.parameters(), "scale": cfg.train.encoder_lr_scale},
              {"params": [*model.decoder.parameters(), *model.head.parameters()], "scale": 1.0}]
    optimizer = torch.optim.AdamW(groups, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    step = 0
    checkpoint_path = out_dir / "checkpoint.pt"
    state = read_checkpoint(checkpoint_path) if resume and checkpoint_path.exists() else None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step = state["step"]
    teacher = None
    if cfg.loss.w_affinity > 0:  # pre-trained on the training frames' LR depth, then frozen (teacher.py)
        if state is not None and "teacher" in state:
            teacher = ReconstructionNet(cfg.model.min_depth, cfg.model.max_depth).to(device)
            teacher = freeze(teacher.requires_grad_(False))
            teacher.load_state_dict(state["teacher"])
        else:
            teacher = pretrain_teacher(frames, cfg, device, progress=master and progress)
    objective = WeakObjective(model, teacher, cfg)
    train_objective = DistributedDataParallel(objective) if ddp else objective

    use_amp = cfg.train.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    autocast = torch.autocast("cuda", dtype=amp_dtype) if use_amp else nullcontext()
    scaler = torch.amp.GradScaler(enabled=use_amp and amp_dtype == torch.float16)
    meta = {"data": data, "frames": len(frames), "git_rev": git_revision(), "world_size": world}

    log_file = None
    if master:
        out_dir.mkdir(parents=True, exist_ok=True)
        log_file = (out_dir / "log.csv").open("a", newline="")
    writer = log = None
    bar = tqdm(total=cfg.train.steps, initial=step, disable=not (master and progress), desc="fit", dynamic_ncols=True)
    stream = batches(loader)
    start = time.time()
    objective.train()
    while step < cfg.train.steps:
        batch = next(stream)
        lr = learning_rate(step, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr * group["scale"]
        image = normalise(batch["image"].to(device, non_blocking=True), cfg)
        depth_lr = batch["depth_lr"].to(device, non_blocking=True)
        depth_hr = batch["depth_hr"].to(device, non_blocking=True)
        with autocast:
            terms = train_objective(image, depth_lr, depth_hr)
            ramp = min(1.0, step / max(1.0, cfg.loss.affinity_warmup * cfg.train.steps))
            loss = total_loss(terms, cfg, ramp)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], cfg.train.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        step += 1

        if master:
            values = {k: v.item() for k, v in terms.items()}
            bar.set_postfix({k: f"{v:.3f}" for k, v in values.items()})
            bar.update()
            if step % cfg.train.log_every == 0 or step == cfg.train.steps:
                row = {"step": step, "lr": lr, "loss": loss.item(), "seconds": round(time.time() - start, 2), **values}
                log = log or csv.DictWriter(log_file, fieldnames=list(row))
                if log_file.tell() == 0:
                    log.writeheader()
                log.writerow(row)
                log_file.flush()
                if cfg.train.tensorboard:
                    writer = writer or _tensorboard(out_dir)
                    for k, v in row.items():
                        writer.add_scalar(f"train/{k}", v, step)
            if step % cfg.train.checkpoint_every == 0 or step == cfg.train.steps:
                save_checkpoint(checkpoint_path, model, cfg, step, meta, optimizer, teacher)
                if val_frames is not None and len(val_frames):
                    validate(model, val_frames, cfg, step, out_dir / "val.csv", bar)
                    objective.train()
    bar.close()
    if log_file:
        log_file.close()
    if ddp:
        dist.barrier()
        dist.destroy_process_group()
    return checkpoint_path


def validate(model: DepthEstimator, frames, cfg: Config, step: int, path: Path, bar: tqdm) -> None:
    """Held-out metrics (the last ``data.val_fraction`` of the data by time) appended to val.csv."""
    model.eval()
    metrics = {"step": step, **validation_metrics(torch_predictor(model, cfg.model.mean, cfg.model.std), frames,
                                                  cfg.data)}
    new = not path.exists()
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
