"""The codec as ONNX graphs (``export_onnx``) and an ONNX Runtime codec with torch's semantics (``OnnxCodec``).

``export`` and ``graphs`` need torch; ``runtime`` needs ``onnxruntime`` (the ``onnx`` extra).
"""

from .export import export_onnx
from .graphs import DecoderGraph, EncoderGraph, OnnxExportError, fold_weight_norm, min_frames, min_samples
from .runtime import OnnxCodec, OnnxModelError, default_threads, read_manifest

__all__ = ["DecoderGraph", "EncoderGraph", "OnnxCodec", "OnnxExportError", "OnnxModelError", "default_threads", "export_onnx",
           "fold_weight_norm", "min_frames", "min_samples", "read_manifest"]
