"""Codec models and their storage: ``codec`` (the model), ``spec`` (its identity, as tokens record it),
``pretrained`` (model folders: ``config.json`` + ``model.safetensors``). Names load on first use, so
readers of token files (which need ``spec`` only) do not import torch."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CodecConfig": "codec",
    "CodecOutput": "codec",
    "SimVQCodec": "codec",
    "ModelSpec": "spec",
    "codes_dtype": "spec",
    "FORMAT_VERSION": "pretrained",
    "ModelLoadError": "pretrained",
    "model_id": "pretrained",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
