"""Does an exported folder compute what the torch codec computes? (codes and decoded audio side by side)"""

from __future__ import annotations

import math
import os

import numpy as np
import torch
from torch import nn

from .runtime import OnnxCodec, OnnxModelError


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
    """``compare`` on ``batch`` seeded test signals of ``seconds`` (plus a third of a hop, off the frame grid):
    a gliding harmonic tone (so YIN, the pitch features and the sines are exercised) over noise."""
    generator = torch.Generator().manual_seed(seed)
    n = int(seconds * codec.sample_rate) + codec.hop_length // 3
    t = torch.arange(n, dtype=torch.float64) / codec.sample_rate
    f0 = 90.0 + 60.0 * torch.rand(batch, 1, 1, generator=generator, dtype=torch.float64)
    phase = 2 * math.pi * torch.cumsum(f0 * (1 + 0.2 * torch.sin(2 * math.pi * 1.5 * t)), -1) / codec.sample_rate
    tone = sum(torch.sin(k * phase) / k for k in range(1, 8)).float() * 0.1
    audio = (tone + 0.01 * torch.randn(batch, 1, n, generator=generator)).expand(batch, codec.channels, n).contiguous()
    try:
        result = compare(codec.eval(), OnnxCodec(directory, threads=1), audio)
    except OnnxModelError:
        raise
    except Exception as exc:  # onnxruntime's own errors: a graph that specialised a length, a missing kernel
        raise OnnxModelError(f"{directory}: ONNX Runtime failed on {seconds:g} s of a test signal (batch {batch}): "
                             f"{str(exc).strip().splitlines()[-1][:300]}") from exc
    return {**result, "seconds": seconds, "batch": batch}
