"""A token corpus for speech language models: sharded, memory-mappable token files.

``format`` defines the files, ``plan`` which utterances go to which shard, ``writer`` the
encoding (one process's share) and the finalisation, ``parquet`` copies of the finished shards
for ``datasets``/pyarrow, ``dataset`` the ``TokenDataset`` that reads a corpus back.
``simvq-audio export-dataset`` (or ``accelerate launch -m simvq_audio.export_dataset``) writes one.
Names load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CorpusEntry": "plan",
    "CorpusPlan": "plan",
    "list_inputs": "plan",
    "plan_shards": "plan",
    "CorpusMeta": "format",
    "UtteranceRecord": "format",
    "read_meta": "format",
    "read_index": "format",
    "write_shards": "writer",
    "finalize_corpus": "writer",
    "write_corpus": "writer",
    "write_parquet": "parquet",
    "TokenDataset": "dataset",
    "collate": "dataset",
    "flatten_codebooks": "dataset",
    "unflatten_codebooks": "dataset",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
