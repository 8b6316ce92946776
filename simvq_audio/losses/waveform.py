"""Waveform-domain loss: negative scale-invariant SDR."""

from __future__ import annotations

import torch


def si_sdr_loss(est: torch.Tensor, ref: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Negative mean SI-SDR (dB) of ``est`` against ``ref``, both ``[..., N]`` (float32 scalar).

    Each signal (every leading index) is made zero-mean; ``ref`` is scaled by the optimal
    gain ``<est, ref> / ||ref||^2`` and SI-SDR is ``10 log10(||target||^2 / ||est - target||^2)``.
    """
    if est.shape != ref.shape or est.shape[-1] < 1:
        raise ValueError(
            f"si_sdr_loss: est and ref must have equal shapes [..., N], got {tuple(est.shape)} vs {tuple(ref.shape)}"
        )
    with torch.autocast(device_type=est.device.type, enabled=False):
        est = est.float() - est.float().mean(-1, keepdim=True)
        ref = ref.float() - ref.float().mean(-1, keepdim=True)
        gain = (est * ref).sum(-1, keepdim=True) / (ref.pow(2).sum(-1, keepdim=True) + eps)
        target = gain * ref
        noise = est - target
        ratio = (target.pow(2).sum(-1) + eps) / (noise.pow(2).sum(-1) + eps)
        return -10 * torch.log10(ratio).mean()
