"""Token files (`.svqt`): the on-disk form of a tokenized audio file."""

from .format import (
    FORMAT_VERSION,
    MAGIC,
    InvalidTokensError,
    TokenFile,
    TokenHeader,
    codes_dtype,
    read_header,
    read_tokens,
    write_tokens,
)

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "InvalidTokensError",
    "TokenFile",
    "TokenHeader",
    "codes_dtype",
    "read_header",
    "read_tokens",
    "write_tokens",
]
