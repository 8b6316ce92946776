"""Codec models and their storage: ``codec`` (the model), ``spec`` (its identity, as tokens record it),
``pretrained`` (model folders: ``config.json`` + ``model.safetensors``). Names load on first use, so
readers of token files (which need ``spec`` only) do not import torch."""

from __future__ import annotations

from ..lazy import lazy_exports

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

__all__, __getattr__ = lazy_exports(__name__, _EXPORTS)
