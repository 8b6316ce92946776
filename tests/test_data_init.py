"""Data-dependent codebook initialisation (moment matching on the first training batch)."""

import torch

from simvq_audio.models import CodecConfig, SimVQCodec
from simvq_audio.modules import SEANetConfig
from simvq_audio.quantization import EMAVectorQuantizer, QuantizerConfig, SimVQ, VectorQuantizer

D, K = 16, 256


def _latents(seed=0):
    g = torch.Generator().manual_seed(seed)
    # Encoder-like: a large shared offset and a small spread, far from the codebook's scale.
    return torch.randn(4, D, 50, generator=g) * 0.02 + torch.randn(1, D, 1, generator=g) * 0.5


def test_without_data_init_a_mismatched_codebook_collapses_and_with_it_codes_spread():
    torch.manual_seed(0)  # W's default init comes from the global generator
    z = _latents()
    for cls in (SimVQ, VectorQuantizer, EMAVectorQuantizer):
        plain = cls(D, K, seed=0).train()
        fitted = cls(D, K, seed=0, data_init=True).train()
        used_plain = plain(z).codes.unique().numel()
        used_fitted = fitted(z).codes.unique().numel()
        assert used_plain <= 8, cls.__name__
        assert used_fitted > K // 4, cls.__name__
        assert bool(fitted.initialized)


def test_simvq_codebook_matches_latent_moments_and_vq_starts_identical():
    z = _latents()
    flat = z.transpose(1, 2).reshape(-1, D)
    s = SimVQ(D, 4096, seed=3, data_init=True).train()
    v = VectorQuantizer(D, 4096, seed=3, data_init=True).train()
    s(z), v(z)
    cb = s.codebook()
    assert torch.allclose(cb.mean(0), flat.mean(0), atol=0.01)
    assert torch.allclose(cb.std(0), flat.std(0), rtol=0.15)
    assert torch.allclose(cb, v.codebook(), atol=1e-5)


def test_data_init_happens_once_not_in_eval_and_survives_state_dict():
    z = _latents()
    q = SimVQ(D, K, data_init=True)
    q.eval()
    q(z)
    assert not bool(q.initialized)  # eval never initialises
    q.train()
    q(z)
    w = q.proj.weight.detach().clone()
    q(_latents(1) * 3)
    assert torch.equal(q.proj.weight, w)  # second batch does not re-initialise
    fresh = SimVQ(D, K, data_init=True)
    fresh.load_state_dict(q.state_dict())
    assert bool(fresh.initialized)
    fresh.train()(_latents(2) * 3)
    assert torch.equal(fresh.proj.weight, w)


def test_codec_config_enables_data_init_and_training_uses_many_codes():
    torch.manual_seed(0)
    cfg = CodecConfig(sample_rate=16000, seanet=SEANetConfig(n_filters=8, ratios=(4, 4), dimension=16, lstm=0),
                      quantizer=QuantizerConfig(codebook_size=64, dim=8))
    assert cfg.quantizer.data_init
    model = SimVQCodec(cfg).train()
    t = torch.linspace(0, 1, 4000)
    wav = (torch.sin(2 * torch.pi * torch.tensor([[110.0], [220.0], [440.0]]) * t) * torch.linspace(0, 1, 4000))
    out = model(wav[:, None, :])
    assert out.codes.unique().numel() >= 16
