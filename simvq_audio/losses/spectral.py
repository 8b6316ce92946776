"""Spectral reconstruction losses: multi-scale log-mel L1 and multi-resolution STFT.

Both compare an estimate with a reference waveform ``[B, C, N]`` (``C`` is usually 1)
over several STFT resolutions, so that neither time nor frequency resolution is
favoured. Both always compute in float32 with autocast disabled: ``torch.stft`` does not
support bf16, and logs of tiny half-precision magnitudes are unstable.
"""

from __future__ import annotations

import librosa
import torch
from torch import nn
from torch.nn import functional as F


def _check_pair(est: torch.Tensor, ref: torch.Tensor, name: str) -> None:
    if est.shape != ref.shape:
        raise ValueError(f"{name}: est and ref shapes differ: {tuple(est.shape)} vs {tuple(ref.shape)}")
    if est.dim() < 1 or est.shape[-1] < 1:
        raise ValueError(f"{name}: expected waveforms [..., N] with N >= 1, got {tuple(est.shape)}")


def _check_lengths(name: str, *seqs: tuple) -> None:
    if len({len(s) for s in seqs}) != 1 or not seqs[0]:
        raise ValueError(f"{name}: per-resolution settings must be non-empty and of equal length, got {seqs}")


def power_spectrogram(x: torch.Tensor, n_fft: int, hop_length: int, window: torch.Tensor) -> torch.Tensor:
    """``x [B, N]`` float32 -> ``|STFT|^2 [B, n_fft // 2 + 1, frames]``, ``frames = N // hop + 1``.

    Centred frames with reflect padding; inputs too short to reflect are zero-padded
    instead, so any ``N >= 1`` works.
    """
    pad_mode = "reflect" if x.shape[-1] > n_fft // 2 else "constant"
    spec = torch.stft(
        x,
        n_fft,
        hop_length,
        window.shape[-1],
        window=window,
        center=True,
        pad_mode=pad_mode,
        return_complex=True,
    )
    return torch.view_as_real(spec).pow(2).sum(-1)


