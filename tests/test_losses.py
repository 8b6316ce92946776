"""Losses: zero on identical inputs, positive otherwise, finite gradients, float32 under autocast."""

from __future__ import annotations

import pytest
import torch

from simvq_audio.losses import (
    MultiResolutionSTFTLoss,
    MultiScaleMelLoss,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
    si_sdr_loss,
)

SR = 16000


def _pair(length: int = 4000, seed: int = 0, noise: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(length) / SR
    ref = 0.5 * torch.sin(2 * torch.pi * 220 * t) + 0.05 * torch.randn(length, generator=gen)
    ref = torch.stack([ref, ref.roll(100)])[:, None]  # [2, 1, N]
    est = ref + noise * torch.randn(ref.shape, generator=gen)
    return est, ref


def _small_mel() -> MultiScaleMelLoss:
    return MultiScaleMelLoss(SR, n_ffts=(64, 256, 1024), n_mels=(10, 40, 80))


SPECTRAL = [MultiScaleMelLoss(SR), MultiResolutionSTFTLoss()]


@pytest.mark.parametrize("loss", SPECTRAL, ids=lambda m: type(m).__name__)
def test_spectral_zero_for_identical_positive_otherwise(loss) -> None:
    est, ref = _pair()
    assert loss(ref, ref).item() == 0.0
    value = loss(est, ref)
    assert value.dim() == 0 and value.dtype == torch.float32 and value.item() > 0
    # More distortion, larger loss.
    assert loss(_pair(noise=0.3)[0], ref).item() > value.item()


@pytest.mark.parametrize("loss", SPECTRAL, ids=lambda m: type(m).__name__)
@pytest.mark.parametrize("identical", [False, True])
def test_spectral_gradient_finite(loss, identical: bool) -> None:
    est, ref = _pair()
    est = (ref.clone() if identical else est).requires_grad_()
    loss(est, ref).backward()
    assert torch.isfinite(est.grad).all()
    if not identical:
        assert est.grad.abs().sum() > 0


@pytest.mark.parametrize("loss", SPECTRAL, ids=lambda m: type(m).__name__)
@pytest.mark.parametrize("length", [1, 37, 1500])
def test_spectral_any_length_and_silence(loss, length: int) -> None:
    est, ref = _pair(length)
    assert torch.isfinite(loss(est, ref))
    silent = torch.zeros_like(ref, requires_grad=True)
    value = loss(silent, ref)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(silent.grad).all()


@pytest.mark.parametrize("make_loss", [_small_mel, MultiResolutionSTFTLoss], ids=["mel", "stft"])
def test_spectral_autocast_bf16_matches_float32(make_loss) -> None:
    loss = make_loss()
    est, ref = _pair()
    expected = loss(est, ref)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = loss(est, ref)
        bf16_inputs = loss(est.bfloat16(), ref.bfloat16())
    assert under_autocast.dtype == torch.float32
    torch.testing.assert_close(under_autocast, expected, rtol=1e-5, atol=1e-6)
    # bf16 inputs lose precision before the loss; the loss itself stays finite and close.
    assert torch.isfinite(bf16_inputs)
    torch.testing.assert_close(bf16_inputs, expected, rtol=0.1, atol=0.02)
    # A module cast to bf16 (buffers included) still computes in float32.
    cast = loss.to(torch.bfloat16)(est, ref)
    assert cast.dtype == torch.float32
    torch.testing.assert_close(cast, expected, rtol=0.01, atol=1e-3)


def test_mel_options_and_buffers() -> None:
    est, ref = _pair()
    base = _small_mel()
    assert base.state_dict() == {}  # filters and windows are derived, not stored
    with_mag = MultiScaleMelLoss(SR, n_ffts=(64, 256, 1024), n_mels=(10, 40, 80), mag_weight=1.0)
    assert with_mag(est, ref).item() > base(est, ref).item()
    power2 = MultiScaleMelLoss(SR, n_ffts=(64, 256, 1024), n_mels=(10, 40, 80), power=2.0)
    assert power2(ref, ref).item() == 0.0 and power2(est, ref).item() > 0
    with pytest.raises(ValueError, match="equal length"):
        MultiScaleMelLoss(SR, n_ffts=(64, 256), n_mels=(10,))
    with pytest.raises(ValueError, match="shapes differ"):
        base(est[..., :-1], ref)


def test_adversarial_losses() -> None:
    torch.manual_seed(0)
    confident_real = [torch.full((2, 1, 5), 2.0), torch.full((2, 1, 3, 4), 3.0)]
    confident_fake = [-x for x in confident_real]
    for kind in ("hinge", "lsgan"):
        # A discriminator that is right beyond the margin has zero hinge loss.
        d_loss = discriminator_loss(confident_real, confident_fake, kind)
        g_loss = generator_adversarial_loss(confident_fake, kind)
        assert g_loss.item() > 0
        if kind == "hinge":
            assert d_loss.item() == 0.0
            assert g_loss.item() == pytest.approx(1 + 2.5)  # mean over sub-discriminators of relu(1 - x)
        else:
            assert d_loss.item() > 0
        # The generator's loss is zero when the discriminator takes fake for real (target 1).
        ones = [torch.ones(2, 1, 5), torch.ones(2, 1, 3, 4)]
        assert generator_adversarial_loss(ones, kind).item() == 0.0
        logits = [torch.randn(2, 1, 7, requires_grad=True) for _ in range(3)]
        (
            discriminator_loss(logits, [lg.detach() * 0 for lg in logits], kind)
            + generator_adversarial_loss(logits, kind)
        ).backward()
        assert all(torch.isfinite(lg.grad).all() for lg in logits)
    with pytest.raises(ValueError, match="unknown adversarial loss kind"):
        generator_adversarial_loss(confident_fake, "wgan")
    with pytest.raises(ValueError):
        discriminator_loss(confident_real, confident_fake[:1])


def _fmaps(seed: int, requires_grad: bool = False) -> list[list[torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    shapes = [[(2, 4, 10, 2), (2, 8, 4, 2)], [(2, 4, 6, 33)]]
    return [[torch.randn(s, generator=gen).requires_grad_(requires_grad) for s in sub] for sub in shapes]


def test_feature_matching() -> None:
    real = _fmaps(0, requires_grad=True)
    fake = _fmaps(1, requires_grad=True)
    assert feature_matching_loss(real, real).item() == 0.0
    value = feature_matching_loss(real, fake)
    detached = feature_matching_loss([[f.detach() for f in sub] for sub in real], fake)
    assert value.item() > 0 and value.item() == detached.item()
    value.backward()
    assert all(f.grad is None for sub in real for f in sub)  # real is detached
    assert all(torch.isfinite(f.grad).all() and f.grad.abs().sum() > 0 for sub in fake for f in sub)
    # Relative: scaling both real and fake by the same factor leaves the loss unchanged.
    scaled = feature_matching_loss([[10 * f for f in sub] for sub in real], [[10 * f for f in sub] for sub in fake])
    torch.testing.assert_close(scaled, value.detach())
    with pytest.raises(ValueError):
        feature_matching_loss(real, fake[:1])


def test_si_sdr_loss() -> None:
    est, ref = _pair()
    assert si_sdr_loss(ref, ref).item() < -60
    # Scale invariant; more noise means a higher loss.
    torch.testing.assert_close(si_sdr_loss(3 * est, ref), si_sdr_loss(est, ref), rtol=1e-4, atol=1e-4)
    assert si_sdr_loss(_pair(noise=0.3)[0], ref).item() > si_sdr_loss(est, ref).item()
    est = est.clone().requires_grad_()
    si_sdr_loss(est, ref).backward()
    assert torch.isfinite(est.grad).all()
