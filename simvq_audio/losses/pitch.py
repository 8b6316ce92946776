"""Pitch supervision: YIN F0 of the training audio, and the loss of a token-side F0 predictor.

A codec trained with reconstruction losses alone can leave the pitch out of its tokens:
an L1 mel loss is minimised, under uncertainty, by a noise-like signal with the right
envelope, so the decoder never renders harmonics and the encoder gets no gradient that
rewards encoding F0 (benchmarks/pitch_probe.py measured exactly this on the first
built-in model). The codec's optional pitch head predicts voicing and F0 from what the
decoder sees; this module gives it the loss against YIN's targets (``modules/yin.py``, computed on the batch in
torch, no precomputed files), whose gradient reaches the encoder through the
straight-through quantizer.

Frames follow the codec's: frame ``t`` is centred on sample ``t * hop + hop / 2`` and a
signal of ``N`` samples has ``ceil(N / hop)`` frames.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..modules.yin import octaves, yin


class PitchLoss(nn.Module):
    """Loss of a pitch head's ``[B, 2, T]`` output (voicing logit, octaves above 100 Hz).

    ``forward(pred, wav, frame_mask) -> (loss, logs)``: binary cross-entropy of the
    voicing logit against YIN's voicing, plus the L1 error in octaves of the F0 on frames
    YIN calls voiced; both averaged over valid frames (``frame_mask [B, T]``, ``None``:
    all). ``logs`` has the two terms and the share of voiced frames.
    """

    def __init__(self, sample_rate: int, hop_length: int):
        super().__init__()
        self.sample_rate, self.hop_length = sample_rate, hop_length

    def forward(self, pred: torch.Tensor, wav: torch.Tensor, frame_mask: torch.Tensor | None = None,
                targets: tuple[torch.Tensor, torch.Tensor] | None = None):
        """``targets``: YIN's ``(f0, voiced)`` of ``wav`` when already computed (the codec's forward does)."""
        f0, voiced = targets if targets is not None else yin(wav, self.sample_rate, self.hop_length)
        if pred.shape[0] != f0.shape[0] or pred.shape[-1] != f0.shape[-1] or pred.shape[1] != 2:
            raise ValueError(f"pitch head output {tuple(pred.shape)} does not match [B, 2, T] = "
                             f"[{f0.shape[0]}, 2, {f0.shape[-1]}]")
        pred = pred.float()
        valid = torch.ones_like(voiced) if frame_mask is None else frame_mask.to(voiced.device).bool()
        target = voiced.float()
        bce = F.binary_cross_entropy_with_logits(pred[:, 0], target, reduction="none")
        bce = (bce * valid).sum() / valid.sum().clamp(min=1)
        on = voiced & valid
        l1 = ((pred[:, 1] - octaves(f0)).abs() * on).sum() / on.sum().clamp(min=1)
        logs = {"loss/pitch_voicing": bce.detach(), "loss/pitch_octaves": l1.detach(),
                "pitch/voiced_share": (on.sum() / valid.sum().clamp(min=1)).detach().float()}
        return bce + l1, logs
