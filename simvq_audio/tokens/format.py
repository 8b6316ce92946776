"""The `.svqt` token file: discrete codes of one audio file plus what is needed to decode them.

Byte layout (all integers little-endian; full description in docs/token-format.md):

    offset 0   4 bytes   magic b"SVQT"
    offset 4   uint16    format version (FORMAT_VERSION)
    offset 6   uint32    header length H in bytes
    offset 10  H bytes   UTF-8 JSON object (TokenHeader fields, sorted keys), padded with spaces so that
                         the payload offset 10 + H is a multiple of 8
    10 + H     payload   codes [n_codebooks, n_frames], C order, uint16 if codebook_size <= 65536 else uint32

No pickle anywhere: the file can be read with `json` + `numpy` alone.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import struct
from dataclasses import dataclass
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import TokenFileError
from ..fileio import atomic_write_bytes
from ..models.spec import ModelSpec, codes_dtype

__all__ = [
    "FORMAT_VERSION",
    "InvalidTokensError",
    "LAYOUT",
    "MAGIC",
    "MAX_CHANNELS",
    "MAX_CODEBOOKS",
    "MAX_HEADER_BYTES",
    "MAX_HOP_LENGTH",
    "MAX_OUTPUT_RATE",
    "MAX_SAMPLE_RATE",
    "PAYLOAD_ALIGNMENT",
    "TokenFile",
    "TokenHeader",
    "codes_dtype",
    "encode_header",
    "read_header",
    "read_tokens",
    "source_format_problem",
    "write_tokens",
]

MAGIC = b"SVQT"
FORMAT_VERSION = 1
LAYOUT = "n_codebooks,n_frames"
PAYLOAD_ALIGNMENT = 8
_PREFIX = struct.Struct("<4sHI")  # magic, version, header length: 10 bytes, no padding with "<"
_MAX_CODEBOOK_SIZE = 2**32
# Resampling rounds lengths by at most half a sample; allow a little more for other rounding conventions.
_LENGTH_TOLERANCE = 2.0
# Bounds on every field that sizes an allocation or an output, so that a corrupt or hostile header can
# never make a reader or decoder allocate more than the codes stand for (see docs/token-format.md).
MAX_HEADER_BYTES = 1 << 20  # a real header is a few hundred bytes
MAX_SAMPLE_RATE = 768_000  # Hz; both rates (decoding resamples to original_sample_rate)
MAX_CHANNELS = 256  # both channel counts (decoding copies mono to original_channels)
MAX_CODEBOOKS = 1024
MAX_HOP_LENGTH = 1 << 20
# original_channels * original_sample_rate: what one second of tokens decodes to (16 channels at 192 kHz,
# 64 at 48 kHz, 192 at 16 kHz), so that a short file cannot describe a huge output.
MAX_OUTPUT_RATE = 3_072_000
MAX_NAME_CHARS = 256  # model_id, model_name
MAX_SOURCE_CHARS = 4096
_MAX_INT_DIGITS = 20  # any count or rate fits in 20 digits; longer integers are corrupt
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


@dataclass
class TokenFile:
    """A header and its codes: [n_codebooks, n_frames] with the header's dtype (uint16 or uint32)."""

    header: TokenHeader
    codes: np.ndarray


# ---------------------------------------------------------------------------------------------------- writing


def _codes_to_numpy(codes: Any) -> np.ndarray:
    if hasattr(codes, "detach"):  # torch.Tensor, without importing torch here
        codes = codes.detach().cpu().numpy()
    return np.asarray(codes)


def _check_codes(codes: np.ndarray, header: TokenHeader) -> str | None:
    expected = (header.n_codebooks, header.n_frames)
    if codes.shape != expected:
        return f"codes shape {tuple(codes.shape)} does not match the header [n_codebooks, n_frames] = {list(expected)}"
    if not (np.issubdtype(codes.dtype, np.integer) or codes.dtype == np.bool_):
        return f"codes must be integers, got dtype {codes.dtype}"
    if codes.size:
        low, high = int(codes.min()), int(codes.max())
        if low < 0 or high >= header.codebook_size:
            return f"codes must be in [0, {header.codebook_size}), found values in [{low}, {high}]"
    return None


