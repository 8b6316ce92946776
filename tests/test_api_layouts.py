"""Array layouts in the Python API: soundfile's [N, C] is accepted, a [B, N] batch is never averaged into
one sequence, and every dtype either converts or fails with a clear message."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from simvq_audio.errors import AudioError, TokenFileError
from simvq_audio.inference import Tokenizer
from simvq_audio.models.codec import CodecConfig, SimVQCodec
from simvq_audio.modules.seanet import SEANetConfig
from simvq_audio.quantization.builder import QuantizerConfig


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    torch.manual_seed(0)
    cfg = CodecConfig(sample_rate=16000, seanet=SEANetConfig(n_filters=8, ratios=(4, 4), dimension=16, lstm=0),
                      quantizer=QuantizerConfig(codebook_size=64, dim=8))
    return Tokenizer(SimVQCodec(cfg), device="cpu")


def stereo(n: int = 1600) -> np.ndarray:
    return (np.random.default_rng(0).standard_normal((2, n)) * 0.1).astype(np.float32)  # [C, N]


def test_soundfile_layout_equals_channels_first(tok):
    x = stereo()
    expected = tok.encode(x)
    assert torch.equal(tok.encode(x.T), expected)  # soundfile.read gives [N, C]
    assert torch.equal(tok.encode(torch.from_numpy(x.T.copy())), expected)
    assert torch.equal(tok.encode_batch([x.T, x]).unpad()[0], expected)


@pytest.mark.parametrize("shape", [(4, 1600), (1600, 6), (2, 1, 1600)])
def test_batch_like_or_many_channel_arrays_are_refused(tok, shape):
    x = np.zeros(shape, np.float32)
    with pytest.raises(AudioError, match=r"pass a batch as a list") as info:
        tok.encode(x)
    assert str(info.value).startswith("audio: ") and "\n" not in str(info.value)


def test_a_list_is_the_way_to_batch(tok):
    batch = np.random.default_rng(1).standard_normal((4, 1600)).astype(np.float32) * 0.1
    codes = tok.encode_batch(list(batch)).unpad()
    assert len(codes) == 4 and all(torch.equal(c, tok.encode(b)) for c, b in zip(codes, batch, strict=True))


@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.int16, np.int32])
def test_dtypes_are_converted(tok, dtype):
    x = stereo()[0]
    if np.issubdtype(dtype, np.integer):
        pcm = (x * 32767).astype(dtype) if dtype == np.int16 else (x * 2**31).astype(dtype)
        codes = tok.encode(pcm)
        assert codes.shape == (1, 100) and torch.equal(codes, tok.encode(torch.from_numpy(pcm)))
    else:
        assert torch.equal(tok.encode(x.astype(dtype)), tok.encode(torch.from_numpy(x.astype(dtype))))


def test_batched_codes_give_a_hint(tok):
    with pytest.raises(TokenFileError, match="pass a batch as a list"):
        tok.decode(torch.zeros(4, 1, 10, dtype=torch.long))
