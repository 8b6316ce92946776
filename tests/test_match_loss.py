"""loss.match: the sliced Wasserstein distance from the latents to the codebook; exact cases, scale,
masking, where its gradient goes, and that descending it spreads clustered latents over the codes."""

import dataclasses

import pytest
import torch
from conftest import tiny_codec_forward

from simvq_audio.losses.match import match_loss
from simvq_audio.training.config import LossConfig
from simvq_audio.training.objective import CodecObjective


def directions(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_zero_for_the_codebook_itself_and_small_for_its_distribution():
    gen = torch.Generator().manual_seed(0)
    mix = torch.randn(8, 8, generator=gen)
    codebook = torch.randn(512, 8, generator=gen) @ mix
    # The codebook's own vectors as latents: every quantile matches exactly.
    assert float(match_loss(codebook.T[None], codebook, generator=directions())) == 0.0
    # Fresh draws from the codebook's distribution: close; two tight clusters and a line: far.
    same = torch.randn(4096, 8, generator=gen) @ mix
    clusters = codebook[:2][torch.randint(0, 2, (4096,), generator=gen)] + 0.01 * torch.randn(4096, 8, generator=gen)
    line = torch.randn(4096, 1, generator=gen) * codebook.std(0, keepdim=True)
    near = float(match_loss(same.T[None], codebook, generator=directions()))
    far = float(match_loss(clusters.T[None], codebook, generator=directions()))
    flat = float(match_loss(line.T[None], codebook, generator=directions()))
    assert near < 0.05 and far > 0.5 and flat > 0.2, (near, far, flat)


def test_scale_free_seeded_and_one_frame_is_zero():
    gen = torch.Generator().manual_seed(1)
    codebook, x = torch.randn(256, 4, generator=gen), torch.rand(2, 4, 300, generator=gen)
    value = match_loss(x, codebook, generator=directions(3))
    torch.testing.assert_close(match_loss(x * 1e3, codebook * 1e3, generator=directions(3)), value, rtol=1e-4, atol=1e-6)
    assert float(match_loss(x, codebook, generator=directions(3))) == float(value)  # same directions, same value
    assert float(match_loss(x, codebook, generator=directions(4))) != float(value)
    assert float(match_loss(torch.randn(1, 4, 1), codebook)) == 0.0
    with pytest.raises(ValueError, match="codebook must be"):
        match_loss(x, torch.randn(256, 5))
    with pytest.raises(ValueError, match="directions"):
        match_loss(x, codebook, directions=0)


def test_padding_frames_do_not_count():
    gen = torch.Generator().manual_seed(2)
    codebook, x = torch.randn(128, 4, generator=gen), torch.randn(2, 4, 300, generator=gen)
    mask = torch.ones(2, 300, dtype=torch.bool)
    mask[1, 120:] = False
    garbage = x.clone()
    garbage[1, :, 120:] = 1e4
    kept = torch.cat([x[0].T, x[1, :, :120].T]).T[None]
    torch.testing.assert_close(match_loss(garbage, codebook, mask, generator=directions()),
                               match_loss(kept, codebook, generator=directions()), rtol=1e-5, atol=1e-6)


def test_gradient_reaches_the_latents_not_the_codebook():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(1, 4, 200, generator=gen).requires_grad_(True)
    codebook = torch.randn(64, 4, generator=gen).requires_grad_(True)
    match_loss(x * 3, codebook, generator=directions()).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0 and codebook.grad is None


def test_descending_it_spreads_clustered_latents_over_the_codes():
    """Latents in two tight clusters reach two codes; after descent they reach most of the codebook."""
    gen = torch.Generator().manual_seed(4)
    codebook = torch.randn(256, 8, generator=gen) * torch.tensor([2.0, 1, 1, 1, 1, 1, 0.5, 0.5])
    start = codebook[:2][torch.randint(0, 2, (4096,), generator=gen)] + 0.01 * torch.randn(4096, 8, generator=gen)
    latents = torch.nn.Parameter(start.clone())

    def used() -> int:
        return int(torch.cdist(latents.detach(), codebook).argmin(1).unique().numel())

    before = used()
    opt = torch.optim.Adam([latents], lr=0.05)
    for step in range(300):
        loss = match_loss(latents.T[None], codebook, generator=directions(step))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert before <= 2 and used() > 0.9 * 256, (before, used())
    with torch.no_grad():
        assert float(match_loss(latents.T[None], codebook, generator=directions(999))) < 0.05


def test_objective_adds_the_term_only_when_weighted():
    codec, real, out = tiny_codec_forward(5)
    # the term's codebook is the trainer's: W C as the forward's search projected it
    torch.testing.assert_close(out.codebook, codec.quantizer.stages[0].codebook(), rtol=0, atol=0)
    off, logs_off = CodecObjective(LossConfig(), 16000).generator_loss(out, out.audio, real)
    on, logs_on = CodecObjective(LossConfig(match=2.0), 16000).generator_loss(
        out, out.audio, real, directions=directions())
    assert "loss/match" not in logs_off and logs_on["loss/match"] > 0
    torch.testing.assert_close(on, off + 2.0 * logs_on["loss/match"], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="loss.match needs"):
        CodecObjective(LossConfig(match=1.0), 16000).generator_loss(dataclasses.replace(out, codebook=None),
                                                                    out.audio, real)
    codec.zero_grad()
    CodecObjective(LossConfig(mel=0, quantizer=0, match=1.0), 16000).generator_loss(
        out, out.audio, real, directions=directions())[0].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in codec.encoder.parameters())
    with pytest.raises(ValueError, match="match_directions"):
        LossConfig(match=1.0, match_directions=0)
