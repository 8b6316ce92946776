"""Discriminators: output structure for random lengths, gradients, config validation."""

from __future__ import annotations

import pytest
import torch

from simvq_audio.dataclass_dicts import ConfigError, from_dict, to_dict
from simvq_audio.discriminators import (
    CombinedDiscriminator,
    DiscriminatorConfig,
    MultiPeriodDiscriminator,
    MultiResolutionDiscriminator,
    MultiScaleSTFTDiscriminator,
    build_discriminator,
)

TINY = DiscriminatorConfig(
    periods=(2, 3, 5),
    mpd_channels=2,
    stft_filters=4,
    stft_n_ffts=(128, 64),
    stft_hop_lengths=(32, 16),
    stft_win_lengths=(128, 48),
)


def _check_structure(logits, fmaps, batch: int, n_sub: int, n_layers: int) -> None:
    assert isinstance(logits, list) and isinstance(fmaps, list)
    assert len(logits) == len(fmaps) == n_sub
    for logit, fmap in zip(logits, fmaps, strict=True):
        assert logit.shape[0] == batch and logit.shape[1] == 1
        assert isinstance(fmap, list) and len(fmap) == n_layers
        assert all(f.shape[0] == batch and torch.isfinite(f).all() for f in fmap)


@pytest.mark.parametrize("length", [1, 7, 333, 1000, 2049])
def test_mpd_structure_random_lengths(length: int) -> None:
    torch.manual_seed(length)
    mpd = MultiPeriodDiscriminator(periods=(2, 3, 5, 7, 11), channels=2)
    logits, fmaps = mpd(torch.randn(2, 1, length))
    _check_structure(logits, fmaps, batch=2, n_sub=5, n_layers=5)
    for period, logit, fmap in zip(mpd.periods, logits, fmaps, strict=True):
        assert logit.shape[-1] == period  # the period axis is never mixed
        assert all(f.shape[-1] == period for f in fmap)


