"""Discriminators for adversarial codec training.

Every discriminator maps ``wav [B, 1, N]`` to ``(logits, fmaps)``: a list of logits
tensors (one per sub-discriminator) and a list of lists of feature maps.
"""

from .combined import CombinedDiscriminator, DiscriminatorConfig, build_discriminator
from .mpd import MultiPeriodDiscriminator, PeriodDiscriminator
from .mrd import MultiResolutionDiscriminator, ResolutionDiscriminator
from .msstft import MultiScaleSTFTDiscriminator, STFTDiscriminator

__all__ = [
    "CombinedDiscriminator",
    "DiscriminatorConfig",
    "MultiPeriodDiscriminator",
    "MultiResolutionDiscriminator",
    "MultiScaleSTFTDiscriminator",
    "PeriodDiscriminator",
    "ResolutionDiscriminator",
    "STFTDiscriminator",
    "build_discriminator",
]
