"""The JSON header of a `.svqt` token file: ``TokenHeader``, its bounds and its checks.

Every field that sizes an allocation or an output is bounded, so that a corrupt or hostile header can
never make a reader or decoder allocate more than the codes stand for (see docs/token-format.md). The
model's identity in it is a ``ModelSpec`` (``TokenHeader.of(spec, ...)``, ``header.spec``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

from ..errors import TokenFileError
from ..models.spec import ModelSpec, codes_dtype

LAYOUT = "n_codebooks,n_frames"
_MAX_CODEBOOK_SIZE = 2**32
# Resampling rounds lengths by at most half a sample; allow a little more for other rounding conventions.
_LENGTH_TOLERANCE = 2.0
# Bounds on every field that sizes an allocation or an output, so that a corrupt or hostile header can
# never make a reader or decoder allocate more than the codes stand for (see docs/token-format.md).
MAX_SAMPLE_RATE = 768_000  # Hz; both rates (decoding resamples to original_sample_rate)
MAX_CHANNELS = 256  # both channel counts (decoding copies mono to original_channels)
MAX_CODEBOOKS = 1024
MAX_HOP_LENGTH = 1 << 20
# original_channels * original_sample_rate: what one second of tokens decodes to (16 channels at 192 kHz,
# 64 at 48 kHz, 192 at 16 kHz), so that a short file cannot describe a huge output.
MAX_OUTPUT_RATE = 3_072_000
MAX_NAME_CHARS = 256  # model_id, model_name
MAX_SOURCE_CHARS = 4096
_UPPER_BOUNDS = {
    "sample_rate": MAX_SAMPLE_RATE,
    "original_sample_rate": MAX_SAMPLE_RATE,
    "channels": MAX_CHANNELS,
    "original_channels": MAX_CHANNELS,
    "n_codebooks": MAX_CODEBOOKS,
    "hop_length": MAX_HOP_LENGTH,
}

_INT_FIELDS = (
    "sample_rate",
    "hop_length",
    "codebook_size",
    "n_codebooks",
    "n_frames",
    "n_samples",
    "original_sample_rate",
    "original_n_samples",
    "channels",
    "original_channels",
)
_POSITIVE_FIELDS = (
    "sample_rate",
    "hop_length",
    "codebook_size",
    "n_codebooks",
    "original_sample_rate",
    "channels",
    "original_channels",
)


class InvalidTokensError(TokenFileError, ValueError):
    """Codes or a header that cannot be written (a caller's mistake); also a ValueError."""


@dataclass(frozen=True)
class TokenHeader:
    """Everything needed to decode a token file and to map frames to time (see docs/token-format.md).

    Rates in Hz, lengths in samples (n_samples at the model rate, original_n_samples at the original rate),
    frame_rate in frames per second (sample_rate / hop_length). `dtype` is derived from codebook_size when left
    empty. Integer-like values (numpy ints) are normalised to int; invalid values raise `InvalidTokensError`.
    """

    model_id: str
    model_name: str
    sample_rate: int
    frame_rate: float
    hop_length: int
    codebook_size: int
    n_codebooks: int
    n_frames: int
    n_samples: int
    original_sample_rate: int
    original_n_samples: int
    channels: int
    original_channels: int
    dtype: str = ""
    layout: str = LAYOUT
    source: str | None = None

    def __post_init__(self) -> None:
        for name in _INT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, Integral):
                raise InvalidTokensError(f"header field {name} must be an integer, got {_short(value)}")
            object.__setattr__(self, name, int(value))
        if isinstance(self.frame_rate, bool) or not isinstance(self.frame_rate, Real):
            raise InvalidTokensError(f"header field frame_rate must be a number, got {_short(self.frame_rate)}")
        object.__setattr__(self, "frame_rate", float(self.frame_rate))
        if not self.dtype and isinstance(self.codebook_size, int) and 1 <= self.codebook_size <= _MAX_CODEBOOK_SIZE:
            object.__setattr__(self, "dtype", codes_dtype(self.codebook_size).name)
        problem = _header_problem(self)
        if problem:
            raise InvalidTokensError(f"invalid token header: {problem}")

    @classmethod
    def of(cls, spec: ModelSpec, **file_fields: Any) -> TokenHeader:
        """The header of a file of ``spec``'s codes; ``file_fields``: ``channels``, ``n_frames``, ``n_samples``,
        ``original_sample_rate``, ``original_n_samples``, ``original_channels`` and optionally ``source``."""
        return cls(**dataclasses.asdict(spec), dtype=spec.dtype, **file_fields)

    @property
    def spec(self) -> ModelSpec:
        """The identity of the model that made the codes."""
        return ModelSpec.of(self)

    @property
    def duration(self) -> float:
        """Seconds of audio the tokens stand for (n_samples at the model rate)."""
        return self.n_samples / self.sample_rate

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TokenHeader:
        """Build from a JSON object; unknown keys are ignored (fields added by later minor revisions)."""
        names = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(f.name for f in _required_fields() if f.name not in data)
        if missing:
            raise InvalidTokensError(f"header is missing required key(s): {', '.join(missing)}")
        return cls(**{k: v for k, v in data.items() if k in names})


