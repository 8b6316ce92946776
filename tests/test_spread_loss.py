"""loss.spread: the latents' covariance against isotropic; scale-free, masked, and it spreads latents."""

import pytest
import torch
from conftest import tiny_codec_forward

from simvq_audio.losses.spread import spread_loss
from simvq_audio.training.config import LossConfig
from simvq_audio.training.objective import CodecObjective


def participation_ratio(x: torch.Tensor) -> float:
    """Effective dimensions of ``x [n, d]``: (sum of eigenvalues)^2 / sum of squares."""
    ev = torch.linalg.eigvalsh(torch.cov(x.detach().T))
    return float(ev.sum() ** 2 / ev.square().sum())


def test_values_isotropic_line_and_scale():
    gen = torch.Generator().manual_seed(0)
    iso = torch.randn(4, 8, 2000, generator=gen)
    assert spread_loss(iso) < 0.05
    line = torch.randn(4, 1, 500, generator=gen) * torch.randn(1, 8, 1, generator=gen)
    assert spread_loss(line) == pytest.approx(7.0, rel=1e-4)  # d - 1 on a line
    aniso = iso * torch.tensor([3.0, 1, 1, 1, 1, 1, 1, 0.2])[None, :, None]
    assert spread_loss(aniso) > 1.0
    torch.testing.assert_close(spread_loss(aniso * 1e3), spread_loss(aniso), rtol=1e-4, atol=1e-6)
    assert float(spread_loss(torch.randn(1, 8, 1))) == 0.0  # one frame: no covariance


def test_padding_frames_do_not_count():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 300, generator=gen)
    mask = torch.ones(2, 300, dtype=torch.bool)
    mask[1, 120:] = False
    garbage = x.clone()
    garbage[1, :, 120:] = 1e4 * torch.randn(4, 180, generator=gen)
    kept = torch.cat([x[0].T, x[1, :, :120].T])[None].transpose(1, 2)
    torch.testing.assert_close(spread_loss(garbage, mask), spread_loss(kept), rtol=1e-5, atol=1e-6)


def test_descending_it_spreads_latents_from_a_line_to_the_whole_space():
    """A linear map of 8-d inputs that starts nearly rank one ends using every dimension."""
    torch.manual_seed(2)
    inputs = torch.randn(2048, 8)
    weight = torch.nn.Parameter(torch.randn(8, 1) @ torch.randn(1, 8) + 0.01 * torch.randn(8, 8))
    before = participation_ratio(inputs @ weight.T)
    opt = torch.optim.Adam([weight], lr=0.01)
    for _ in range(300):
        loss = spread_loss((inputs @ weight.T).T[None])
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = participation_ratio((inputs @ weight.T).detach())
    assert before < 1.1 and after > 7.0, (before, after)


def test_objective_adds_the_term_only_when_weighted():
    codec, real, out = tiny_codec_forward(3)
    assert out.latents.shape == (2, 4, 100) and out.latents.requires_grad
    off, logs_off = CodecObjective(LossConfig(), 16000).generator_loss(out, out.audio, real)
    on, logs_on = CodecObjective(LossConfig(spread=2.0), 16000).generator_loss(out, out.audio, real)
    assert "loss/spread" not in logs_off and logs_on["loss/spread"] > 0
    torch.testing.assert_close(on, off + 2.0 * logs_on["loss/spread"], rtol=1e-5, atol=1e-5)
    codec.zero_grad()
    CodecObjective(LossConfig(mel=0, quantizer=0, spread=1.0), 16000).generator_loss(out, out.audio, real)[0].backward()
    grads = [p.grad for p in codec.encoder.parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)  # the term reaches the encoder
