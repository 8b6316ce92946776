"""How far the latents are from filling the lookup space: the anisotropy of their covariance.

A codec's encoder is free to put its latents on a line or a thin sheet of the lookup space; a
codebook, however it moves, then has most of its codes where no latent ever falls
(docs/training.md, "Where the usage goes": the built-in model's 8-d latents carry 57% of their
variance in one direction and 2.4 effective dimensions of 8). ``spread_loss`` is the
squared Frobenius distance between the latents' covariance, scaled to a trace of ``d``, and the
identity, divided by ``d``: 0 for isotropic latents, ``d - 1`` for latents on a line, and the
same at any scale, so it spreads the latents without fighting the quantizer's losses over
their size. It decorrelates the dimensions and evens their variances, as the covariance and
variance terms of VICReg (Bardes et al., 2022) do for embeddings, in scale-free form.
"""

from __future__ import annotations

import torch


def spread_loss(latents: torch.Tensor, frame_mask: torch.Tensor | None = None, eps: float = 1e-8) -> torch.Tensor:
    """``latents [B, d, T]`` (``frame_mask [B, T]``: true on real frames) -> scalar float32 ``>= 0``.

    The covariance is over all (real) frames of the batch; fewer than two frames or ``d = 1`` give 0.
    """
    if latents.dim() != 3:
        raise ValueError(f"latents must be [B, d, T], got {tuple(latents.shape)}")
    d = latents.shape[1]
    x = latents.float().transpose(1, 2).reshape(-1, d)
    if frame_mask is not None:
        x = x[frame_mask.reshape(-1).to(x.device)]
    if x.shape[0] < 2 or d < 2:
        return latents.float().sum() * 0.0
    x = x - x.mean(0, keepdim=True)
    cov = x.T @ x / (x.shape[0] - 1)
    cov = cov * (d / cov.diagonal().sum().clamp(min=eps))
    eye = torch.eye(d, device=cov.device, dtype=cov.dtype)
    return (cov - eye).square().sum() / d
