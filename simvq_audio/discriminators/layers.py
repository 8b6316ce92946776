"""What every discriminator here does the same way: a conv stack that keeps its feature maps,
and a multi-discriminator that runs its members on one waveform."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def conv_stack(convs: nn.ModuleList, post: nn.Module, x: torch.Tensor,
               negative_slope: float) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``post(leaky_relu(conv_n(... leaky_relu(conv_1(x)))))`` and the activation after each conv."""
    fmaps = []
    for conv in convs:
        x = F.leaky_relu(conv(x), negative_slope)
        fmaps.append(x)
    return post(x), fmaps


def run_members(members: nn.ModuleList, wav: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
    """Each member on ``wav [B, 1, N]``: (one logits tensor per member, one feature-map list per member)."""
    logits, fmaps = [], []
    for member in members:
        logit, fmap = member(wav)
        logits.append(logit)
        fmaps.append(fmap)
    return logits, fmaps
