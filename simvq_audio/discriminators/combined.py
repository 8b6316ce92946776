"""Discriminator configuration and the combined (MPD + MS-STFT + MRD) discriminator."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .mpd import MultiPeriodDiscriminator, _check_wav
from .mrd import MultiResolutionDiscriminator
from .msstft import MultiScaleSTFTDiscriminator


@dataclass(frozen=True)
class DiscriminatorConfig:
    """Which discriminators to build and how wide.

    ``periods``/``mpd_channels``: the multi-period discriminator (``mpd_channels``
    scales the HiFi-GAN widths 32, 128, 512, 1024, 1024). ``stft_*``: the multi-scale
    STFT discriminator, one sub-discriminator per ``(n_fft, hop, win)`` triple,
    ``stft_filters`` channels per conv. ``mrd_*``: the multi-resolution magnitude
    discriminator (UnivNet/Vocos), one per ``(n_fft, hop)`` pair, ``mrd_channels`` wide.
    Lengths are in samples. A CPU-cheap set: ``mpd_channels: 4``, ``use_stft: false``,
    ``use_mrd: true``, ``mrd_channels: 8`` (BENCHMARKS.md has the step costs).
    """

    periods: tuple[int, ...] = (2, 3, 5, 7, 11)
    stft_filters: int = 32
    stft_n_ffts: tuple[int, ...] = (1024, 2048, 512)
    stft_hop_lengths: tuple[int, ...] = (256, 512, 128)
    stft_win_lengths: tuple[int, ...] = (1024, 2048, 512)
    use_mpd: bool = True
    use_stft: bool = True
    mpd_channels: int = 32
    use_mrd: bool = False
    mrd_channels: int = 32
    mrd_n_ffts: tuple[int, ...] = (2048, 1024, 512)
    mrd_hop_lengths: tuple[int, ...] = (512, 256, 128)

    def __post_init__(self) -> None:
        if not (self.use_mpd or self.use_stft or self.use_mrd):
            raise ValueError("at least one of use_mpd, use_stft and use_mrd must be true")
        if self.mrd_channels < 1:
            raise ValueError("mrd_channels must be >= 1")
        if self.use_mrd and (not self.mrd_n_ffts or len(self.mrd_n_ffts) != len(self.mrd_hop_lengths)):
            raise ValueError("mrd_n_ffts and mrd_hop_lengths must be non-empty and of equal length")
        if self.use_mpd and (not self.periods or min(self.periods) < 1):
            raise ValueError(f"periods must be non-empty positive integers, got {self.periods}")
        if self.mpd_channels < 1 or self.stft_filters < 1:
            raise ValueError("mpd_channels and stft_filters must be >= 1")
        n = (len(self.stft_n_ffts), len(self.stft_hop_lengths), len(self.stft_win_lengths))
        if self.use_stft and (len(set(n)) != 1 or n[0] == 0):
            raise ValueError(f"stft_n_ffts, stft_hop_lengths, stft_win_lengths must have one equal length, got {n}")


class CombinedDiscriminator(nn.Module):
    """Runs several multi-discriminators and concatenates their outputs.

    ``forward(wav [B, 1, N]) -> (logits, fmaps)``: the lists of each member, in order.
    """

    def __init__(self, discriminators: list[nn.Module]):
        super().__init__()
        if not discriminators:
            raise ValueError("CombinedDiscriminator needs at least one discriminator")
        self.discriminators = nn.ModuleList(discriminators)

    def forward(self, wav: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        _check_wav(wav, "CombinedDiscriminator")
        logits: list[torch.Tensor] = []
        fmaps: list[list[torch.Tensor]] = []
        for disc in self.discriminators:
            lg, fm = disc(wav)
            logits.extend(lg)
            fmaps.extend(fm)
        return logits, fmaps


def build_discriminator(cfg: DiscriminatorConfig) -> CombinedDiscriminator:
    """The discriminators ``cfg`` asks for: MPD, MS-STFT, MRD, in that order."""
    members: list[nn.Module] = []
    if cfg.use_mpd:
        members.append(MultiPeriodDiscriminator(cfg.periods, channels=cfg.mpd_channels))
    if cfg.use_stft:
        members.append(
            MultiScaleSTFTDiscriminator(cfg.stft_filters, cfg.stft_n_ffts, cfg.stft_hop_lengths, cfg.stft_win_lengths)
        )
    if cfg.use_mrd:
        members.append(MultiResolutionDiscriminator(cfg.mrd_n_ffts, cfg.mrd_hop_lengths, cfg.mrd_channels))
    return CombinedDiscriminator(members)
