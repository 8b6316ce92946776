"""simvq-audio: a neural audio codec and speech tokenizer built on SimVQ.

Importing the package has no side effects; heavy parts load on first use.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["CodecConfig", "SimVQCodec", "Tokenizer", "__version__"]


def __getattr__(name: str):
    if name in ("SimVQCodec", "CodecConfig"):
        from .models import codec

        return getattr(codec, name)
    if name == "Tokenizer":
        from .inference import Tokenizer

        return Tokenizer
    raise AttributeError(f"module 'simvq_audio' has no attribute {name!r}")