def _short(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, so that an error message stays one readable line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _required_fields() -> list[dataclasses.Field]:
    return [
        f
        for f in dataclasses.fields(TokenHeader)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ] + [f for f in dataclasses.fields(TokenHeader) if f.name == "dtype"]


def _header_problem(h: TokenHeader) -> str | None:
    for name in ("model_id", "model_name", "dtype", "layout"):
        if not isinstance(getattr(h, name), str):
            return f"{name} must be a string, got {_short(getattr(h, name))}"
    if h.source is not None and not isinstance(h.source, str):
        return f"source must be a string or null, got {_short(h.source)}"
    for name in _POSITIVE_FIELDS:
        if getattr(h, name) < 1:
            return f"{name} must be >= 1, got {getattr(h, name)}"
    for name in ("n_frames", "n_samples", "original_n_samples"):
        if getattr(h, name) < 0:
            return f"{name} must be >= 0, got {getattr(h, name)}"
    for name, limit in _UPPER_BOUNDS.items():
        if getattr(h, name) > limit:
            return f"{name} must be <= {limit:,}, got {getattr(h, name):,}"
    if h.original_channels * h.original_sample_rate > MAX_OUTPUT_RATE:
        return (f"original_channels * original_sample_rate must be <= {MAX_OUTPUT_RATE:,} samples/s, got "
                f"{h.original_channels} * {h.original_sample_rate:,}")
    for name, limit in (("model_id", MAX_NAME_CHARS), ("model_name", MAX_NAME_CHARS), ("source", MAX_SOURCE_CHARS)):
        if len(getattr(h, name) or "") > limit:
            return f"{name} must be at most {limit:,} characters, got {len(getattr(h, name)):,}"
    if not (math.isfinite(h.frame_rate) and h.frame_rate > 0):
        return f"frame_rate must be a positive number, got {h.frame_rate}"
    if h.codebook_size > _MAX_CODEBOOK_SIZE:
        return f"codebook_size must be <= 2**32, got {h.codebook_size}"
    expected = codes_dtype(h.codebook_size).name
    if h.dtype != expected:
        return f"dtype {_short(h.dtype)} does not match codebook_size {h.codebook_size} (expected {expected!r})"
    if h.layout != LAYOUT:
        return f"layout {_short(h.layout)} is not supported (expected {LAYOUT!r})"
    # Lengths must agree, so that a corrupt header cannot make a decoder allocate far more than the codes hold.
    if h.n_samples > h.n_frames * h.hop_length:
        return f"n_samples {h.n_samples} exceeds n_frames * hop_length = {h.n_frames * h.hop_length}"
    at_model_rate = h.original_n_samples * h.sample_rate / h.original_sample_rate
    if abs(at_model_rate - h.n_samples) > _LENGTH_TOLERANCE:
        return (
            f"original_n_samples {h.original_n_samples} at {h.original_sample_rate} Hz does not match "
            f"n_samples {h.n_samples} at {h.sample_rate} Hz"
        )
    return None


def source_format_problem(sample_rate: int, channels: int) -> str | None:
    """Why audio at ``sample_rate`` Hz with ``channels`` channels cannot be described by a token header
    (the bounds above), or ``None``; encoders check this before spending any compute."""
    if not 1 <= sample_rate <= MAX_SAMPLE_RATE or not 1 <= channels <= MAX_CHANNELS \
            or sample_rate * channels > MAX_OUTPUT_RATE:
        return (f"{channels} channels at {sample_rate:,} Hz cannot be stored in a token file (at most "
                f"{MAX_CHANNELS} channels, {MAX_SAMPLE_RATE:,} Hz and {MAX_OUTPUT_RATE:,} samples/s in all)")
    return None
