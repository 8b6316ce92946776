"""A token corpus for speech language models: sharded, memory-mappable token files.

``format`` defines the files, ``plan`` which utterances go to which shard, ``writer`` the
encoding (one process's share) and the finalisation, ``parquet`` copies of the finished shards
for ``datasets``/pyarrow, ``dataset`` the ``TokenDataset`` that reads a corpus back.
``simvq-audio export-dataset`` (or ``accelerate launch -m simvq_audio.export_dataset``) writes one.
Names load on first use.
"""

from __future__ import annotations

from ..lazy import lazy_exports

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

__all__, __getattr__ = lazy_exports(__name__, _EXPORTS)
