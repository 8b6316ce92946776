"""Neural network building blocks: padded convolutions and the SEANet encoder/decoder."""

from .conv import PaddedConv1d, TrimmedConvTranspose1d
from .seanet import SEANetConfig, SEANetDecoder, SEANetEncoder

__all__ = ["SEANetConfig", "SEANetDecoder", "SEANetEncoder", "PaddedConv1d", "TrimmedConvTranspose1d"]
