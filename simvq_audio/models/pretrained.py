"""Weights that travel with their config: ``config.json`` + ``model.safetensors``.

``config.json`` holds the format name and version, the codec config, the storage dtype
and the model id; ``model.safetensors`` holds the weights (no pickle). Loading is
strict: an unknown format, a config key the code does not know, a missing or extra
tensor, or weights that do not hash to the stored model id are errors.

This module knows model folders, not the codec: ``SimVQCodec.from_pretrained`` and
``save_pretrained`` hand it a way to build the model, so imports run codec -> pretrained only.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..dataclass_dicts import ConfigError, to_dict
from ..errors import SimVQError
from ..fileio import atomic_path, atomic_write_bytes

FORMAT_NAME = "simvq-audio-codec"
FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
BUILTIN_MODELS = ("default",)
# CodecConfig fields (dotted paths) added after format version 1 was released; a model's id leaves them
# out while they hold their defaults.
LATER_KEYS = ("decoder", "pitch_head", "pitch_features", "excitation_harmonics", "harmonic_branch",
              "quantizer.l2_norm", "teacher_forcing", "decoder.envelope_bands", "soft_voicing",
              "pitch_head_width", "pitch_head_kernel", "pitch_head_layers")


class ModelLoadError(SimVQError, RuntimeError):
    """A model directory cannot be loaded; the message names the path and the problem."""


def builtin_model_dir(name: str) -> Path:
    """Folder of a model shipped inside the package (``simvq_audio/pretrained/NAME``)."""
    return Path(str(resources.files("simvq_audio") / "pretrained" / name))


def resolve_model_dir(path_or_name: str | os.PathLike) -> Path:
    """A model folder from a path, the name of a built-in model such as ``"default"``, or a Hub repo id.

    An existing folder always wins. A name of the form ``org/name`` that is not a folder is a Hugging
    Face Hub model repository: its ``config.json`` and ``model.safetensors`` are fetched into (or, with
    ``HF_HUB_OFFLINE=1``, only read from) the Hub's cache, and the cached snapshot folder is returned.
    """
    text = os.fspath(path_or_name)
    if text in BUILTIN_MODELS and not Path(text).exists():
        return builtin_model_dir(text)
    if not Path(text).exists() and is_hub_repo_id(text):
        return hub_model_dir(text)
    return Path(text)


def is_hub_repo_id(text: str) -> bool:
    """Whether ``text`` has the form of a Hugging Face Hub repository id, ``org/name``."""
    return (re.fullmatch(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*", text) is not None
            and ".." not in text and "--" not in text and not text.endswith(".git") and len(text) <= 96)


def hub_model_dir(repo_id: str) -> Path:
    """The cached snapshot folder of Hub repository ``repo_id``, downloading its two model files if needed.

    Honours the Hub's environment (``HF_HUB_OFFLINE``, ``HF_HOME``, ``HF_HUB_CACHE``, ``HF_TOKEN``);
    every failure is a one-line ``ModelLoadError`` naming the repository and the problem.
    """
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:
        raise ModelLoadError(f"{repo_id}: not a folder, and loading it from the Hugging Face Hub needs "
                             f"huggingface_hub (pip install huggingface_hub): {exc}") from exc
    try:
        path = snapshot_download(repo_id, allow_patterns=[CONFIG_NAME, WEIGHTS_NAME])
    except Exception as exc:  # the Hub raises many types (HTTP, offline, validation); all become one line
        raise ModelLoadError(f"{repo_id}: not a folder, and {_hub_problem(exc)}") from exc
    return Path(path)


def _hub_problem(exc: Exception) -> str:
    """One line saying why a Hub repository could not be fetched."""
    from huggingface_hub import errors

    def first_line(e: BaseException) -> str:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        return lines[0] if lines else type(e).__name__

    if isinstance(exc, errors.GatedRepoError):
        return f"the Hugging Face Hub repository is gated; accept its terms and log in (hf auth login): {first_line(exc)}"
    if isinstance(exc, errors.RepositoryNotFoundError):
        return "no such Hugging Face Hub model repository (or it is private: log in with hf auth login)"
    if isinstance(exc, errors.RevisionNotFoundError):
        return f"the Hugging Face Hub repository has no such revision: {first_line(exc)}"
    if isinstance(exc, errors.LocalEntryNotFoundError):
        if _hub_offline():
            return ("it is not in the Hugging Face Hub cache and HF_HUB_OFFLINE is set "
                    "(download it once online, or unset HF_HUB_OFFLINE)")
        cause = exc.__cause__ or exc
        return f"the Hugging Face Hub cannot be reached and it is not in the cache ({type(cause).__name__}: {first_line(cause)})"
    if isinstance(exc, errors.HfHubHTTPError):
        return f"the Hugging Face Hub answered with an error: {first_line(exc)}"
    return f"it cannot be fetched from the Hugging Face Hub: {type(exc).__name__}: {first_line(exc)}"


def _hub_offline() -> bool:
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except (ImportError, AttributeError):
        return os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}


def _canonical_config(config) -> str:
    data, defaults = to_dict(config), to_dict(type(config)())
    # Models written before these keys existed have their defaults and not the keys;
    # leaving defaults out keeps those models' ids.
    for path in LATER_KEYS:
        *parents, key = path.split(".")
        mine, default = data, defaults
        for parent in parents:
            mine, default = mine.get(parent, {}), default[parent]
        if key in mine and mine[key] == default[key]:
            del mine[key]
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def model_id(model: nn.Module) -> str:
    """16 hex digits of SHA-256 over the canonical config and every tensor (as float32 for floats)."""
    h = hashlib.sha256(_canonical_config(model.config).encode())
    for key, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu()
        if t.is_floating_point():
            t = t.float()
        h.update(f"{key}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def save_pretrained(model: nn.Module, directory: str | os.PathLike, dtype: torch.dtype | None = None) -> str:
    """Write ``config.json`` and ``model.safetensors`` to ``directory``; returns the model id.

    ``dtype=torch.float16`` stores floating weights in half precision (the frozen SimVQ
    codebook is never stored: it is rebuilt from its seed). The returned id is that of
    the weights as stored, i.e. of the model that ``load_pretrained`` returns.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for key, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        tensors[key] = t.clone()
    stored = type(model)(model.config)
    stored.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in tensors.items()})
    mid = model_id(stored)
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "model_id": mid,
        "dtype": str(dtype or torch.float32).replace("torch.", ""),
        "config": to_dict(model.config),
    }
    with atomic_path(directory / WEIGHTS_NAME) as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT_NAME, "model_id": mid})
    atomic_write_bytes(directory / CONFIG_NAME, (json.dumps(meta, indent=2) + "\n").encode())
    return mid


