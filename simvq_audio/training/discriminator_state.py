"""Discriminator weights as one small file, so an adversarial phase can go on in a new session.

A release model holds the generator only. Continuing its adversarial training with fresh
discriminators would make the first few hundred steps fight an untrained critic, so the
discriminators travel beside the recipe as one ``safetensors`` file (half precision by
default) whose metadata holds the ``DiscriminatorConfig`` it was built with. Loading is
strict: another configuration or a missing or extra tensor is a one-line error.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ..dataclass_dicts import ConfigError, differences, from_dict, to_dict
from ..discriminators import DiscriminatorConfig, build_discriminator
from .checkpoint import CONFIG_NAME, CheckpointError, find_checkpoint

FORMAT_NAME = "simvq-audio-discriminator"
DISCRIMINATOR_WEIGHTS = "model_1.safetensors"  # Accelerate's name for the second prepared model


def save_discriminator(discriminator: torch.nn.Module, config: DiscriminatorConfig, path: str | os.PathLike,
                       dtype: torch.dtype = torch.float16) -> Path:
    """Write ``discriminator``'s weights (as ``dtype``) and its config to ``path`` atomically."""
    path = Path(path)
    tensors = {k: v.detach().cpu().to(dtype).contiguous().clone() for k, v in discriminator.state_dict().items()}
    meta = {"format": FORMAT_NAME, "config": json.dumps(to_dict(config), sort_keys=True)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    save_file(tensors, str(tmp), metadata=meta)
    os.replace(tmp, path)
    return path


def read_discriminator_config(path: str | os.PathLike) -> DiscriminatorConfig:
    """The ``DiscriminatorConfig`` stored in a discriminator file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: discriminator file not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(f"{path}: unreadable discriminator file ({exc})") from exc
    if meta.get("format") != FORMAT_NAME or "config" not in meta:
        raise CheckpointError(f"{path}: not a simvq-audio discriminator file")
    try:
        return from_dict(DiscriminatorConfig, json.loads(meta["config"]), "discriminator")
    except (ValueError, ConfigError) as exc:
        raise CheckpointError(f"{path}: bad discriminator config in the file ({exc})") from exc


# Keys that only matter while their discriminator is on.
_MEMBER_KEYS = {"use_mpd": ("periods", "mpd_channels"),
                "use_stft": ("stft_filters", "stft_n_ffts", "stft_hop_lengths", "stft_win_lengths"),
                "use_mrd": ("mrd_channels", "mrd_n_ffts", "mrd_hop_lengths")}


def _effective(config: DiscriminatorConfig) -> dict:
    """The config's keys that shape the built discriminators (those of members that are off dropped)."""
    data = to_dict(config)
    for switch, keys in _MEMBER_KEYS.items():
        if not data[switch]:
            for key in keys:
                data.pop(key)
    return data


def load_discriminator(discriminator: torch.nn.Module, config: DiscriminatorConfig, path: str | os.PathLike) -> None:
    """Copy the weights in ``path`` into ``discriminator`` (built from ``config``), strictly.

    The configs must agree on every key that shapes the discriminators; settings of a
    member that is off in both (say the MS-STFT sizes with ``use_stft: false``) may differ.
    """
    stored = read_discriminator_config(path)
    ours, theirs = _effective(config), _effective(stored)
    if ours != theirs:
        diff = differences(theirs, ours, ("file", "config"))
        raise CheckpointError(f"{path}: discriminator config differs from discriminator.* of the config: "
                              f"{'; '.join(diff)}")
    tensors = load_file(str(path))
    reference = discriminator.state_dict()
    state = {k: v.to(reference[k].dtype) if k in reference else v for k, v in tensors.items()}
    try:
        discriminator.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not match the discriminator: {exc}") from exc


def export_discriminator(checkpoint: str | os.PathLike, output: str | os.PathLike,
                         dtype: torch.dtype = torch.float16) -> Path:
    """Write the discriminators of a training checkpoint (or run folder: its latest) to ``output``."""
    from .config import load_config  # the checkpoint's own training config says how D was built

    ckpt = find_checkpoint(checkpoint)
    weights = ckpt / DISCRIMINATOR_WEIGHTS
    if not weights.is_file() or not (ckpt / CONFIG_NAME).is_file():
        raise CheckpointError(f"{ckpt}: no discriminator weights ({DISCRIMINATOR_WEIGHTS}) or {CONFIG_NAME} in it")
    config = load_config(ckpt / CONFIG_NAME).discriminator
    discriminator = build_discriminator(config)
    try:
        discriminator.load_state_dict(load_file(str(weights)), strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{weights}: weights do not match {CONFIG_NAME}'s discriminator: {exc}") from exc
    return save_discriminator(discriminator, config, output, dtype)
