"""The codec's training objective: weighted generator loss and the discriminator loss.

The discriminator's update sees real and fake audio in one forward pass (concatenated
along the batch). The generator's pass through the discriminator then runs on the fake
half only: the real half's feature maps (the targets of feature matching) are taken,
detached, from the discriminator's pass, which used the same weights. All losses are
float32 scalars.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import nn

from ..losses import (
    MultiResolutionSTFTLoss,
    MultiScaleMelLoss,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)
from ..losses.match import match_loss
from ..losses.pitch import PitchLoss
from ..losses.spread import spread_loss
from ..models.codec import CodecOutput
from .config import LossConfig

Discriminator = Callable[[torch.Tensor], tuple[list[torch.Tensor], list[list[torch.Tensor]]]]


def _split(logits: list[torch.Tensor], fmaps: list[list[torch.Tensor]], b: int):
    """Outputs on ``cat([real, fake])`` -> (real logits, fake logits, real fmaps, fake fmaps)."""
    return ([x[:b] for x in logits], [x[b:] for x in logits],
            [[f[:b] for f in fm] for fm in fmaps], [[f[b:] for f in fm] for fm in fmaps])


@contextlib.contextmanager
def frozen(module: nn.Module):
    """Parameters of ``module`` take no gradient inside the block (the generator's pass through D)."""
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield module
    finally:
        for p, flag in zip(module.parameters(), flags, strict=True):
            p.requires_grad_(flag)


class CodecObjective(nn.Module):
    """Losses of the codec GAN, weighted by a ``LossConfig``.

    ``generator_loss``: ``mel * L_mel + quantizer * L_q [+ stft * L_stft] [+ pitch * L_pitch]
    [+ spread * L_spread] [+ match * L_match]`` and, when a discriminator is given, ``+ adversarial * L_adv + feature_matching * L_fm``.
    """

    def __init__(self, cfg: LossConfig, sample_rate: int, hop_length: int | None = None):
        super().__init__()
        self.cfg = cfg
        self.mel = MultiScaleMelLoss(sample_rate)
        self.stft = MultiResolutionSTFTLoss() if cfg.stft > 0 else None
        if cfg.pitch > 0 and hop_length is None:
            raise ValueError("loss.pitch needs the codec's hop_length")
        self.pitch = PitchLoss(sample_rate, hop_length) if cfg.pitch > 0 else None

    def generator_loss(self, out: CodecOutput, fake: torch.Tensor, real: torch.Tensor,
                       discriminator: Discriminator | None = None,
                       autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
                       real_fmaps: list[list[torch.Tensor]] | None = None,
                       directions: torch.Generator | None = None,
                       pitch_targets: tuple[torch.Tensor, torch.Tensor] | None = None,
                       ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total generator loss and its detached terms.

        ``fake``/``real``: ``[B, C, N]`` float32 reconstruction (padding zeroed) and target.
        ``discriminator``: called with its parameters frozen by the caller, on ``[B, C, N]``
        fakes when ``real_fmaps`` (the real audio's feature maps under the same weights, as
        ``discriminator_loss`` returns them) is given, else on ``[2B, C, N]`` real + fake.
        ``loss.match`` reads the latents and the first codebook off ``out``; ``directions`` is the generator
        of its random directions. ``pitch_targets``: ``(f0 [B, T] Hz, voiced [B, T])``
        for the pitch loss (pYIN's, from the batch); ``None``: YIN's of the input, as the codec computed them.
        """
        w = self.cfg
        mel = self.mel(fake, real)
        quantizer = out.quantizer_loss.float()
        total = w.mel * mel + w.quantizer * quantizer
        logs = {"loss/mel": mel, "loss/quantizer": quantizer, "loss/commitment": out.commitment_loss.float()}
        if self.stft is not None:
            stft = self.stft(fake, real)
            total = total + w.stft * stft
            logs["loss/stft"] = stft
        if self.pitch is not None:
            if out.pitch is None:
                raise ValueError("loss.pitch > 0 needs a codec with a pitch head (model.pitch_head: true)")
            targets = out.input_pitch if pitch_targets is None else pitch_targets
            pitch, pitch_logs = self.pitch(out.pitch, real, out.frame_mask, targets)
            total = total + w.pitch * pitch
            logs.update(pitch_logs)
        if w.spread > 0:
            if out.latents is None:
                raise ValueError("loss.spread needs the quantizer's input (CodecOutput.latents)")
            spread = spread_loss(out.latents, out.frame_mask)
            total = total + w.spread * spread
            logs["loss/spread"] = spread
        if w.match > 0:
            if out.latents is None or out.codebook is None:
                raise ValueError("loss.match needs the quantizer's input and codebook (CodecOutput.latents, .codebook)")
            match = match_loss(out.latents, out.codebook, out.frame_mask, w.match_directions, directions)
            total = total + w.match * match
            logs["loss/match"] = match
        if discriminator is not None:
            if real_fmaps is None:
                with autocast():
                    logits, fmaps = discriminator(torch.cat([real, fake]))
                _, fake_logits, real_fmaps, fake_fmaps = _split(logits, fmaps, real.shape[0])
            else:
                with autocast():
                    fake_logits, fake_fmaps = discriminator(fake)
            adv = generator_adversarial_loss(fake_logits, w.gan_kind)
            fm = feature_matching_loss(real_fmaps, fake_fmaps)
            total = total + w.adversarial * adv + w.feature_matching * fm
            logs["loss/adversarial"] = adv
            logs["loss/feature_matching"] = fm
        logs["loss/generator"] = total
        return total, {k: v.detach() for k, v in logs.items()}

    def discriminator_loss(self, discriminator: Discriminator, fake: torch.Tensor, real: torch.Tensor,
                           autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
                           ) -> tuple[torch.Tensor, dict[str, torch.Tensor], list[list[torch.Tensor]]]:
        """Discriminator loss on ``real`` vs ``fake`` (detached here) audio ``[B, C, N]``.

        Returns the loss, its log entry, and the real audio's feature maps (detached) for
        the generator's feature-matching term.
        """
        with autocast():
            logits, fmaps = discriminator(torch.cat([real, fake.detach()]))
        real_logits, fake_logits, real_fmaps, _ = _split(logits, fmaps, real.shape[0])
        loss = discriminator_loss(real_logits, fake_logits, self.cfg.gan_kind)
        return loss, {"loss/discriminator": loss.detach()}, [[f.detach() for f in fm] for fm in real_fmaps]
