"""Feature-matching loss between discriminator activations on real and fake audio."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def feature_matching_loss(
    real_fmaps: Sequence[Sequence[torch.Tensor]],
    fake_fmaps: Sequence[Sequence[torch.Tensor]],
    eps: float = 1e-8,
) -> torch.Tensor:
    """Mean over all layers of all sub-discriminators of the relative L1 distance (EnCodec).

    ``real_fmaps``/``fake_fmaps``: one list of feature maps per sub-discriminator, as
    returned by the discriminators; matching tensors must have equal shapes. Per layer:
    ``mean|fake - real| / mean|real|`` (denominator clamped at ``eps``), so layers with
    large activations do not dominate. ``real`` is detached: the generator is pulled
    towards real features, never the other way. Returns a float32 scalar.
    """
    if len(real_fmaps) != len(fake_fmaps) or len(real_fmaps) == 0:
        raise ValueError(f"feature_matching_loss: {len(real_fmaps)} real vs {len(fake_fmaps)} fake sub-discriminators")
    losses = []
    for k, (real_layers, fake_layers) in enumerate(zip(real_fmaps, fake_fmaps, strict=True)):
        if len(real_layers) != len(fake_layers):
            raise ValueError(
                f"feature_matching_loss: sub-discriminator {k} has {len(real_layers)} real vs "
                f"{len(fake_layers)} fake feature maps"
            )
        for real, fake in zip(real_layers, fake_layers, strict=True):
            if real.shape != fake.shape:
                raise ValueError(f"feature_matching_loss: shapes differ: {tuple(real.shape)} vs {tuple(fake.shape)}")
            real = real.detach().float()
            fake = fake.float()
            losses.append((fake - real).abs().mean() / real.abs().mean().clamp_min(eps))
    if not losses:
        raise ValueError("feature_matching_loss: no feature maps")
    return torch.stack(losses).mean()
