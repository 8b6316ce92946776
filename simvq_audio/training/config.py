"""The training configuration: YAML + ``key=value`` overrides -> one typed ``TrainConfig``.

This is the only place that reads a training YAML. Unknown keys are errors naming the
key (``simvq_audio.dataclass_dicts.from_dict``). Paths in the file are relative to the file's
folder; paths given as overrides on the command line are relative to the working
directory.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..dataclass_dicts import ConfigError, from_dict, to_dict
from ..discriminators import DiscriminatorConfig
from ..models.codec import CodecConfig
from ..models.pretrained import BUILTIN_MODELS
from .parts import PARTS, check_parts
from .schedule import ScheduleConfig

PRECISIONS = ("no", "bf16", "fp16")
GAN_KINDS = ("hinge", "lsgan")
PITCH_TARGETS = ("yin", "pyin")
RESUME_WORDS = ("auto", "none")


@dataclass(frozen=True)
class LossConfig:
    """Weights of the generator's loss terms and the GAN objective.

    ``quantizer`` multiplies ``CodecOutput.quantizer_loss`` (codebook + beta * commitment,
    each a *mean* over latent elements), hence the large default; see docs/training.md.
    ``stft`` adds a multi-resolution STFT loss (0 = off). ``pitch`` weighs the pitch
    head's loss against YIN's F0 and voicing (``losses/pitch.py``; needs ``model.pitch_head``);
    ``pitch_targets``: ``yin`` (computed on each batch) or ``pyin`` (pYIN's, tracked once per training file
    into ``data.pitch_cache``: ``data/pitch_targets.py``; the head learns pYIN's voicing recall).
    ``spread`` weighs ``losses/spread.py``: how far the covariance of the quantizer's input is from
    isotropic (0 = off), a push for latents that fill every dimension of the lookup.
    ``match`` weighs ``losses/match.py``: the sliced Wasserstein distance between the quantizer's input
    and its (first) codebook, along ``match_directions`` random directions per step (0 = off), a push
    for latents distributed like the codes.
    """

    mel: float = 45.0
    quantizer: float = 1000.0
    adversarial: float = 1.0
    feature_matching: float = 1.0
    stft: float = 0.0
    pitch: float = 0.0
    spread: float = 0.0
    match: float = 0.0
    match_directions: int = 64
    pitch_targets: str = "yin"
    gan_kind: str = "hinge"

    def __post_init__(self) -> None:
        if self.gan_kind not in GAN_KINDS:
            raise ValueError(f"gan_kind must be one of {GAN_KINDS}, got {self.gan_kind!r}")
        for name in ("mel", "quantizer", "adversarial", "feature_matching", "stft", "pitch", "spread", "match"):
            if getattr(self, name) < 0:
                raise ValueError(f"loss weight {name} must be >= 0")
        if self.pitch_targets not in PITCH_TARGETS:
            raise ValueError(f"loss.pitch_targets must be one of {PITCH_TARGETS}, got {self.pitch_targets!r}")
        if self.match_directions < 1:
            raise ValueError(f"loss.match_directions must be >= 1, got {self.match_directions}")


@dataclass(frozen=True)
class AdamWConfig:
    """One AdamW optimiser; ``grad_clip`` is the max gradient norm (``None``: no clipping)."""

    lr: float = 3e-4
    betas: tuple[float, float] = (0.8, 0.99)
    weight_decay: float = 0.0
    eps: float = 1e-8
    grad_clip: float | None = None

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"grad_clip must be positive or null, got {self.grad_clip}")


@dataclass(frozen=True)
class OptimizerConfig:
    generator: AdamWConfig = field(default_factory=lambda: AdamWConfig(grad_clip=1000.0))
    discriminator: AdamWConfig = field(default_factory=lambda: AdamWConfig(grad_clip=10.0))


@dataclass(frozen=True)
class DataConfig:
    """Training data. Manifests are JSONL (``path`` relative to the manifest, ``duration``).

    ``loudness_db``: each crop is scaled to an RMS level drawn uniformly from this range
    (dB re full scale; boost capped at ``max_boost_db``); ``null`` keeps the recorded levels.
    ``gain_db``: a further random gain range (dB) per crop (``null``: none).
    ``min_duration``: skip shorter files (seconds).
    ``pitch_cache``: where ``loss.pitch_targets: pyin`` keeps pYIN's tracks (``null``: ``$SIMVQ_AUDIO_CACHE/pitch``
    or ``~/.cache/simvq-audio/pitch``); shared with ``simvq-audio fit-pitch-head --cache``.
    """

    train_manifest: str = ""
    valid_manifest: str | None = None
    segment_seconds: float = 1.0
    batch_size: int = 16
    num_workers: int = 4
    gain_db: tuple[float, float] | None = None
    loudness_db: tuple[float, float] | None = (-30.0, -16.0)
    max_boost_db: float = 40.0
    min_duration: float = 0.0
    pitch_cache: str | None = None

    def __post_init__(self) -> None:
        if self.segment_seconds <= 0:
            raise ValueError(f"segment_seconds must be positive, got {self.segment_seconds}")
        for name in ("gain_db", "loudness_db"):
            value = getattr(self, name)
            if value is not None and value[0] > value[1]:
                raise ValueError(f"{name} must be [low, high] with low <= high, got {list(value)}")
        if self.batch_size < 1 or self.num_workers < 0:
            raise ValueError("batch_size must be >= 1 and num_workers >= 0")


@dataclass(frozen=True)
class TrainingConfig:
    """Loop settings. ``max_steps`` counts optimiser steps (after gradient accumulation).

    ``init_from``: a release model folder (or a built-in name such as ``default``) whose
    weights a new run starts from (see ``training/warm_start.py``); ignored when the run
    resumes one of its own checkpoints, which already hold them. ``init_parts``: copy only
    these parts of it (``encoder``, ``quantizer``, ``decoder``; empty: all).
    ``freeze``: parts that take no gradient in this run (``training/parts.py``).
    ``init_discriminator_from``: a discriminator file (``simvq-audio export --discriminator``)
    whose weights a new run's discriminators start from; like ``init_from``, not read when
    the run resumes its own checkpoint.
    """

    max_steps: int = 100_000
    gradient_accumulation_steps: int = 1
    discriminator_start_step: int = 0
    mixed_precision: str = "no"
    seed: int = 0
    ema_decay: float = 0.999
    nonfinite_patience: int = 20
    cpu: bool = False
    init_from: str | None = None
    init_parts: tuple[str, ...] = ()
    freeze: tuple[str, ...] = ()
    init_discriminator_from: str | None = None

    def __post_init__(self) -> None:
        check_parts(self.init_parts, "training.init_parts")
        check_parts(self.freeze, "training.freeze")
        if len(self.freeze) >= len(PARTS) and set(self.freeze) == set(PARTS):
            raise ValueError("training.freeze: freezing every part leaves nothing to train")
        if self.max_steps < 1 or self.gradient_accumulation_steps < 1:
            raise ValueError("max_steps and gradient_accumulation_steps must be >= 1")
        if self.mixed_precision not in PRECISIONS:
            raise ValueError(f"mixed_precision must be one of {PRECISIONS}, got {self.mixed_precision!r}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.nonfinite_patience < 1 or self.discriminator_start_step < 0:
            raise ValueError("nonfinite_patience must be >= 1 and discriminator_start_step >= 0")


@dataclass(frozen=True)
class LoggingConfig:
    """Run folder (TensorBoard, ``metrics.jsonl``, checkpoints) and how often to write."""

    dir: str = "runs/default"
    every: int = 50
    audio_every: int = 5000
    audio_examples: int = 2
    progress_bar: bool = True
    # Code usage is counted over the last ``codebook_window`` steps (None: enough steps for
    # 3 K training frames, where a uniform code distribution would use 95% of K, and at least
    # ``every``); a code is dead when no frame used it in the last ``dead_code_steps`` steps.
    codebook_window: int | None = None
    dead_code_steps: int = 1000

    def __post_init__(self) -> None:
        if self.every < 1 or self.audio_every < 1 or self.audio_examples < 0:
            raise ValueError("logging.every and logging.audio_every must be >= 1, audio_examples >= 0")
        if (self.codebook_window is not None and self.codebook_window < 1) or self.dead_code_steps < 1:
            raise ValueError("logging.codebook_window and logging.dead_code_steps must be >= 1")


@dataclass(frozen=True)
class CheckpointConfig:
    """``resume``: ``auto`` (latest checkpoint in ``dir`` if any), ``none``, or a checkpoint path.

    ``dir`` defaults to ``<logging.dir>/checkpoints``.
    """

    every: int = 5000
    keep_last: int = 3
    resume: str = "auto"
    dir: str | None = None

    def __post_init__(self) -> None:
        if self.every < 1 or self.keep_last < 1:
            raise ValueError("checkpoint.every and checkpoint.keep_last must be >= 1")


@dataclass(frozen=True)
class ValidationConfig:
    """Whole-file validation with the EMA model; files from ``manifest`` and/or ``files``.

    With neither set, ``data.valid_manifest`` is used. ``every``: steps between runs (0: never).
    """

    every: int = 5000
    manifest: str | None = None
    files: tuple[str, ...] = ()
    max_files: int = 16
    max_seconds: float | None = 20.0

    def __post_init__(self) -> None:
        if self.every < 0 or self.max_files < 1:
            raise ValueError("validation.every must be >= 0 and max_files >= 1")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs; stored in every checkpoint as ``train_config.yaml``."""

    model: CodecConfig = field(default_factory=CodecConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    data: DataConfig = field(default_factory=DataConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)

    @property
    def checkpoint_dir(self) -> Path:
        return Path(self.checkpoint.dir) if self.checkpoint.dir else Path(self.logging.dir) / "checkpoints"


# Dotted keys holding file paths: resolved against the config file's folder (or the
# working directory for command-line overrides) so a run does not depend on its cwd.
PATH_KEYS = (
    "data.train_manifest",
    "data.valid_manifest",
    "data.pitch_cache",
    "validation.manifest",
    "validation.files",
    "logging.dir",
    "checkpoint.dir",
    "checkpoint.resume",
    "training.init_from",
    "training.init_discriminator_from",
)
# Words some path keys take instead of a path; they are kept as they are.
KEYWORDS = {"checkpoint.resume": RESUME_WORDS, "training.init_from": BUILTIN_MODELS}


def _resolve_path(value: Any, base: Path, key: str) -> Any:
    if value is None or value == "":
        return value
    if isinstance(value, (list, tuple)):
        return [_resolve_path(v, base, key) for v in value]
    if not isinstance(value, str):
        return value
    if value in KEYWORDS.get(key, ()):
        return value
    path = Path(os.path.expanduser(value))
    return str(path if path.is_absolute() else (base / path).resolve())


def _get(data: dict, dotted: str) -> tuple[dict | None, str]:
    *parents, last = dotted.split(".")
    node: Any = data
    for part in parents:
        if not isinstance(node, dict) or not isinstance(node.get(part), dict):
            return None, last
        node = node[part]
    return (node if isinstance(node, dict) else None), last


def _resolve_paths(data: dict, base: Path, only: set[str] | None = None) -> None:
    for key in PATH_KEYS:
        if only is not None and key not in only:
            continue
        node, last = _get(data, key)
        if node is not None and last in node:
            node[last] = _resolve_path(node[last], base, key)


def parse_override(text: str) -> tuple[str, Any]:
    """``"a.b.c=VALUE"`` -> ``("a.b.c", yaml.safe_load(VALUE))``; a bad form raises ``ConfigError``."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r}: expected dotted.key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({exc})") from exc
    return key, value


def apply_overrides(data: dict, overrides: list[str], base: Path | None = None) -> dict:
    """A copy of ``data`` with ``key=value`` overrides set (dotted keys create sub-mappings).

    Override paths are resolved against ``base`` (default: the working directory).
    Unknown keys are not checked here: ``from_dict`` names them when the config is built.
    """
    data = copy.deepcopy(data)
    touched = set()
    for text in overrides:
        key, value = parse_override(text)
        node = data
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: '{'.'.join(parts[: i + 1])}' is not a section")
            node = child
        node[parts[-1]] = value
        touched.add(key)
    _resolve_paths(data, base or Path.cwd(), only=touched)
    return data


def read_yaml(path: str | os.PathLike) -> dict:
    """Parsed YAML mapping of a config file, with its paths made absolute."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: config file not found") from exc
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: unreadable config ({exc})") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping of sections, got {type(data).__name__}")
    _resolve_paths(data, path.resolve().parent)
    return data


def build_config(data: dict, source: str = "config") -> TrainConfig:
    """Typed config from a plain mapping; errors name ``source`` and the key."""
    try:
        cfg = from_dict(TrainConfig, data)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from exc
    if not cfg.data.train_manifest:
        raise ConfigError(f"{source}: data.train_manifest is required")
    if cfg.loss.pitch > 0 and not cfg.model.pitch_head:
        raise ConfigError(f"{source}: loss.pitch > 0 needs model.pitch_head: true")
    if cfg.loss.pitch_targets == "pyin" and cfg.loss.pitch <= 0:
        raise ConfigError(f"{source}: loss.pitch_targets=pyin needs loss.pitch > 0")
    return cfg


def load_config(path: str | os.PathLike | None, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read ``path`` (YAML; ``None``: defaults only), apply ``key=value`` overrides, build a ``TrainConfig``."""
    data = read_yaml(path) if path is not None else {}
    data = apply_overrides(data, list(overrides))
    return build_config(data, str(path) if path is not None else "config")


def config_to_yaml(cfg: TrainConfig) -> str:
    """YAML text that ``load_config`` reads back to an equal ``TrainConfig`` (paths absolute)."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
