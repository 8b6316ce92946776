"""Harmonic branch of the decoder: sines at the F0's multiples with amplitudes read off the latents.

The "harmonic" half of a harmonic-plus-noise model (DDSP, Engel et al. 2020): per frame,
a 1x1 convolution of the decoder's latents predicts the log amplitude of each harmonic;
amplitudes are interpolated to the sample rate and multiply unit sines at ``k * F0``
(``modules/excitation.py``, silent where unvoiced or above Nyquist). The sum is added to
the SEANet decoder's output, which keeps the noise and everything else. A mel loss moves
these amplitudes directly, which is why harmonics appear within a few hundred CPU steps,
where a waveform decoder had not learned them in 10,000.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .excitation import hold_last_frame

MAX_LOG_AMPLITUDE = 2.0
INITIAL_LOG_AMPLITUDE = -9.0  # ~1e-4: a warm-started codec sounds as before at step 0


class HarmonicBranch(nn.Module):
    """``forward(latent [B, D, T], sines [B, K', T * hop]) -> audio [B, 1, T * hop]`` with ``K' >= n_harmonics``.

    ``frame_lengths [B]`` (valid frames per item of a padded batch): past an item's last
    frame its amplitudes repeat that frame's, as they do at the edge of an item decoded alone.
    """

    def __init__(self, latent_dim: int, n_harmonics: int, hop_length: int):
        super().__init__()
        self.n_harmonics, self.hop_length = n_harmonics, hop_length
        self.amplitudes = nn.Conv1d(latent_dim, n_harmonics, 1)
        nn.init.zeros_(self.amplitudes.weight)
        nn.init.constant_(self.amplitudes.bias, INITIAL_LOG_AMPLITUDE)

    def forward(self, latent: torch.Tensor, sines: torch.Tensor,
                frame_lengths: torch.Tensor | None = None) -> torch.Tensor:
        b, _, t = latent.shape
        if sines.shape[0] != b or sines.shape[1] < self.n_harmonics or sines.shape[-1] != t * self.hop_length:
            raise ValueError(f"sines must be [B, >={self.n_harmonics}, T * {self.hop_length}] = "
                             f"[{b}, {self.n_harmonics}, {t * self.hop_length}], got {tuple(sines.shape)}")
        log_amp = self.amplitudes(latent).float().clamp(max=MAX_LOG_AMPLITUDE)
        if frame_lengths is not None:
            log_amp = hold_last_frame(log_amp, frame_lengths)
        amp = F.interpolate(log_amp.exp(), scale_factor=self.hop_length, mode="linear", align_corners=False)
        return (amp * sines[:, : self.n_harmonics].float()).sum(1, keepdim=True).to(latent.dtype)
