"""Vector quantizers: SimVQ, a residual stack of codebook quantizers, plain/EMA VQ baselines, and a usage tracker."""

from .base import CodebookQuantizer, QuantizerOutput, code_metrics
from .builder import QuantizerConfig, build_quantizer, build_stage
from .residual import ResidualQuantizer
from .search import nearest_codes
from .simvq import CodebookMismatchError, SimVQ, frozen_codebook
from .tracker import CodeUsageTracker
from .vq import EMAVectorQuantizer, VectorQuantizer

__all__ = [
    "CodeUsageTracker",
    "CodebookMismatchError",
    "CodebookQuantizer",
    "EMAVectorQuantizer",
    "QuantizerConfig",
    "QuantizerOutput",
    "ResidualQuantizer",
    "SimVQ",
    "VectorQuantizer",
    "build_quantizer",
    "build_stage",
    "code_metrics",
    "frozen_codebook",
    "nearest_codes",
]
