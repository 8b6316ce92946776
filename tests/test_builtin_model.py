"""The shipped default model: what it promises, and that its tokens decode to the speech they came from."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from simvq_audio import Tokenizer
from simvq_audio.metrics import stoi
from simvq_audio.models import SimVQCodec
from simvq_audio.models.pretrained import WEIGHTS_NAME, builtin_model_dir

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "audio" / "example.flac"


@pytest.fixture(scope="module")
def tok():
    return Tokenizer.from_pretrained("default", device="cpu")


def test_ships_inside_the_package_within_budget():
    folder = builtin_model_dir("default")
    assert (folder / "config.json").is_file()
    assert (folder / WEIGHTS_NAME).stat().st_size <= 20 * 1024 * 1024


def test_promised_format(tok):
    assert tok.sample_rate == 16000
    assert 50 <= tok.frame_rate <= 80
    assert tok.n_codebooks == 1 and 8192 <= tok.codebook_size <= 65536
    assert tok.bitrate <= 1300
    assert tok.model_id == SimVQCodec.from_pretrained("default").model_id


def test_example_round_trip_is_intelligible(tok):
    wav, rate = sf.read(EXAMPLE, dtype="float32")
    codes = tok.encode(wav, rate)
    assert codes.shape == (1, -(-len(wav) // tok.hop_length))
    assert int(codes.min()) >= 0 and int(codes.max()) < tok.codebook_size
    assert torch.equal(codes, tok.encode(wav, rate))  # deterministic
    audio = tok.decode(codes, length=len(wav))
    assert audio.shape == (1, len(wav))
    out = audio[0].numpy()
    assert np.isfinite(out).all()
    # Tokens carry the speech: far closer to the input than the same output half a second off.
    # The floor is the shipped model's level (STOI 0.74 on this clip), not the quality target.
    score = stoi(wav, out, rate)
    assert score > 0.68
    assert score > stoi(wav, np.roll(out, rate // 2), rate) + 0.2
    assert len(np.unique(codes.numpy())) > 100  # many codes in use, not a collapsed codebook