@pytest.mark.parametrize("length", [1, 50, 700, 1601])
def test_msstft_structure_random_lengths(length: int) -> None:
    torch.manual_seed(length)
    disc = MultiScaleSTFTDiscriminator(
        filters=4, n_ffts=(128, 64, 32), hop_lengths=(32, 16, 8), win_lengths=(128, 64, 32)
    )
    logits, fmaps = disc(torch.randn(3, 1, length))
    _check_structure(logits, fmaps, batch=3, n_sub=3, n_layers=5)
    for n_fft, hop, fmap in zip((128, 64, 32), (32, 16, 8), fmaps, strict=True):
        frames = (max(length, n_fft) - n_fft) // hop + 1
        assert fmap[0].shape[2:] == (frames, n_fft // 2 + 1)  # [B, C, frames, freq]


@pytest.mark.parametrize("length", [1, 50, 700, 1601])
def test_mrd_structure_random_lengths(length: int) -> None:
    torch.manual_seed(length)
    disc = MultiResolutionDiscriminator(n_ffts=(128, 64), hop_lengths=(32, 16), channels=3)
    logits, fmaps = disc(torch.randn(2, 1, length))
    _check_structure(logits, fmaps, batch=2, n_sub=2, n_layers=5)
    for n_fft, hop, fmap in zip((128, 64), (32, 16), fmaps, strict=True):
        bins = n_fft // 2 + 1
        assert fmap[0].shape[1:] == (3, length // hop + 1, bins)  # [B, C, frames, freq]
        after = bins
        for _ in range(3):  # three stride-2 layers along frequency
            after = (after + 1) // 2
        assert fmap[-1].shape[-1] == after


def test_mrd_sees_harmonics_that_mel_bands_blur() -> None:
    """The input is a compressed linear-frequency magnitude: two tones 40 Hz apart are two peaks."""
    disc = MultiResolutionDiscriminator(n_ffts=(2048,), hop_lengths=(512,), channels=2).discriminators[0]
    t = torch.arange(16000) / 16000
    wav = (torch.sin(2 * torch.pi * 200 * t) + torch.sin(2 * torch.pi * 240 * t))[None, None]
    spec = disc.spectrogram(wav)[0, 0].mean(0)  # [freq], 7.8 Hz bins
    peaks = torch.topk(spec, 2).indices.sort().values
    assert peaks.tolist() == [round(200 / 7.8125), round(240 / 7.8125)]


def test_combined_concatenates_in_order() -> None:
    torch.manual_seed(0)
    disc = build_discriminator(TINY)
    assert isinstance(disc, CombinedDiscriminator)
    wav = torch.randn(2, 1, 1234)
    logits, fmaps = disc(wav)
    _check_structure(logits, fmaps, batch=2, n_sub=5, n_layers=5)
    mpd_logits, _ = disc.discriminators[0](wav)
    stft_logits, _ = disc.discriminators[1](wav)
    for a, b in zip(logits, mpd_logits + stft_logits, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("use_mpd,use_stft,use_mrd,n_sub",
                         [(True, False, False, 3), (False, True, False, 2), (False, False, True, 3), (True, False, True, 6)])
def test_config_switches(use_mpd: bool, use_stft: bool, use_mrd: bool, n_sub: int) -> None:
    cfg = DiscriminatorConfig(**{**to_dict(TINY), "use_mpd": use_mpd, "use_stft": use_stft, "use_mrd": use_mrd,
                                 "mrd_channels": 2})
    logits, _ = build_discriminator(cfg)(torch.randn(1, 1, 500))
    assert len(logits) == n_sub


def test_gradients_flow_to_input_and_weights() -> None:
    torch.manual_seed(1)
    disc = build_discriminator(TINY)
    wav = torch.randn(2, 1, 900, requires_grad=True)
    logits, fmaps = disc(wav)
    (sum(lg.mean() for lg in logits) + sum(f.mean() for fm in fmaps for f in fm)).backward()
    assert wav.grad is not None and torch.isfinite(wav.grad).all() and wav.grad.abs().sum() > 0
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in disc.parameters())


def test_channels_knob_shrinks_model() -> None:
    small = build_discriminator(TINY)
    big = build_discriminator(DiscriminatorConfig(**{**to_dict(TINY), "mpd_channels": 8, "stft_filters": 8}))
    n_small = sum(p.numel() for p in small.parameters())
    n_big = sum(p.numel() for p in big.parameters())
    assert n_small < n_big


def test_bf16_input_under_autocast() -> None:
    disc = build_discriminator(TINY)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, _ = disc(torch.randn(1, 1, 600).bfloat16())
    assert all(torch.isfinite(lg.float()).all() for lg in logits)


def test_bad_input_shape_raises() -> None:
    with pytest.raises(ValueError, match=r"\[B, 1, N\]"):
        build_discriminator(TINY)(torch.randn(2, 600))


def test_config_validation_and_round_trip() -> None:
    assert from_dict(DiscriminatorConfig, to_dict(TINY)) == TINY
    with pytest.raises(ConfigError):
        from_dict(DiscriminatorConfig, {"stft_n_ffts": [512], "stft_hop_lengths": [128, 64]})
    with pytest.raises(ConfigError):
        from_dict(DiscriminatorConfig, {"use_mpd": False, "use_stft": False})
    with pytest.raises(ConfigError, match="mrd_n_ffts"):
        from_dict(DiscriminatorConfig, {"use_mrd": True, "mrd_n_ffts": [512], "mrd_hop_lengths": [128, 64]})
    with pytest.raises(ConfigError, match="unknown config key"):
        from_dict(DiscriminatorConfig, {"channels": 3})


def test_default_stft_discriminator_has_three_scales() -> None:
    torch.manual_seed(0)
    with torch.no_grad():
        logits, fmaps = MultiScaleSTFTDiscriminator()(torch.randn(1, 1, 2400))
    _check_structure(logits, fmaps, batch=1, n_sub=3, n_layers=5)
    assert DiscriminatorConfig().periods == (2, 3, 5, 7, 11)
