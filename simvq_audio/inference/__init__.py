"""Inference: audio <-> tokens with a trained codec, in memory and on disk.

``tokenizer`` (the ``Tokenizer`` in front), ``inputs`` (checks of caller audio and codes),
``windows`` (frame-aligned windows with context for long signals), ``batching`` (length groups,
pad + mask + forward, memory release), ``backends`` (the torch codec or its ONNX graphs),
``file_encoding`` / ``file_decoding`` (files streamed in bounded memory). Names load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Tokenizer": "tokenizer",
    "BackendError": "backends",
    "EncodedBatch": "batching",
    "BatchSettings": "batching",
    "Batcher": "batching",
    "resolve_device": "batching",
    "DecodedFile": "file_decoding",
    "FileWindows": "file_encoding",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
