"""Token files (`.svqt`): the on-disk form of a tokenized audio file (``header``: its JSON header,
``format``: the bytes, writing and reading)."""

from .format import FORMAT_VERSION, MAGIC, TokenFile, codes_dtype, read_header, read_tokens, write_tokens
from .header import InvalidTokensError, TokenHeader

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
