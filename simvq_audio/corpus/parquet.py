"""Parquet copies of a finished token corpus, readable without simvq-audio.

``write_parquet`` writes ``shard-00000.parquet`` next to each shard of a corpus folder, one row per
utterance, so that ``datasets.load_dataset("parquet", data_files="DIR/*.parquet")`` or pyarrow reads it.

Columns: ``id`` (string), ``codes`` (``list<int32>`` of ``T`` codes for one codebook, or
``list<list<int32>>``, ``n_q`` lists of ``T`` codes, codebooks first as ``Tokenizer.decode`` takes
them), ``n_frames`` (``T``), ``duration`` (seconds of source audio), ``source``, ``speaker``, ``text``,
``split``, and every other field of the input manifest's lines (typed
over the whole manifest; a field whose values mix types is stored as JSON strings). The schema metadata key
``simvq_audio`` holds the model spec as JSON (model id and name, sample rate, frame rate, hop,
codebook size, number of codebooks, codes layout). Requires ``pyarrow`` (``pip install simvq-audio[parquet]``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np

from ..errors import SimVQError
from ..fileio import atomic_path
from .format import CorpusMeta, ShardFiles, read_index, read_meta
from .plan import _relative_source, _strip_suffix

METADATA_KEY = b"simvq_audio"
# Manifest fields that are columns already (``path`` is ``source``) or that the corpus recomputes.
_KNOWN_FIELDS = {"id", "path", "duration", "speaker", "text", "split"}


def check_pyarrow() -> None:
    """Raise ``SimVQError`` saying how to install pyarrow when it is missing."""
    _pyarrow()


def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise SimVQError("--format parquet needs pyarrow: pip install 'simvq-audio[parquet]'") from exc
    return pa, pq


def model_spec(meta: CorpusMeta) -> dict:
    """The model spec stored in each parquet file's schema metadata under ``simvq_audio``."""
    return {**dataclasses.asdict(meta.spec),
            "codes_layout": "n_frames" if meta.n_codebooks == 1 else "n_codebooks,n_frames"}


def manifest_extras(manifest: str | os.PathLike) -> dict[str, dict]:
    """``{utterance id: {field: value}}`` for the manifest fields that are not corpus columns.

    Ids are derived as the export derives them: the line's ``id``, else its path relative to the
    manifest's folder without the extension.
    """
    manifest = Path(manifest)
    root = manifest.parent.absolute()
    extras = {}
    for line in manifest.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        obj = json.loads(line)
        path = Path(obj["path"])
        uid = obj.get("id")
        uid = str(uid) if uid is not None else _strip_suffix(_relative_source(path if path.is_absolute() else root / path,
                                                                               root))
        extras[uid] = {k: v for k, v in obj.items() if k not in _KNOWN_FIELDS}
    return extras


def _codes_array(pa, codes: np.ndarray, n_frames: list[int], n_q: int):
    """``[sum T, n_q]`` frame-major shard codes -> one list (n_q = 1) or list of lists per utterance."""
    frame_offsets = np.concatenate([[0], np.cumsum(n_frames)]).astype(np.int64)
    if n_q == 1:
        return pa.ListArray.from_arrays(pa.array(frame_offsets.astype(np.int32)), pa.array(codes[:, 0].astype(np.int32)))
    # Codebooks first per utterance: [T, n_q] -> [n_q, T], flattened, utterance after utterance.
    values = np.concatenate([codes[a:b].T.ravel() for a, b in zip(frame_offsets[:-1], frame_offsets[1:], strict=True)])
    inner = np.concatenate([[0], np.repeat(n_frames, n_q).cumsum()]).astype(np.int32)
    outer = (np.arange(len(n_frames) + 1) * n_q).astype(np.int32)
    per_codebook = pa.ListArray.from_arrays(pa.array(inner), pa.array(values.astype(np.int32)))
    return pa.ListArray.from_arrays(pa.array(outer), per_codebook)


def _extra_types(pa, extras: dict[str, dict], keys: list[str]) -> dict:
    """One arrow type per manifest field, inferred over the whole manifest so that every shard agrees;
    ``None`` (JSON strings) for a field whose values mix types."""
    types = {}
    for key in keys:
        try:
            types[key] = pa.array([fields.get(key) for fields in extras.values()]).type
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            types[key] = None
    return types


def _extra_column(pa, values: list, type_):
    if type_ is None:
        return pa.array([None if v is None else json.dumps(v, ensure_ascii=False) for v in values], pa.string())
    return pa.array(values, type_)


def write_parquet(corpus_dir: str | os.PathLike, manifest: str | os.PathLike | None = None) -> list[Path]:
    """Write ``shard-NNNNN.parquet`` for every shard of the finished corpus in ``corpus_dir``.

    ``manifest``: the export's input manifest, whose extra fields become columns (None: a folder
    input, or none wanted). Returns the written paths. Rewriting is safe (each file is replaced atomically).
    """
    pa, pq = _pyarrow()
    out = Path(corpus_dir)
    meta = read_meta(out)
    extras = manifest_extras(manifest) if manifest is not None else {}
    extra_keys = sorted({k for fields in extras.values() for k in fields})
    extra_types = _extra_types(pa, extras, extra_keys)
    schema_meta = {METADATA_KEY: json.dumps(model_spec(meta)).encode()}
    written = []
    for i, _ in enumerate(meta.shards):
        files = ShardFiles.of(out, i)
        records = read_index(files.index)
        codes = np.fromfile(files.bin, dtype=meta.numpy_dtype).reshape(-1, meta.n_codebooks)
        n_frames = [r.n_frames for r in records]
        columns = {
            "id": pa.array([r.id for r in records], pa.string()),
            "codes": _codes_array(pa, codes, n_frames, meta.n_codebooks),
            "n_frames": pa.array(n_frames, pa.int64()),
            "duration": pa.array([r.duration for r in records], pa.float64()),
            "source": pa.array([r.source for r in records], pa.string()),
            "speaker": pa.array([r.speaker for r in records], pa.string()),
            "text": pa.array([r.text for r in records], pa.string()),
            "split": pa.array([r.split for r in records], pa.string()),
        }
        for key in (k for k in extra_keys if k not in columns):
            columns[key] = _extra_column(pa, [extras.get(r.id, {}).get(key) for r in records], extra_types[key])
        table = pa.table(columns).replace_schema_metadata(schema_meta)
        path = files.bin.with_suffix(".parquet")
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)
        written.append(path)
    return written
