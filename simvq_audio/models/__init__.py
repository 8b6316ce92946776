"""Codec models and their storage."""

from .codec import CodecConfig, CodecOutput, SimVQCodec
from .pretrained import FORMAT_VERSION, ModelLoadError, load_pretrained, model_id, save_pretrained

__all__ = [
    "FORMAT_VERSION",
    "CodecConfig",
    "CodecOutput",
    "ModelLoadError",
    "SimVQCodec",
    "load_pretrained",
    "model_id",
    "save_pretrained",
]
