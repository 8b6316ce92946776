"""Hostile token files: every header field that sizes an allocation or an output is bounded and checked
before any work; each failure is one line naming the file."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from simvq_audio.cli import main
from simvq_audio.errors import AudioError, TokenFileError
from simvq_audio.inference import Tokenizer
from simvq_audio.inference.file_decoding import MAX_DECODE_BLOCK_VALUES
from simvq_audio.models.codec import CodecConfig, SimVQCodec
from simvq_audio.modules.seanet import SEANetConfig
from simvq_audio.quantization.builder import QuantizerConfig
from simvq_audio.tokens import read_header, read_tokens
from simvq_audio.tokens.format import MAX_HEADER_BYTES, TokenFile, TokenHeader, encode_header


@pytest.fixture(scope="module")
def model() -> SimVQCodec:
    torch.manual_seed(0)
    cfg = CodecConfig(sample_rate=16000, seanet=SEANetConfig(n_filters=8, ratios=(4, 4), dimension=16, lstm=0),
                      quantizer=QuantizerConfig(codebook_size=64, dim=8))
    return SimVQCodec(cfg).eval()


def header_dict(n_frames: int = 50, **overrides) -> dict:
    fields = dict(model_id="m", model_name="tiny", sample_rate=16000, frame_rate=1000.0, hop_length=16,
                  codebook_size=64, n_codebooks=1, n_frames=n_frames, n_samples=n_frames * 16,
                  original_sample_rate=16000, original_n_samples=n_frames * 16, channels=1, original_channels=1,
                  dtype="uint16", layout="n_codebooks,n_frames", source="a.wav")
    fields.update(overrides)
    return fields


def raw_file(path: Path, header: dict | bytes, n_frames: int = 50) -> Path:
    """A token file whose header is written as given, with no checks, and a valid payload."""
    body = header if isinstance(header, bytes) else json.dumps(header).encode()
    payload = np.zeros(n_frames, "<u2").tobytes()
    path.write_bytes(struct.pack("<4sHI", b"SVQT", 1, len(body)) + body + payload)
    return path


def scaled_rate(factor: int) -> dict:
    return header_dict(original_sample_rate=16000 * factor, original_n_samples=50 * 16 * factor)


HOSTILE = {
    "1000 channels": (header_dict(original_channels=1000), "original_channels must be <= 256"),
    "30000 channels": (header_dict(original_channels=30000), "original_channels must be <= 256"),
    "30000x rate": (scaled_rate(30000), "original_sample_rate must be <= 768,000"),
    "rate x channels": (dict(scaled_rate(48), original_channels=8), "original_channels * original_sample_rate"),
    "model rate": (header_dict(sample_rate=10**9), "sample_rate must be <= 768,000"),
    "codebooks": (header_dict(n_codebooks=5000), "n_codebooks must be <= 1,024"),
    "hop": (header_dict(hop_length=2**40), "hop_length must be <= 1,048,576"),
    "5000 digits": (json.dumps(header_dict()).replace('"n_frames": 50', '"n_frames": ' + "9" * 5000).encode(),
                    "integer with 5,000 digits"),
    "nested": (b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
    "long source": (header_dict(source="x" * 100_000), "source must be at most 4,096 characters"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_header_is_one_line_naming_the_file(tmp_path, case):
    header, needle = HOSTILE[case]
    path = raw_file(tmp_path / "t.svqt", header)
    for read in (read_header, read_tokens):
        with pytest.raises(TokenFileError) as info:
            read(path)
        message = str(info.value)
        assert message.startswith(f"{path}: ") and needle in message and "\n" not in message
        assert len(message) < 400, message


def test_huge_header_length_is_refused_before_reading_it(tmp_path):
    path = tmp_path / "t.svqt"
    path.write_bytes(struct.pack("<4sHI", b"SVQT", 1, MAX_HEADER_BYTES + 1) + b" " * (MAX_HEADER_BYTES + 1))
    with pytest.raises(TokenFileError, match="corrupt header length 1,048,577 bytes"):
        read_header(path)


def test_cli_decode_of_hostile_header_is_one_line(tmp_path, model, capsys):
    model.save_pretrained(tmp_path / "m")
    path = raw_file(tmp_path / "t.svqt", header_dict(original_channels=30000))
    code = main(["decode", str(path), "-o", str(tmp_path / "out.wav"), "--model", str(tmp_path / "m"),
                 "--device", "cpu", "--force"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 1 and len(err) == 1 and str(path) in err[0] and "original_channels" in err[0]
    assert not (tmp_path / "out.wav").exists()


def test_streamed_decode_blocks_are_bounded_whatever_the_output_format(model):
    tok = Tokenizer(model, chunk_seconds=60.0)  # one window: before, one block of the whole output
    n_frames = 2000  # 2 s at 16 kHz -> 64 channels at 48 kHz: 6.1 M values
    header = TokenHeader(**header_dict(n_frames, model_id=tok.model_id, original_sample_rate=48000,
                                       original_n_samples=n_frames * 48, original_channels=64))
    codes = np.random.default_rng(0).integers(0, 64, (1, n_frames)).astype(np.uint16)
    tf = TokenFile(header, codes)
    blocks = list(tok.iter_decode_tokens(tf))
    assert max(b.size for b in blocks) <= MAX_DECODE_BLOCK_VALUES
    assert sum(b.shape[-1] for b in blocks) == n_frames * 48 and {b.shape[0] for b in blocks} == {64}
    whole, _ = tok.decode_tokens(tf)
    np.testing.assert_allclose(np.concatenate(blocks, axis=1), whole, atol=1e-5)
    assert tok.should_stream(header) and not tok.should_stream(TokenHeader(**header_dict(n_frames)))


def test_audio_a_header_cannot_describe_is_refused_before_encoding(tmp_path, model):
    path = tmp_path / "wide.wav"
    sf.write(path, np.zeros((200, 20), np.float32), 192000, subtype="FLOAT")  # 20 x 192 kHz > 3,072,000 /s
    calls = []
    tok = Tokenizer(model)
    tok._encode_windows = lambda windows: calls.append(windows)  # no compute may be spent on it
    (_, result), = tok.encode_files([path])
    assert isinstance(result, AudioError) and str(result).startswith(f"{path}: ")
    assert "cannot be stored in a token file" in str(result) and calls == []


def test_encode_header_of_hostile_header_is_refused():
    with pytest.raises(ValueError, match="original_channels must be <= 256"):
        encode_header(TokenHeader(**header_dict(original_channels=300)))
