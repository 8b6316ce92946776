"""A small F0 predictor on the decoder's input: what pitch do the tokens carry?

Trained with ``losses/pitch.py`` (YIN targets, ``yin.py``), it makes the encoder put the pitch into the
tokens, and after training it reads a voicing probability and an F0 track off any codes.
"""

from __future__ import annotations

import torch
from torch import nn

from .yin import F0_REFERENCE_HZ


def head_shape_problem(hidden: int, kernel: int, layers: int) -> str | None:
    """What is wrong with a pitch head's shape, or ``None``: channels and layers >= 1, an odd kernel >= 1."""
    if kernel < 1 or kernel % 2 == 0 or layers < 1 or hidden < 1:
        return f"need an odd kernel >= 1, layers >= 1 and channels >= 1, got {kernel}, {layers}, {hidden}"
    return None


class PitchHead(nn.Module):
    """Latents ``[B, D, T]`` -> ``[B, 2, T]``: a voicing logit and log2(F0 / 100 Hz) per frame.

    ``layers`` convolutions of ``kernel`` frames and ``hidden`` channels (ELU), then a 1-frame output
    convolution. It sees ``layers * (kernel - 1) / 2`` frames either side (the ``context``). The default,
    one layer of kernel 3, sees one frame either side, so it reports only the pitch the latents hold
    where it is; a wider head also reads the pitch that the tokens carry across neighbouring frames
    (``training/pitch_fit.py`` measured both).
    """

    def __init__(self, dim: int, hidden: int = 64, kernel: int = 3, layers: int = 1):
        super().__init__()
        problem = head_shape_problem(hidden, kernel, layers)
        if problem:
            raise ValueError(f"pitch head: {problem}")
        parts: list[nn.Module] = []
        for i in range(layers):
            parts += [nn.Conv1d(dim if i == 0 else hidden, hidden, kernel, padding=kernel // 2), nn.ELU()]
        self.net = nn.Sequential(*parts, nn.Conv1d(hidden, 2, 1))
        self.context = layers * (kernel // 2)

    def forward(self, z: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``mask [B, 1, T]`` (1 on an item's frames, 0 past its end): applied to the input and to every
        hidden layer, so a padded item gets the outputs it gets alone (its layers' zero padding)."""
        if mask is None:
            return self.net(z)
        x = z * mask
        for layer in self.net[:-1]:
            x = layer(x)
            if isinstance(layer, nn.ELU):
                x = x * mask
        return self.net[-1](x)

    @staticmethod
    def to_hz(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, 2, T]`` head output -> ``(f0 [B, T] in Hz, voicing probability [B, T])``."""
        return F0_REFERENCE_HZ * torch.exp2(out[:, 1].float()), torch.sigmoid(out[:, 0].float())
