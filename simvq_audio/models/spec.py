"""The model's identity as tokens record it: one frozen ``ModelSpec``, defined once.

A token file's header (``tokens/format.py``), a token corpus' ``meta.json`` (``corpus/format.py``),
the parquet schema metadata and ``simvq-audio info`` all carry these fields; each builds them from a
``ModelSpec`` (``SimVQCodec.spec``, ``Tokenizer.spec``) and gives one back (``.spec``). No torch here:
readers of token files import this module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

_MAX_CODEBOOK_SIZE = 2**32
_UINT16_LIMIT = 65536


def codes_dtype(codebook_size: int) -> np.dtype:
    """Storage dtype for codes of a codebook of ``codebook_size`` entries: uint16 if K <= 65536, else uint32."""
    if codebook_size < 1 or codebook_size > _MAX_CODEBOOK_SIZE:
        raise ValueError(f"codebook_size must be in [1, 2**32], got {codebook_size}")
    return np.dtype(np.uint16) if codebook_size <= _UINT16_LIMIT else np.dtype(np.uint32)


@dataclass(frozen=True)
class ModelSpec:
    """What a model's codes mean: which model made them and how they map to time.

    ``model_id`` hashes the config and every weight (``SimVQCodec.model_id``); rates in Hz,
    ``hop_length`` in samples per frame, ``frame_rate = sample_rate / hop_length`` frames per second.
    """

    model_id: str
    model_name: str
    sample_rate: int
    frame_rate: float
    hop_length: int
    codebook_size: int
    n_codebooks: int

    @property
    def dtype(self) -> str:
        """Name of the codes' storage dtype (``uint16`` or ``uint32``)."""
        return codes_dtype(self.codebook_size).name

    @property
    def bitrate(self) -> float:
        """Bits per second at full bitrate: ``n_codebooks * log2(codebook_size) * frame_rate``."""
        return self.n_codebooks * math.log2(self.codebook_size) * self.frame_rate

    @classmethod
    def of(cls, record: Any) -> ModelSpec:
        """The spec fields of any object that carries them (a token header, a corpus meta)."""
        return cls(**{name: getattr(record, name) for name in cls.__dataclass_fields__})
