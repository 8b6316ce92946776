"""Does an exported folder compute what the torch codec computes? (codes and decoded audio side by side)"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn

from .runtime import OnnxCodec


@torch.no_grad()
def compare(codec: nn.Module, onnx_codec: OnnxCodec, audio: torch.Tensor) -> dict:
    """Encode ``audio [B, C, N]`` with both and decode torch's codes with both.

    Returns ``codes`` (count), ``equal_codes``, ``max_abs_audio`` and ``snr_db`` (the smallest per item,
    torch's decoded audio against the difference).
    """
    codes = codec.encode(audio)
    ours = onnx_codec.encode(audio.float().numpy())
    ref = codec.decode(codes).float().numpy()
    out = onnx_codec.decode(codes.numpy())
    diff = ref - out
    power = np.square(ref).sum(axis=(1, 2))
    noise = np.maximum(np.square(diff).sum(axis=(1, 2)), 1e-30)
    return {"codes": int(codes.numel()), "equal_codes": int((codes.numpy() == ours).sum()),
            "max_abs_audio": float(np.abs(diff).max()), "snr_db": float((10 * np.log10(power / noise)).min())}


def check_export(codec: nn.Module, directory: str | os.PathLike, seconds: float = 2.0, batch: int = 2,
                 seed: int = 0) -> dict:
    """``compare`` on seeded noise (speech-like level, a length off the hop grid), plus ``seconds`` and ``batch``."""
    generator = torch.Generator().manual_seed(seed)
    n = int(seconds * codec.sample_rate) + codec.hop_length // 3
    audio = torch.randn(batch, codec.channels, n, generator=generator) * 0.05
    return {**compare(codec.eval(), OnnxCodec(directory, threads=1), audio), "seconds": seconds, "batch": batch}
