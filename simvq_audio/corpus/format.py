"""On-disk format of a token corpus (read by ``TokenDataset``, written by ``writer``).

A corpus folder holds::

    meta.json               the corpus: model, token layout and dtype, totals, shard list (written last)
    plan.json               what the export was asked to do (model id, shard plan hash); guards resumes
    failures.jsonl          input files that could not be encoded (empty when none)
    shard-00000.bin         codes of the shard's utterances back to back, little-endian uint16/uint32
    shard-00000.jsonl       the shard's index: one JSON object per utterance (written after the .bin)
    shard-00000.failures.jsonl   only when some of the shard's inputs failed

Codes are frame-major: an utterance of ``T`` frames and ``n_q`` codebooks occupies ``T * n_q``
consecutive elements laid out as ``[T, n_q]``, so any window of frames is one contiguous slice
and interleaving codebooks for an LM (``frame0 q0, frame0 q1, frame1 q0, ...``) is a reshape.
Index offsets count frames from the start of the shard (element offset = ``offset * n_q``).
See docs/speech-lm.md.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..dataclass_dicts import ConfigError, from_dict, to_dict
from ..errors import TokenFileError
from ..models.spec import ModelSpec
from ..models.spec import codes_dtype as spec_codes_dtype

FORMAT_NAME = "simvq-audio-token-corpus"
FORMAT_VERSION = 1
LAYOUT = "n_frames,n_codebooks"
OFFSET_UNIT = "frames"
META_NAME = "meta.json"
PLAN_NAME = "plan.json"
FAILURES_NAME = "failures.jsonl"
INDEX_FIELDS = ("id", "source", "speaker", "text", "split", "shard", "offset", "n_frames", "duration")


def codes_dtype(codebook_size: int) -> np.dtype:
    """The token files' ``models.spec.codes_dtype``, little-endian: ``<u2`` when ``K <= 65536``, else ``<u4``."""
    return spec_codes_dtype(codebook_size).newbyteorder("<")


def shard_name(index: int) -> str:
    """``shard-00000`` for shard 0 (five digits, more when needed; sorts in order up to 100000 shards)."""
    return f"shard-{index:05d}"


@dataclass(frozen=True)
class ShardFiles:
    """The files of one shard inside a corpus folder."""

    bin: Path
    index: Path
    failures: Path

    @classmethod
    def of(cls, root: str | os.PathLike, index: int) -> ShardFiles:
        base = Path(root) / shard_name(index)
        return cls(bin=base.with_suffix(".bin"), index=base.with_suffix(".jsonl"),
                   failures=base.with_suffix(".failures.jsonl"))


@dataclass(frozen=True, slots=True)
class UtteranceRecord:
    """One line of a shard index.

    ``offset`` and ``n_frames`` are in frames (``offset`` from the start of shard ``shard``);
    ``duration`` is the source audio's length in seconds; ``source`` is the input path, relative
    to the corpus' ``source_root`` when it lies inside it.
    """

    id: str
    source: str
    speaker: str | None
    text: str | None
    split: str | None
    shard: int
    offset: int
    n_frames: int
    duration: float

    def to_json(self) -> str:
        return json.dumps({k: getattr(self, k) for k in INDEX_FIELDS}, ensure_ascii=False)


@dataclass(frozen=True)
class ShardInfo:
    """A shard as listed in ``meta.json``."""

    name: str
    n_utterances: int
    n_frames: int
    n_failed: int = 0


@dataclass(frozen=True)
class CorpusMeta:
    """Contents of ``meta.json``: everything needed to interpret the shards without the model."""

    model_id: str
    model_name: str
    sample_rate: int
    frame_rate: float
    hop_length: int
    codebook_size: int
    n_codebooks: int
    dtype: str
    n_utterances: int
    n_frames: int
    n_failed: int
    duration: float
    shards: tuple[ShardInfo, ...]
    source_root: str
    plan_sha256: str
    layout: str = LAYOUT
    offset_unit: str = OFFSET_UNIT
    byte_order: str = "little"
    format: str = FORMAT_NAME
    format_version: int = FORMAT_VERSION

    @classmethod
    def of(cls, spec: ModelSpec, **corpus_fields) -> CorpusMeta:
        """The meta of a corpus of ``spec``'s codes; ``corpus_fields``: totals, shards, source root, plan hash."""
        return cls(**dataclasses.asdict(spec), dtype=spec.dtype, **corpus_fields)

    @property
    def spec(self) -> ModelSpec:
        """The identity of the model that made the codes."""
        return ModelSpec.of(self)

    @property
    def numpy_dtype(self) -> np.dtype:
        return np.dtype(self.dtype).newbyteorder("<")


def read_index(path: str | os.PathLike) -> list[UtteranceRecord]:
    """Parse a shard index; raises ``TokenFileError`` naming the file and line."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise TokenFileError(f"{path}: shard index not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenFileError(f"{path}: cannot read shard index ({exc})") from None
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(from_dict(UtteranceRecord, json.loads(line)))
        except (json.JSONDecodeError, ConfigError, TypeError) as exc:
            raise TokenFileError(f"{path}:{number}: bad index line ({exc})") from None
    return records


def index_text(records: list[UtteranceRecord]) -> str:
    return "".join(r.to_json() + "\n" for r in records)


def meta_text(meta: CorpusMeta) -> str:
    return json.dumps(to_dict(meta), indent=2, ensure_ascii=False) + "\n"


def read_meta(root: str | os.PathLike) -> CorpusMeta:
    """Read and check ``ROOT/meta.json``; raises ``TokenFileError`` for a missing, foreign or newer corpus."""
    path = Path(root) / META_NAME
    if not path.is_file():
        hint = " (export not finished?)" if (Path(root) / PLAN_NAME).is_file() else ""
        raise TokenFileError(f"{path}: not found; not an exported token corpus{hint}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TokenFileError(f"{path}: unreadable corpus meta ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        raise TokenFileError(f"{path}: not a simvq-audio token corpus")
    if data.get("format_version") != FORMAT_VERSION:
        raise TokenFileError(f"{path}: corpus format version {data.get('format_version')} is not supported "
                             f"(this build reads {FORMAT_VERSION})")
    try:
        meta = from_dict(CorpusMeta, data)
    except ConfigError as exc:
        raise TokenFileError(f"{path}: {exc}") from None
    if meta.layout != LAYOUT or meta.offset_unit != OFFSET_UNIT or meta.dtype not in ("uint16", "uint32"):
        raise TokenFileError(f"{path}: unsupported layout/dtype {meta.layout!r}/{meta.dtype!r}")
    return meta


def expected_bin_size(records: list[UtteranceRecord], n_codebooks: int, dtype: np.dtype) -> int:
    """Bytes a shard's ``.bin`` must have for ``records``; raises ``TokenFileError`` if offsets have gaps."""
    offset = 0
    for r in records:
        if r.offset != offset or r.n_frames < 1:
            raise TokenFileError(f"{r.id}: offset {r.offset} / n_frames {r.n_frames} do not follow the "
                                 f"previous utterance (expected offset {offset})")
        offset += r.n_frames
    return offset * n_codebooks * dtype.itemsize