def encode_header(header: TokenHeader) -> bytes:
    """Magic, version, header length and the padded JSON header: everything before the payload."""
    text = json.dumps(header.to_dict(), sort_keys=True, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    body = text.encode("utf-8")
    # Pad with spaces (valid JSON whitespace) so the payload starts on an 8-byte boundary for np.memmap.
    body += b" " * (-(_PREFIX.size + len(body)) % PAYLOAD_ALIGNMENT)
    return _PREFIX.pack(MAGIC, FORMAT_VERSION, len(body)) + body


def write_tokens(path: str | os.PathLike, codes: Any, header: TokenHeader) -> None:
    """Write codes [n_codebooks, n_frames] (numpy or torch integers) with `header` to `path`, atomically.

    Raises `InvalidTokensError` (a TokenFileError and ValueError) naming the file when the codes' shape or values
    do not match the header; nothing is written then.
    """
    path = Path(path)
    array = _codes_to_numpy(codes)
    problem = _check_codes(array, header)
    if problem:
        raise InvalidTokensError(f"{path}: cannot write tokens: {problem}")
    payload = np.ascontiguousarray(array, dtype=codes_dtype(header.codebook_size).newbyteorder("<"))
    atomic_write_bytes(path, encode_header(header) + payload.tobytes(order="C"))


# ---------------------------------------------------------------------------------------------------- reading


def _open_error(path: Path, err: OSError) -> TokenFileError:
    if isinstance(err, FileNotFoundError):
        return TokenFileError(f"{path}: file not found")
    if isinstance(err, IsADirectoryError) or path.is_dir():
        return TokenFileError(f"{path}: is a directory, not a token file")
    return TokenFileError(f"{path}: cannot read ({err.strerror or err})")


def _parse_prefix(path: Path, prefix: bytes, file_size: int) -> tuple[int, int]:
    """Check magic and version; return (header length, payload offset)."""
    if file_size == 0:
        raise TokenFileError(f"{path}: empty file, not a .svqt token file")
    if len(prefix) < 4 or prefix[:4] != MAGIC:
        raise TokenFileError(f"{path}: not a .svqt token file (starts with {prefix[:4]!r}, expected {MAGIC!r})")
    if len(prefix) < _PREFIX.size:
        raise TokenFileError(
            f"{path}: truncated token file ({file_size} bytes, shorter than the {_PREFIX.size}-byte prefix)"
        )
    _, version, header_len = _PREFIX.unpack(prefix[: _PREFIX.size])
    if version > FORMAT_VERSION:
        raise TokenFileError(
            f"{path}: written by a newer version of simvq-audio (token format version {version}; this version "
            f"reads up to {FORMAT_VERSION}); upgrade simvq-audio"
        )
    if version < 1:
        raise TokenFileError(f"{path}: invalid token format version {version}")
    if header_len > MAX_HEADER_BYTES:
        raise TokenFileError(f"{path}: corrupt header length {header_len:,} bytes (at most {MAX_HEADER_BYTES:,})")
    offset = _PREFIX.size + header_len
    if offset > file_size:
        raise TokenFileError(
            f"{path}: truncated header: the header should be {header_len} bytes but only "
            f"{file_size - _PREFIX.size} bytes follow the prefix"
        )
    return header_len, offset


class _LongInteger(ValueError):
    pass


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > _MAX_INT_DIGITS:
        raise _LongInteger(f"an integer with {len(text.lstrip('-')):,} digits")
    return int(text)


def _parse_header(path: Path, raw: bytes) -> TokenHeader:
    try:
        data = json.loads(raw.decode("utf-8"), parse_int=_parse_int)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise TokenFileError(f"{path}: corrupt header (not valid UTF-8 JSON: {err})") from err
    except _LongInteger as err:
        raise TokenFileError(f"{path}: corrupt header ({err})") from err
    except RecursionError as err:
        raise TokenFileError(f"{path}: corrupt header (JSON nested too deeply)") from err
    if not isinstance(data, dict):
        raise TokenFileError(f"{path}: corrupt header (JSON is a {type(data).__name__}, expected an object)")
    try:
        return TokenHeader.from_dict(data)
    except InvalidTokensError as err:
        raise TokenFileError(f"{path}: corrupt header ({err})") from err


def _read_prefix_and_header(path: Path, f) -> tuple[TokenHeader, int, int]:
    file_size = os.fstat(f.fileno()).st_size
    header_len, offset = _parse_prefix(path, f.read(_PREFIX.size), file_size)
    header = _parse_header(path, f.read(header_len))
    return header, offset, file_size


def read_header(path: str | os.PathLike) -> TokenHeader:
    """Read and check only the header (cheap for large files). Raises `TokenFileError` naming the file."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            header, _, _ = _read_prefix_and_header(path, f)
    except OSError as err:
        raise _open_error(path, err) from err
    return header


def read_tokens(path: str | os.PathLike) -> TokenFile:
    """Read a token file; codes come back as a writable [n_codebooks, n_frames] uint16/uint32 array.

    Checks magic, version, header JSON and keys, dtype against codebook_size, the payload length
    (= n_codebooks * n_frames * itemsize, no more, no less) and that every code is < codebook_size.
    Raises `TokenFileError` naming the file for a missing, truncated or corrupt file.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            header, offset, file_size = _read_prefix_and_header(path, f)
            dtype = codes_dtype(header.codebook_size).newbyteorder("<")
            expected = header.n_codebooks * header.n_frames * dtype.itemsize
            actual = file_size - offset
            if actual != expected:
                what = "truncated" if actual < expected else "corrupt"
                raise TokenFileError(
                    f"{path}: {what} payload: expected {expected} bytes of codes "
                    f"([{header.n_codebooks}, {header.n_frames}] {header.dtype}), found {actual}"
                )
            f.seek(offset)
            codes = np.fromfile(f, dtype=dtype, count=header.n_codebooks * header.n_frames)
    except OSError as err:
        raise _open_error(path, err) from err
    if codes.size != header.n_codebooks * header.n_frames:  # file shrank while reading
        raise TokenFileError(f"{path}: truncated payload (file changed while reading)")
    codes = codes.astype(dtype.newbyteorder("="), copy=False).reshape(header.n_codebooks, header.n_frames)
    if codes.size and int(codes.max()) >= header.codebook_size:
        raise TokenFileError(
            f"{path}: corrupt payload: code {int(codes.max())} is out of range for codebook_size {header.codebook_size}"
        )
    return TokenFile(header=header, codes=codes)
