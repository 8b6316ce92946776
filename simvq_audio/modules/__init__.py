"""Neural network building blocks: padded convolutions and the SEANet encoder/decoder."""

from .conv import StreamableConv1d, StreamableConvTranspose1d
from .seanet import SEANetConfig, SEANetDecoder, SEANetEncoder

__all__ = ["SEANetConfig", "SEANetDecoder", "SEANetEncoder", "StreamableConv1d", "StreamableConvTranspose1d"]
