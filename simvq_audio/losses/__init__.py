"""Training losses: spectral reconstruction, adversarial, feature matching, SI-SDR.

All return float32 scalars and compute in float32 even under autocast.
"""

from .adversarial import KINDS as ADVERSARIAL_KINDS
from .adversarial import discriminator_loss, generator_adversarial_loss
from .feature import feature_matching_loss
from .spectral import MultiResolutionSTFTLoss, MultiScaleMelLoss, power_spectrogram
from .waveform import si_sdr_loss

__all__ = [
    "ADVERSARIAL_KINDS",
    "MultiResolutionSTFTLoss",
    "MultiScaleMelLoss",
    "discriminator_loss",
    "feature_matching_loss",
    "generator_adversarial_loss",
    "power_spectrogram",
    "si_sdr_loss",
]
