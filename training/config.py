"""Typed training configuration: frozen dataclasses, filled from a YAML file plus ``section.key=value`` overrides."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from depth_node.network.model_config import ModelConfig

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "default.yaml"


@dataclass(frozen=True)
class DataConfig:
    factor: float = 4.0  # LR supervision = down(HR ground truth) by this factor, for readers without an LR sensor
    min_valid_fraction: float = 0.5  # an LR pixel is valid when at least this fraction of its footprint is
    min_depth: float = 0.1  # valid depth range for supervision and evaluation (metres)
    max_depth: float = 10.0
    crop_height: int = 240  # HR training crop (multiple of the factor); 0 = full frame
    crop_width: int = 320
    val_fraction: float = 0.0  # last part of the data (by time, never random) held out for validation during fit
    hflip: bool = True  # on FastDepth: texture lower on two folds pooled (docs/method.md, "Defaults and why")
    color_jitter: float = 0.2  # brightness/contrast/saturation strength
    full_frame_fraction: float = 0.0  # share of batches that are whole frames (as deployed) instead of crops
    scale_jitter: float = 0.0  # zoom log-uniform in [1/(1+j), 1+j], depths divided by the zoom; 0 = off
    cache_frames: bool = False  # keep decoded frames in memory (~2.2 MB per 640x480 frame and worker): GPU training
    lr_holes: float = 0.0  # fraction of the LR supervision removed in blobs, fixed per frame (hole experiment)
    color_focal: float = 0.0  # colour focal length (pixels, fx = fy) when the reader's K is not the colour camera's
    #                           (7-Scenes gives its depth camera's 585); only the motion term uses it; 0 = reader's K


@dataclass(frozen=True)
class LossConfig:
    supervision: str = "weak"  # weak: LR ground truth only; hr: the HR ground truth (the oracle row)
    form: str = "l1"  # l1 | berhu | silog | log_l1 (see losses.py)
    w_lr: float = 1.0  # (1) L(D_lr, G_lr)
    w_hr: float = 1.0  # (2) L(down(D_hr), G_lr)
    w_cons: float = 0.5  # (3) L(D_lr, down(D_hr)), Charbonnier: better than 1-2 on validation, 6 seeds (method.md)
    w_affinity: float = 0.0  # (4) affinity distillation from the teacher: off, not better than 1-3 on validation
    teacher: str = "super_resolution"  # the teacher's pre-training task: super_resolution | completion (teacher.py),
    #                                     or fastdepth: FastDepth's image-to-depth network, frozen, on the HR image
    teacher_weights: str = ""  # loss.teacher=fastdepth: the FastDepth .tflite it is read from
    teacher_steps: int = 400  # pre-training steps of the teacher (batch 8 of 64x80 LR crops), before it is frozen
    affinity_grid: tuple[int, int] = (30, 40)  # features are pooled to this grid before pairwise similarities
    affinity_warmup: float = 0.2  # fraction of steps over which w_affinity ramps up from 0
    affinity_share: float = 0.0  # > 0: w_affinity is measured instead, as this share of the supervision's encoder
    # gradient (gradient_share.py); w_affinity > 0 then only switches (4) on
    cons_grad: str = "both"  # (3)'s gradient: both sides | hr_teaches_lr (stopped through down(D_hr)) | lr_teaches_hr
    cons_penalty: str = "charbonnier"  # (3)'s penalty: charbonnier (robust, smooth at 0) | form (the loss form above)
    teacher_view: str = "task"  # what the teacher sees at distillation: task (its pre-training view) | full (G_lr)
    distill: str = "matched"  # matched: both branches at their two finest matched levels | lr_coarse (docs/method.md)
    affinity_form: str = "centred_l1"  # centred_l1 (ours) | reference (Liu et al.: cosine, max-pooled, squared)
    w_motion: float = 0.0  # (5) photometric reprojection of the HR estimate onto neighbour frames (needs poses)
    motion_offsets: tuple[int, int] = (-10, 10)  # neighbour frames, in frames from the target (30 Hz: 1/3 s)
    motion_min_baseline: float = 0.02  # metres: a closer neighbour gives no parallax, only noise, and is not used
    motion_smoothness: float = 0.0  # weight of the edge-aware smoothness inside (5)
    w_planar: float = 0.0  # (6) where G_lr is a plane, D_hr inside it is one too (planarity.py); 0 = off
    planar_tolerance: float = 0.02  # an LR pixel is planar when 1/G_lr's relative second differences are under this


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1000  # the validated budget (docs/method.md, "Budget")
    init: str = ""  # a checkpoint whose estimator weights training starts from (fine-tuning); "": model.pretrained
    batch_size: int = 4
    lr: float = 5e-4
    encoder_lr_scale: float = 0.5  # pretrained encoder learns slower than the fresh decoder
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    grad_clip: float = 1.0  # max gradient norm (0 = none); the log's `clipped` column says how often it clipped
    teacher_grad_clip: float = 1.0  # max gradient norm of the teacher while it is pre-trained (0 = none)
    ema_decay: float = 0.0  # exponential moving average of the estimator's weights (saved as `model`); 0 = off
    freeze_encoder_bn: bool = True  # encoder BatchNorm keeps its ImageNet statistics (with model.pretrained)
    decoder_bn_stats: str = "both"  # which passes update the decoder's running BatchNorm statistics: both | hr
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 250
    num_workers: int = 0
    amp: bool = True  # bf16/fp16 autocast on GPU only
    device: str = "auto"  # auto | cpu | cuda
    tensorboard: bool = False


@dataclass(frozen=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def _positive(x: float) -> bool:
    return math.isfinite(x) and x > 0


def _non_negative(x: float) -> bool:
    return math.isfinite(x) and x >= 0


# Values a field's type admits but training cannot use: refused when the config is read, naming the key, instead of
# failing deep inside PyTorch (e.g. ``Invalid learning rate: nan``) or training on nonsense.
CHECKS = {
    "train.lr": (_positive, "the learning rate must be a finite number > 0"),
    "train.steps": (_positive, "must be at least 1"),
    "train.batch_size": (_positive, "must be at least 1"),
    "train.warmup_steps": (_non_negative, "must be 0 or more"),
    "train.weight_decay": (_non_negative, "must be a finite number >= 0"),
    "train.encoder_lr_scale": (_non_negative, "must be a finite number >= 0"),
    "loss.affinity_share": (_non_negative, "must be a finite number >= 0 (0: w_affinity as given)"),
    "train.grad_clip": (_non_negative, "must be a finite number >= 0 (0: no clipping)"),
    "train.decoder_bn_stats": (lambda v: v in ("both", "hr"), "must be both or hr"),
    "loss.cons_grad": (lambda v: v in ("both", "hr_teaches_lr", "lr_teaches_hr"),
                       "must be both, hr_teaches_lr or lr_teaches_hr"),
    "loss.cons_penalty": (lambda v: v in ("form", "charbonnier"), "must be form or charbonnier"),
    "loss.teacher": (lambda v: v in ("super_resolution", "completion", "fastdepth"),
                     "must be super_resolution, completion or fastdepth"),
    "loss.teacher_view": (lambda v: v in ("task", "full"), "must be task or full"),
    "loss.distill": (lambda v: v in ("matched", "lr_coarse"), "must be matched or lr_coarse"),
    "loss.affinity_form": (lambda v: v in ("centred_l1", "reference"), "must be centred_l1 or reference"),
    "loss.w_motion": (_non_negative, "must be a finite number >= 0 (0: off)"),
    "loss.motion_offsets": (lambda v: all(o != 0 for o in v), "a neighbour 0 frames away is the target itself"),
    "loss.motion_min_baseline": (_non_negative, "must be a finite number >= 0 (metres)"),
    "loss.motion_smoothness": (_non_negative, "must be a finite number >= 0"),
    "loss.w_planar": (_non_negative, "must be a finite number >= 0 (0: off)"),
    "loss.planar_tolerance": (_non_negative, "must be a finite number >= 0"),
    "data.color_focal": (_non_negative, "must be a finite number >= 0 (0: the reader's K)"),
}


class ConfigError(ValueError):
    """A bad config value; ``key`` (``section.key``) says which."""

    def __init__(self, message: str, key: str) -> None:
        super().__init__(message)
        self.key = key


def _coerce(value: Any, like: Any) -> Any:
    """Convert a YAML/CLI value to the type of the field's default (tuples from lists, numbers from strings)."""
    if isinstance(like, bool):
        if isinstance(value, bool):
            return value
        text = str(value).lower()
        if text not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            raise ValueError("expected true or false")
        return text in ("1", "true", "yes", "on")
    if isinstance(like, tuple):
        items = value if isinstance(value, (list, tuple)) else str(value).strip("[]()").split(",")
        if len(items) != len(like):
            raise ValueError(f"expected {len(like)} values")
        return tuple(_coerce(v.strip() if isinstance(v, str) else v, like[0]) for v in items)
    if isinstance(like, (int, float)):
        expected = "an integer" if isinstance(like, int) else "a number"
        try:
            number = float(value) if not isinstance(value, bool) else None  # YAML 1.1 reads 1e-3 as text
        except (TypeError, ValueError):
            number = None
        if number is None or (isinstance(like, int) and not number.is_integer()):
            raise ValueError(f"expected {expected}")
        return type(like)(number)
    return type(like)(value)


