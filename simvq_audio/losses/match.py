"""How far the latents' distribution is from the codebook's: a sliced Wasserstein distance.

``loss.spread`` (``losses/spread.py``) evens the latents' covariance, but a covariance is only the
second moment: latents spread over every dimension can still sit in a few clusters (silence,
voiced and unvoiced frames) that a Gaussian codebook covers with a small share of its codes
(docs/training.md, "Where the usage goes"). SimVQ's codebook ``W C`` is an affine image of a
Gaussian, so the codes are used most evenly when the latents are distributed like the codebook
itself. ``match_loss`` measures exactly that, in the lookup space, along random directions: the
latents and the codebook are projected on ``n`` unit vectors, each projection is sorted, and the
squared differences of matching quantiles are averaged (the sliced 2-Wasserstein distance of
Rabin et al., 2011, and Deshpande et al., 2018). It is divided by the codebook's mean variance along
the same directions, so it does not depend on the scale at which the two meet, and it is 0 when the
latents' projections have the codebook's quantiles.

The gradient reaches the latents only: the codebook is detached (the quantizer's codebook loss
already moves it toward the latents); the term pushes the encoder to fill the codebook.
"""

from __future__ import annotations

import torch


def match_loss(latents: torch.Tensor, codebook: torch.Tensor, frame_mask: torch.Tensor | None = None,
               directions: int = 64, generator: torch.Generator | None = None, eps: float = 1e-8) -> torch.Tensor:
    """``latents [B, d, T]`` against ``codebook [K, d]`` -> scalar float32 ``>= 0``.

    ``frame_mask [B, T]``: true on real frames (the rest is left out). ``directions`` random unit
    vectors, drawn from ``generator`` (CPU; a fixed stream per batch keeps a resumed run exact).
    The latents' ``N`` sorted projections are compared with the codebook's quantiles at levels
    ``(i + 0.5) / N`` (nearest rank). Fewer than two frames give 0.
    """
    if latents.dim() != 3:
        raise ValueError(f"latents must be [B, d, T], got {tuple(latents.shape)}")
    d = latents.shape[1]
    if codebook.dim() != 2 or codebook.shape[1] != d:
        raise ValueError(f"codebook must be [K, {d}], got {tuple(codebook.shape)}")
    if directions < 1:
        raise ValueError(f"directions must be >= 1, got {directions}")
    x = latents.float().transpose(1, 2).reshape(-1, d)
    if frame_mask is not None:
        x = x[frame_mask.reshape(-1).to(x.device)]
    n, k = x.shape[0], codebook.shape[0]
    if n < 2:
        return latents.float().sum() * 0.0
    u = torch.randn(d, directions, generator=generator).to(x.device)
    u = u / u.norm(dim=0, keepdim=True).clamp(min=eps)
    c = codebook.detach().float().to(x.device) @ u  # [K, n_dir]
    px = (x @ u).sort(dim=0).values  # [N, n_dir]
    levels = (torch.arange(n, device=x.device, dtype=torch.float64) + 0.5) / n
    ranks = (levels * k).floor().long().clamp(max=k - 1)
    pc = c.sort(dim=0).values[ranks]  # [N, n_dir]: the codebook's quantiles
    scale = c.var(dim=0, unbiased=False).mean().clamp(min=eps)
    return (px - pc).square().mean() / scale
