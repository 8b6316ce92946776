"""Export a corpus as sharded, memory-mappable token files for speech language models.

``format`` defines the files, ``plan`` which utterances go to which shard, ``exporter`` the
encoding (one process's share) and the finalisation, ``parquet`` copies of the
finished shards for ``datasets``/pyarrow. Read the result with
``simvq_audio.data.TokenDataset``. ``python -m simvq_audio.export`` (or ``accelerate launch -m
simvq_audio.export``) runs the ``export-dataset`` command. Names load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CorpusEntry": "plan",
    "ExportPlan": "plan",
    "ModelInfo": "plan",
    "list_inputs": "plan",
    "plan_shards": "plan",
    "CorpusMeta": "format",
    "UtteranceRecord": "format",
    "read_meta": "format",
    "read_index": "format",
    "export_shards": "exporter",
    "finalize_export": "exporter",
    "export_corpus": "exporter",
    "write_parquet": "parquet",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
