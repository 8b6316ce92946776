"""Adversarial losses over the logits of several sub-discriminators.

Each function takes a list with one logits tensor per sub-discriminator (any shape) and
returns the mean over sub-discriminators of the per-tensor mean loss, in float32, so the
scale does not depend on how many sub-discriminators there are (as AudioCraft's
``normalize=True``).

* ``hinge`` (EnCodec): generator ``relu(1 - D(fake))``; discriminator
  ``relu(1 - D(real)) + relu(1 + D(fake))``.
* ``lsgan`` (HiFi-GAN): generator ``(1 - D(fake))^2``; discriminator
  ``(1 - D(real))^2 + D(fake)^2``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F

KINDS = ("hinge", "lsgan")


def _check(kind: str, logits: Sequence[torch.Tensor], name: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown adversarial loss kind {kind!r}; expected one of {KINDS}")
    if len(logits) == 0:
        raise ValueError(f"{name}: empty list of logits")


def generator_adversarial_loss(fake_logits: Sequence[torch.Tensor], kind: str = "hinge") -> torch.Tensor:
    """Loss for the generator to fool each sub-discriminator on ``fake`` audio (scalar)."""
    _check(kind, fake_logits, "generator_adversarial_loss")
    losses = []
    for logit in fake_logits:
        logit = logit.float()
        if kind == "hinge":
            losses.append(F.relu(1 - logit).mean())
        else:
            losses.append((1 - logit).pow(2).mean())
    return torch.stack(losses).mean()


def discriminator_loss(
    real_logits: Sequence[torch.Tensor], fake_logits: Sequence[torch.Tensor], kind: str = "hinge"
) -> torch.Tensor:
    """Loss for the discriminators to tell ``real`` from ``fake`` (scalar; pass fake detached)."""
    _check(kind, real_logits, "discriminator_loss")
    if len(real_logits) != len(fake_logits):
        raise ValueError(f"discriminator_loss: {len(real_logits)} real logits vs {len(fake_logits)} fake logits")
    losses = []
    for real, fake in zip(real_logits, fake_logits, strict=True):
        real, fake = real.float(), fake.float()
        if kind == "hinge":
            losses.append(F.relu(1 - real).mean() + F.relu(1 + fake).mean())
        else:
            losses.append((1 - real).pow(2).mean() + fake.pow(2).mean())
    return torch.stack(losses).mean()
