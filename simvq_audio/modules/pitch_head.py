"""A small F0 predictor on the decoder's input: what pitch do the tokens carry?

Trained with ``losses/pitch.py`` (YIN targets, ``yin.py``), it makes the encoder put the pitch into the
tokens, and after training it reads a voicing probability and an F0 track off any codes.
"""

from __future__ import annotations

import torch
from torch import nn

from .yin import F0_REFERENCE_HZ


class PitchHead(nn.Module):
    """Latents ``[B, D, T]`` -> ``[B, 2, T]``: a voicing logit and log2(F0 / 100 Hz) per frame.

    Two convolutions (kernel 3, then 1): it sees one frame either side, so it can only
    report pitch the latents hold, not infer it from a long context.
    """

    def __init__(self, dim: int, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Conv1d(dim, hidden, 3, padding=1), nn.ELU(), nn.Conv1d(hidden, 2, 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)

    @staticmethod
    def to_hz(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, 2, T]`` head output -> ``(f0 [B, T] in Hz, voicing probability [B, T])``."""
        return F0_REFERENCE_HZ * torch.exp2(out[:, 1].float()), torch.sigmoid(out[:, 0].float())