def model_folder(path_or_name: str | os.PathLike) -> Path:
    """``resolve_model_dir``, and a ``ModelLoadError`` that says what to do when the folder is not there."""
    name = os.fspath(path_or_name)
    directory = resolve_model_dir(path_or_name)
    if name in BUILTIN_MODELS and not Path(name).exists() and not (directory / CONFIG_NAME).is_file():
        raise ModelLoadError(f"the built-in model {name!r} is not installed ({directory} has no {CONFIG_NAME}); "
                             f"load a trained model folder instead (--model DIR on the command line)")
    if not directory.exists():
        raise ModelLoadError(f"{directory}: not a model folder (no such folder)")
    return directory


def read_model_meta(directory: str | os.PathLike) -> dict:
    """The parsed ``config.json`` of a model folder (format checked, weights not loaded)."""
    directory = model_folder(directory)
    path = directory / CONFIG_NAME
    if not path.is_file():
        raise ModelLoadError(f"{directory}: not a model folder (no {CONFIG_NAME})")
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{path}: unreadable model config ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise ModelLoadError(f"{path}: not a simvq-audio model config (format {meta.get('format')!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelLoadError(
            f"{path}: model format version {meta.get('format_version')} is not supported (this build reads {FORMAT_VERSION})"
        )
    return meta


def load_pretrained(directory: str | os.PathLike, build: Callable[[dict], nn.Module],
                    device: str | torch.device = "cpu") -> nn.Module:
    """Load a model folder (or built-in name, or Hub repo id) strictly, in eval mode, float32, on ``device``.

    ``build(config)`` makes the untrained model from ``config.json``'s ``config`` mapping (raising
    ``ConfigError`` for a bad one). The weights are ordinary tensors even when loaded inside
    ``torch.inference_mode()`` (servers do), so the model also runs later under ``no_grad`` or with gradients.
    """
    with torch.inference_mode(False):
        return _load_pretrained(directory, build, device)


def _load_pretrained(directory: str | os.PathLike, build: Callable[[dict], nn.Module],
                     device: str | torch.device) -> nn.Module:
    directory = model_folder(directory)
    meta = read_model_meta(directory)
    try:
        model = build(meta["config"])
    except (ConfigError, KeyError) as exc:
        raise ModelLoadError(f"{directory / CONFIG_NAME}: {exc}") from exc
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise ModelLoadError(f"{directory}: missing {WEIGHTS_NAME}")
    try:
        tensors = load_file(str(weights))
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise ModelLoadError(f"{weights}: unreadable weights ({exc})") from exc
    state = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, ValueError) as exc:
        raise ModelLoadError(f"{weights}: weights do not match the config: {exc}") from exc
    expected = meta.get("model_id")
    actual = model_id(model)
    if expected is not None and expected != actual:
        raise ModelLoadError(f"{weights}: weights hash to model id {actual}, config.json says {expected} (corrupt or mixed files)")
    return model.to(device).eval()
