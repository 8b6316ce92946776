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

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import TokenFileError
from ..fileio import atomic_write_bytes
from ..models.spec import codes_dtype
from .header import (
    LAYOUT,
    MAX_CHANNELS,
    MAX_CODEBOOKS,
    MAX_HOP_LENGTH,
    MAX_OUTPUT_RATE,
    MAX_SAMPLE_RATE,
    InvalidTokensError,
    TokenHeader,
    source_format_problem,
)

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
PAYLOAD_ALIGNMENT = 8
_PREFIX = struct.Struct("<4sHI")  # magic, version, header length: 10 bytes, no padding with "<"
MAX_HEADER_BYTES = 1 << 20  # a real header is a few hundred bytes
_MAX_INT_DIGITS = 20  # any count or rate fits in 20 digits; longer integers are corrupt


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