class MultiScaleMelLoss(nn.Module):
    """Mean over scales of the L1 distance between log10 mel spectrograms (as DAC).

    ``forward(est [B, C, N], ref [B, C, N]) -> scalar``. Per scale ``i``: STFT with
    ``n_ffts[i]`` (Hann window of that size, hop ``hop_lengths[i]``, default ``n_fft // 4``),
    magnitude raised to ``power`` (1: magnitude as DAC, 2: power), ``n_mels[i]`` Slaney mel
    bands from ``librosa.filters.mel`` between ``f_min`` and ``f_max`` (Hz, ``None`` =
    Nyquist), then ``log_weight * L1(log10(clamp(mel, clamp_eps)))`` plus
    ``mag_weight * L1(mel)``. The result is the mean over scales, so it does not grow with
    the number of scales; DAC's sum over its 7 scales with weight 15 equals this with
    weight 105.
    """

    def __init__(
        self,
        sample_rate: int,
        n_ffts: tuple[int, ...] = (32, 64, 128, 256, 512, 1024, 2048),
        n_mels: tuple[int, ...] = (5, 10, 20, 40, 80, 160, 320),
        hop_lengths: tuple[int, ...] | None = None,
        f_min: float = 0.0,
        f_max: float | None = None,
        power: float = 1.0,
        log_weight: float = 1.0,
        mag_weight: float = 0.0,
        clamp_eps: float = 1e-5,
    ):
        super().__init__()
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        hop_lengths = tuple(n // 4 for n in n_ffts) if hop_lengths is None else tuple(hop_lengths)
        _check_lengths("MultiScaleMelLoss", tuple(n_ffts), tuple(n_mels), hop_lengths)
        self.sample_rate = sample_rate
        self.n_ffts, self.n_mels, self.hop_lengths = tuple(n_ffts), tuple(n_mels), hop_lengths
        self.power, self.log_weight, self.mag_weight, self.clamp_eps = power, log_weight, mag_weight, clamp_eps
        for i, (n_fft, n_mel) in enumerate(zip(self.n_ffts, self.n_mels, strict=True)):
            fb = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mel, fmin=f_min, fmax=f_max)
            # Derived from the constructor arguments: kept out of state dicts.
            self.register_buffer(f"mel_fb_{i}", torch.from_numpy(fb).float(), persistent=False)
            self.register_buffer(f"window_{i}", torch.hann_window(n_fft), persistent=False)

    def mel_spectrograms(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``x [..., N]`` -> one linear mel spectrogram ``[B', n_mels[i], frames_i]`` per scale (float32)."""
        x = x.float().reshape(-1, x.shape[-1])
        mels = []
        with torch.autocast(device_type=x.device.type, enabled=False):
            for i, (n_fft, hop) in enumerate(zip(self.n_ffts, self.hop_lengths, strict=True)):
                power = power_spectrogram(x, n_fft, hop, getattr(self, f"window_{i}").float())
                # Clamped before the root so the gradient of |X|^p stays finite at |X| = 0.
                mag = power.clamp_min(1e-12).pow(self.power / 2)
                mels.append(torch.matmul(getattr(self, f"mel_fb_{i}").float(), mag))
        return mels

    def forward(self, est: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        _check_pair(est, ref, "MultiScaleMelLoss")
        total = est.new_zeros((), dtype=torch.float32)
        with torch.autocast(device_type=est.device.type, enabled=False):
            for mel_est, mel_ref in zip(self.mel_spectrograms(est), self.mel_spectrograms(ref), strict=True):
                if self.log_weight:
                    log_est = mel_est.clamp_min(self.clamp_eps).log10()
                    log_ref = mel_ref.clamp_min(self.clamp_eps).log10()
                    total = total + self.log_weight * F.l1_loss(log_est, log_ref)
                if self.mag_weight:
                    total = total + self.mag_weight * F.l1_loss(mel_est, mel_ref)
        return total / len(self.n_ffts)


class MultiResolutionSTFTLoss(nn.Module):
    """Spectral convergence plus log-magnitude L1, averaged over resolutions (Parallel WaveGAN).

    ``forward(est [B, C, N], ref [B, C, N]) -> scalar``. Per resolution:
    ``sc = ||M_ref - M_est||_F / ||M_ref||_F`` over the whole batch and
    ``mag = mean |log M_ref - log M_est|``, where ``M = sqrt(clamp(|STFT|^2, eps))``
    with a Hann window of ``win_lengths[i]`` samples inside ``fft_sizes[i]``.
    The result is ``mean_i(sc_weight * sc_i + mag_weight * mag_i)``.
    """

    def __init__(
        self,
        fft_sizes: tuple[int, ...] = (1024, 2048, 512),
        hop_sizes: tuple[int, ...] = (120, 240, 50),
        win_lengths: tuple[int, ...] = (600, 1200, 240),
        sc_weight: float = 1.0,
        mag_weight: float = 1.0,
        eps: float = 1e-7,
    ):
        super().__init__()
        _check_lengths("MultiResolutionSTFTLoss", tuple(fft_sizes), tuple(hop_sizes), tuple(win_lengths))
        if any(w > n for w, n in zip(win_lengths, fft_sizes, strict=True)):
            raise ValueError(f"win_lengths {win_lengths} must not exceed fft_sizes {fft_sizes}")
        self.fft_sizes, self.hop_sizes = tuple(fft_sizes), tuple(hop_sizes)
        self.sc_weight, self.mag_weight, self.eps = sc_weight, mag_weight, eps
        for i, win in enumerate(win_lengths):
            self.register_buffer(f"window_{i}", torch.hann_window(win), persistent=False)

    def forward(self, est: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        _check_pair(est, ref, "MultiResolutionSTFTLoss")
        total = est.new_zeros((), dtype=torch.float32)
        with torch.autocast(device_type=est.device.type, enabled=False):
            est = est.float().reshape(-1, est.shape[-1])
            ref = ref.float().reshape(-1, ref.shape[-1])
            for i, (n_fft, hop) in enumerate(zip(self.fft_sizes, self.hop_sizes, strict=True)):
                window = getattr(self, f"window_{i}").float()
                mag_est = power_spectrogram(est, n_fft, hop, window).clamp_min(self.eps).sqrt()
                mag_ref = power_spectrogram(ref, n_fft, hop, window).clamp_min(self.eps).sqrt()
                sc = torch.linalg.norm(mag_ref - mag_est) / torch.linalg.norm(mag_ref).clamp_min(self.eps)
                mag = F.l1_loss(mag_est.log(), mag_ref.log())
                total = total + self.sc_weight * sc + self.mag_weight * mag
        return total / len(self.fft_sizes)
