"""Data: manifests (JSONL lists of audio files), the training dataset, corpus recipes (token corpora: ``simvq_audio.corpus``).

Names are imported on first use so that ``import simvq_audio.data`` stays light (no torch).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ManifestEntry": "manifest",
    "read_manifest": "manifest",
    "write_manifest": "manifest",
    "build_manifest": "manifest",
    "AudioDataset": "dataset",
    "collate_audio": "dataset",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