# Options older checkpoints carry that no longer exist, and why: checkpoints drop them, user configs are told.
RETIRED = {"loss.w_recon": "the teacher is pre-trained on its own task and frozen (loss.teacher, loss.teacher_steps)"}


def without_retired(raw: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """A saved config without the options in RETIRED, so checkpoints of earlier versions still load."""
    return {section: {k: v for k, v in (values or {}).items() if f"{section}.{k}" not in RETIRED}
            if isinstance(values, dict) else values for section, values in raw.items()}


def config_from_dict(raw: dict[str, dict[str, Any]]) -> Config:
    """Build a Config from nested dicts, refusing unknown sections and keys and naming the key of a bad value."""
    if not isinstance(raw, dict):
        raise ValueError(f"a config is a mapping of sections, got {type(raw).__name__}")
    unknown_sections = set(raw) - {section.name for section in dataclasses.fields(Config)}
    if unknown_sections:
        raise ValueError(f"unknown config section(s): {sorted(unknown_sections)}")
    sections = {}
    for section in dataclasses.fields(Config):
        values = raw.get(section.name) or {}
        if not isinstance(values, dict):
            raise ValueError(f"config section {section.name!r} must be a mapping of keys, got {values!r}")
        defaults = section.default_factory()
        known = {f.name for f in dataclasses.fields(defaults)}
        unknown = set(values) - known
        for key in sorted(unknown):
            if f"{section.name}.{key}" in RETIRED:
                raise ValueError(f"{section.name}.{key} was retired: {RETIRED[f'{section.name}.{key}']}")
        if unknown:
            raise ValueError(f"unknown {section.name} option(s): {sorted(unknown)}; known: {sorted(known)}")
        typed = {}
        for key, value in values.items():
            try:
                typed[key] = _coerce(value, getattr(defaults, key))
            except (ValueError, TypeError) as err:
                raise ConfigError(f"{section.name}.{key}={value!r}: {err}", f"{section.name}.{key}") from None
        sections[section.name] = dataclasses.replace(defaults, **typed)
        for key in typed:
            check = CHECKS.get(f"{section.name}.{key}")
            if check and not check[0](typed[key]):
                raise ConfigError(f"{section.name}.{key}={values[key]!r}: {check[1]}", f"{section.name}.{key}")
    return Config(**sections)


def config_to_dict(cfg: Config) -> dict[str, dict[str, Any]]:
    """Plain nested dict (tuples as lists) for YAML, JSON and checkpoints."""

    def plain(v: Any) -> Any:
        return list(v) if isinstance(v, tuple) else v

    return {s: {k: plain(v) for k, v in dataclasses.asdict(getattr(cfg, s)).items()} for s in ("model", "data", "loss",
                                                                                               "train")}


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """YAML file (default: the packaged default.yaml) plus ``section.key=value`` overrides."""
    path = Path(path or DEFAULT_CONFIG)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"config {path}: not valid YAML ({' '.join(str(err).split())})") from None
    except OSError as err:
        raise FileNotFoundError(f"config {path}: {err.strerror}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"config {path}: expected sections (model, data, loss, train), got {type(raw).__name__}")
    given = set()
    for item in overrides or []:
        key, sep, value = item.partition("=")
        section, dot, name = key.partition(".")
        if not sep or not dot:
            raise ValueError(f"override {item!r} is not of the form section.key=value")
        try:
            parsed = yaml.safe_load(value) if value else value
        except yaml.YAMLError:
            parsed = value  # left as text: the field's type decides (and names the key if it does not fit)
        if not isinstance(raw.setdefault(section, {}), dict):
            raw[section] = {}
        raw[section][name] = parsed
        given.add(key)
    try:
        return config_from_dict(raw)
    except ConfigError as err:
        raise ConfigError(f"{err} (from {'the command line' if err.key in given else path})", err.key) from None
    except ValueError as err:
        raise ValueError(f"config {path}: {err}") from None
