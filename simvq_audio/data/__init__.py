"""Data: manifests (JSONL lists of audio files), the training dataset, corpus recipes (token corpora: ``simvq_audio.corpus``).

Names are imported on first use so that ``import simvq_audio.data`` stays light (no torch).
"""

from __future__ import annotations

from ..lazy import lazy_exports

_EXPORTS = {
    "ManifestEntry": "manifest",
    "read_manifest": "manifest",
    "write_manifest": "manifest",
    "build_manifest": "manifest",
    "AudioDataset": "dataset",
    "collate_audio": "dataset",
}

__all__, __getattr__ = lazy_exports(__name__, _EXPORTS)
