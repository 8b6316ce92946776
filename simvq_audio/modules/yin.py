"""YIN fundamental frequency (F0) and voicing of a batch of audio, in torch, at the codec's frames.

The codec's pitch features and harmonic excitation read it, and ``losses/pitch.py`` takes its
targets from it. Frames follow the codec's: frame ``t`` is centred on sample ``t * hop + hop / 2``
and a signal of ``N`` samples has ``ceil(N / hop)`` frames.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

F0_REFERENCE_HZ = 100.0  # log-F0 targets are octaves above this


def octaves(f0: torch.Tensor) -> torch.Tensor:
    """F0 in Hz -> log2(F0 / 100 Hz), the pitch head's and the pitch features' unit (0 Hz is taken as 1 Hz)."""
    return torch.log2(f0.clamp(min=1.0) / F0_REFERENCE_HZ)


@torch.no_grad()
def yin(wav: torch.Tensor, sample_rate: int, hop_length: int, fmin: float = 60.0, fmax: float = 500.0,
        threshold: float = 0.15, silence_db: float = -40.0) -> tuple[torch.Tensor, torch.Tensor]:
    """F0 by YIN (de Cheveigne & Kawahara, 2002) per codec frame.

    Args:
        wav: ``[B, N]`` or ``[B, 1, N]`` audio (any scale).
        sample_rate, hop_length: Hz and samples per frame.
        fmin, fmax: search range in Hz; the integration window is one period of ``fmin``.
        threshold: a lag is a pitch candidate where the cumulative mean normalised
            difference falls below this (the first local minimum below it is taken).
        silence_db: frames whose RMS is this far below the item's loudest frame are unvoiced.

    Returns:
        ``(f0 [B, T], voiced [B, T])``: F0 in Hz (0 where unvoiced) and a bool mask,
        ``T = ceil(N / hop_length)``.
    """
    if wav.dim() == 3:
        wav = wav[:, 0]
    if wav.dim() != 2:
        raise ValueError(f"yin expects audio [B, N] or [B, 1, N], got {tuple(wav.shape)}")
    x = wav.float()
    b, n = x.shape
    t = -(-n // hop_length)
    tau_min, tau_max = max(2, int(sample_rate / fmax)), int(math.ceil(sample_rate / fmin))
    w = tau_max  # integration window
    length = w + tau_max + 1
    # Frame t's window starts w/2 before its centre t * hop + hop / 2.
    left = w // 2 - hop_length // 2
    right = t * hop_length - n + length
    x = F.pad(x, (max(left, 0), max(right, 0)))
    if left < 0:
        x = x[:, -left:]
    frames = x.unfold(-1, length, hop_length)[:, :t]  # [B, T, length]
    frames = frames - frames.mean(-1, keepdim=True)
    n_fft = 1 << (length + w - 1).bit_length()
    spec = torch.fft.rfft(frames, n_fft)
    head = torch.fft.rfft(frames[..., :w], n_fft)
    corr = torch.fft.irfft(spec * head.conj(), n_fft)[..., : tau_max + 1]  # r(tau), tau = 0..tau_max
    return yin_from_correlation(frames, corr, w, tau_min, tau_max, threshold, 10 ** (silence_db / 20), sample_rate)


def yin_from_correlation(frames: torch.Tensor, corr: torch.Tensor, w: int, tau_min: int, tau_max: int,
                         threshold: float, silence_ratio: float, sample_rate: int) -> tuple[torch.Tensor, torch.Tensor]:
    """YIN's decision from zero-mean ``frames [B, T, length]`` and their correlation ``corr [B, T, tau_max + 1]``
    with the first ``w`` samples: difference function, cumulative mean normalisation, the first local
    minimum below ``threshold`` refined by parabolic interpolation, and voicing (a candidate, and RMS above
    ``silence_ratio`` times the item's loudest frame). Shared by ``yin`` and its ONNX graph."""
    energy = F.pad(frames.square().cumsum(-1), (1, 0))  # energy[k] = sum_{j<k} x_j^2
    taus = torch.arange(tau_max + 1, device=frames.device)
    e_tau = energy[..., taus + w] - energy[..., taus]
    diff = (energy[..., w:w + 1] + e_tau - 2 * corr).clamp(min=0)  # d(tau)
    cum = diff[..., 1:].cumsum(-1)
    cmnd = torch.cat([torch.ones_like(diff[..., :1]), diff[..., 1:] * taus[1:] / cum.clamp(min=1e-12)], -1)
    lags = cmnd[..., tau_min:tau_max]
    prev, nxt = cmnd[..., tau_min - 1:tau_max - 1], cmnd[..., tau_min + 1:tau_max + 1]
    candidate = (lags < threshold) & (lags <= prev) & (lags <= nxt)
    has = candidate.any(-1)
    first = candidate.float().argmax(-1)  # index of the first candidate
    # Parabolic interpolation around the chosen lag.
    i = (first + tau_min).clamp(1, tau_max - 1)
    y0, y1, y2 = (cmnd.gather(-1, (i + k).unsqueeze(-1)).squeeze(-1) for k in (-1, 0, 1))
    denom = y0 - 2 * y1 + y2
    shift = torch.where(denom.abs() > 1e-12, 0.5 * (y0 - y2) / denom, torch.zeros_like(denom)).clamp(-1, 1)
    period = i.float() + shift
    rms = energy[..., w].div(w).sqrt()
    loud = rms > rms.amax(-1, keepdim=True) * silence_ratio
    voiced = has & loud & (rms > 1e-5)
    f0 = torch.where(voiced, sample_rate / period, torch.zeros_like(period))
    return f0, voiced
