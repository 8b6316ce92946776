"""The log-mel spectrogram shown in pictures (evaluation figures, training logs); losses use their own."""

from __future__ import annotations

import numpy as np
import torch

N_MELS = 80


def log_mel(x: np.ndarray, sample_rate: int, n_mels: int = N_MELS) -> np.ndarray:
    """Log-mel spectrogram in dB of ``x [N]``: ``[n_mels, frames]``, ~64 ms windows, 1/4 hop."""
    import librosa

    n_fft = 1 << round(np.log2(0.064 * sample_rate))
    hop = n_fft // 4
    wav = torch.as_tensor(np.asarray(x, dtype=np.float32)).reshape(-1)
    if wav.numel() < n_fft:
        wav = torch.nn.functional.pad(wav, (0, n_fft - wav.numel()))
    spec = torch.stft(wav, n_fft, hop, window=torch.hann_window(n_fft), return_complex=True).abs().pow(2)
    fb = torch.as_tensor(librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels), dtype=torch.float32)
    return (10 * torch.log10(torch.clamp(fb @ spec, min=1e-10))).numpy()
