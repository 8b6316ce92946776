"""Inference: audio <-> tokens with a trained codec, in memory and on disk.

``tokenizer`` (the ``Tokenizer`` in front), ``inputs`` (checks of caller audio and codes),
``windows`` (frame-aligned windows with context for long signals), ``batching`` (length groups,
pad + mask + forward, memory release), ``backends`` (the torch codec or its ONNX graphs),
``file_encoding`` / ``file_decoding`` (files streamed in bounded memory). Names load on first use.
"""

from __future__ import annotations

from ..lazy import lazy_exports

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

__all__, __getattr__ = lazy_exports(__name__, _EXPORTS)
