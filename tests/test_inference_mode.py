"""A model built or loaded inside ``torch.inference_mode()`` works in every grad mode (servers load that way)."""

from __future__ import annotations

import contextlib

import pytest
import torch

from simvq_audio.inference import Tokenizer
from simvq_audio.models.codec import CodecConfig, SimVQCodec
from simvq_audio.modules.seanet import SEANetConfig
from simvq_audio.quantization.builder import QuantizerConfig
from simvq_audio.quantization.simvq import SimVQ

MODES = {
    "inference_mode": torch.inference_mode,
    "no_grad": torch.no_grad,
    "neither": contextlib.nullcontext,
}


def tiny_codec() -> SimVQCodec:
    torch.manual_seed(0)
    cfg = CodecConfig(sample_rate=16000, seanet=SEANetConfig(n_filters=8, ratios=(4, 4), dimension=16, lstm=0),
                      quantizer=QuantizerConfig(codebook_size=64, dim=8))
    return SimVQCodec(cfg).eval()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("model")
    tiny_codec().save_pretrained(directory)
    return directory


@pytest.mark.parametrize("mode", sorted(MODES))
def test_simvq_built_in_inference_mode_encodes_in_any_mode(mode):
    z = torch.randn(2, 8, 5, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    expected = SimVQ(8, 64, seed=0).eval().encode(z)
    with torch.inference_mode():
        torch.manual_seed(0)  # the same W
        q = SimVQ(8, 64, seed=0).eval()
    with MODES[mode]():
        assert torch.equal(q.encode(z), expected)
        assert torch.equal(q.encode(z), expected)  # a second call too (the cache)
        assert q.decode(expected).shape == (2, 8, 5)


@pytest.mark.parametrize("mode", sorted(MODES))
def test_codec_loaded_in_inference_mode_runs_in_any_mode(model_dir, mode):
    wav = torch.randn(1, 1, 800, generator=torch.Generator().manual_seed(2)) * 0.1
    reference = SimVQCodec.from_pretrained(model_dir)
    expected = reference.encode(wav)
    with torch.inference_mode():
        model = SimVQCodec.from_pretrained(model_dir)
    assert not any(p.is_inference() for p in model.parameters())
    with MODES[mode]():
        codes = model.encode(wav)
        assert torch.equal(codes, expected)
        assert model.decode(codes).shape == (1, 1, 800)
    model.train()
    model(wav).audio.pow(2).mean().backward()  # and it can still be fine-tuned
    assert any(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("mode", sorted(MODES))
def test_tokenizer_loaded_in_inference_mode(model_dir, mode):
    wav = torch.randn(1600, generator=torch.Generator().manual_seed(3)) * 0.1
    with torch.inference_mode():
        tok = Tokenizer.from_pretrained(model_dir, device="cpu")
        inside = tok.encode(wav)
    with MODES[mode]():
        codes = tok.encode(wav)
        audio = tok.decode(codes)
    assert torch.equal(codes, inside) and audio.shape == (1, 1600)
