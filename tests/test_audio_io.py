"""Audio reading/conversion/writing, streaming blocks, atomic writes and the output-is-input check."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from simvq_audio.audio import (
    AUDIO_EXTENSIONS,
    StreamResampler,
    audio_duration,
    find_audio_files,
    iter_audio_blocks,
    load_audio,
    read_audio_info,
    resample,
    to_model_format,
    write_audio,
)
from simvq_audio.errors import AudioError, SimVQError
from simvq_audio.fileio import atomic_path, atomic_write_bytes, atomic_write_text, check_not_input

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def sine(n: int, rate: int, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    """[C, n] float32 sines, channel c at amplitude 0.5 / (c + 1)."""
    t = np.arange(n) / rate
    return np.stack([0.5 / (c + 1) * np.sin(2 * np.pi * freq * t) for c in range(channels)]).astype(np.float32)


def write_wav(path: Path, samples: np.ndarray, rate: int, subtype: str = "FLOAT") -> Path:
    sf.write(path, samples.T, rate, subtype=subtype)
    return path


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ------------------------------------------------------------------------------------------------------ loading


@pytest.mark.parametrize(
    ("orig", "target", "n"), [(16000, 24000, 16001), (44100, 16000, 44100 * 2 + 3), (22050, 16000, 777)]
)
def test_load_resamples_length_and_rate(tmp_path, orig, target, n):
    path = write_wav(tmp_path / "a.wav", sine(n, orig), orig)
    audio = load_audio(path, sample_rate=target)
    assert audio.sample_rate == target and audio.original_sample_rate == orig
    assert audio.original_n_samples == n and audio.original_channels == 1
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 2
    assert abs(audio.samples.shape[1] - n * target / orig) <= 1
    assert audio.path == path
    # A 440 Hz sine stays a 440 Hz sine of the same amplitude (away from the filter's edges).
    middle = audio.samples[0, target // 20 : -target // 20]
    expected = sine(audio.samples.shape[1], target)[0, target // 20 : -target // 20]
    np.testing.assert_allclose(middle, expected, atol=2e-3)


def test_load_keeps_rate_and_channels_when_asked(tmp_path):
    stereo = sine(1000, 8000, channels=2)
    path = write_wav(tmp_path / "s.wav", stereo, 8000)
    audio = load_audio(path, sample_rate=None, channels=None)
    assert audio.sample_rate == 8000 and audio.samples.shape == (2, 1000)
    np.testing.assert_array_equal(audio.samples, stereo)


def test_downmix_is_channel_mean(tmp_path):
    stereo = sine(1600, 16000, channels=2)
    path = write_wav(tmp_path / "s.flac", stereo, 16000, subtype="PCM_24")
    audio = load_audio(path)
    assert audio.samples.shape == (1, 1600) and audio.original_channels == 2
    np.testing.assert_allclose(audio.samples[0], stereo.mean(axis=0), atol=1e-6)


def test_mono_to_stereo_and_impossible_channel_maps(tmp_path):
    mono = sine(100, 8000)
    up = to_model_format(mono[0], 8000, None, target_channels=2)
    assert up.shape == (2, 100) and np.array_equal(up[0], up[1])
    path = write_wav(tmp_path / "s.wav", sine(100, 8000, channels=2), 8000)
    with pytest.raises(AudioError, match=f"^{path}: cannot convert 2 channels to 3"):
        load_audio(path, channels=3)


def test_to_model_format_scales_integer_pcm():
    pcm = np.array([0, 16384, -32768], dtype=np.int16)
    np.testing.assert_allclose(to_model_format(pcm, 16000, 16000)[0], [0.0, 0.5, -1.0])


def test_resample_any_leading_shape_and_identity():
    x = np.random.default_rng(0).standard_normal((2, 3, 1000)).astype(np.float32)
    y = resample(x, 16000, 24000)
    assert y.shape == (2, 3, 1500) and y.dtype == np.float32
    np.testing.assert_allclose(y[1, 2], resample(x[1, 2], 16000, 24000), atol=1e-6)
    assert resample(x, 16000, 16000) is x
    assert resample(np.zeros((1, 0), np.float32), 16000, 8000).shape == (1, 0)


def test_real_dev_file_loads():
    files = sorted((DATA / "dev").rglob("*.flac")) if (DATA / "dev").is_dir() else []
    if not files:
        pytest.skip("shared/data/dev not present")
    path = files[0]
    info = read_audio_info(path)
    audio = load_audio(path, sample_rate=24000)
    assert info.sample_rate == 16000 and info.channels == 1
    assert audio.original_n_samples == info.frames
    assert audio.samples.shape[0] == 1 and abs(audio.samples.shape[1] - info.frames * 1.5) <= 1
    assert np.isfinite(audio.samples).all() and 0.01 < np.abs(audio.samples).max() <= 1.5
    assert audio_duration(path) == pytest.approx(info.frames / 16000)


def test_load_opens_and_decodes_the_file_once(tmp_path, monkeypatch):
    path = write_wav(tmp_path / "long.flac", sine(8000 * 60, 8000), 8000, subtype="PCM_16")
    opened = []

    class CountingSoundFile(sf.SoundFile):
        def __init__(self, *args, **kwargs):
            opened.append(args[0])
            super().__init__(*args, **kwargs)

    def no_info(*args, **kwargs):
        raise AssertionError("load_audio must not read the header separately")

    monkeypatch.setattr(sf, "SoundFile", CountingSoundFile)
    monkeypatch.setattr(sf, "info", no_info)
    monkeypatch.setattr(sf, "read", no_info)
    audio = load_audio(path, sample_rate=16000)
    assert len(opened) == 1 and audio.samples.shape == (1, 16000 * 60)


# ------------------------------------------------------------------------------------------------------- errors


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(np.random.default_rng(0).bytes(4000))
    zero_bytes = tmp_path / "zero_bytes.wav"
    zero_bytes.write_bytes(b"")
    empty = write_wav(tmp_path / "empty.wav", np.zeros((1, 0), np.float32), 16000, subtype="PCM_16")
    nan = sine(1000, 16000)
    nan[0, 500] = np.nan
    inf = sine(1000, 16000)
    inf[0, 10] = np.inf
    truncated = tmp_path / "truncated.flac"
    write_wav(tmp_path / "full.flac", sine(16000, 16000), 16000, subtype="PCM_16")
    truncated.write_bytes((tmp_path / "full.flac").read_bytes()[:30])
    return {
        "missing": (tmp_path / "missing.wav", "file not found"),
        "directory": (tmp_path, "is a directory"),
        "garbage": (garbage, "cannot read audio"),
        "zero bytes": (zero_bytes, "cannot read audio"),
        "truncated": (truncated, "cannot read audio|no samples"),
        "empty": (empty, "no samples"),
        "nan": (write_wav(tmp_path / "nan.wav", nan, 16000), "NaN or infinite"),
        "inf": (write_wav(tmp_path / "inf.wav", inf, 16000), "NaN or infinite"),
    }


def test_unsupported_format_message_suggests_conversion(tmp_path):
    path = tmp_path / "talk.m4a"
    path.write_bytes(b"\0\0\0\x20ftypM4A " + bytes(200))
    with pytest.raises(AudioError, match=f"^{path}: cannot read audio .*convert others first"):
        load_audio(path)


@pytest.mark.parametrize("case", ["missing", "directory", "garbage", "zero bytes", "truncated", "empty", "nan", "inf"])
def test_bad_input_raises_audio_error_naming_file(tmp_path, case):
    path, pattern = _bad_inputs(tmp_path)[case]
    with pytest.raises(AudioError, match=pattern) as info:
        load_audio(path, sample_rate=24000)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    with pytest.raises(AudioError, match=pattern):
        list(iter_audio_blocks(path, 256))
    if case in ("missing", "directory", "garbage", "zero bytes"):
        with pytest.raises(AudioError, match=pattern):
            read_audio_info(path)


# ----------------------------------------------------------------------------------------------------- streaming


@pytest.mark.parametrize(
    ("n", "block", "overlap"),
    [
        (10000, 1024, 0),
        (10000, 1000, 200),
        (1000, 1000, 200),
        (1200, 1000, 200),
        (2048, 1024, 0),
        (50, 1000, 10),
        (3000, 500, 1200),
    ],
)
def test_iter_audio_blocks_cover_the_file(tmp_path, n, block, overlap):
    stereo = np.random.default_rng(1).uniform(-1, 1, (2, n)).astype(np.float32)
    path = write_wav(tmp_path / "s.wav", stereo, 16000)
    blocks = list(iter_audio_blocks(path, block, overlap, channels=None))
    assert len(blocks) == -(-n // block)  # one block per start i * block inside the file
    for i, b in enumerate(blocks):
        np.testing.assert_array_equal(b, stereo[:, i * block : i * block + block + overlap])
    np.testing.assert_array_equal(np.concatenate([b[:, :block] for b in blocks], axis=1), stereo)
    mono = list(iter_audio_blocks(path, block, overlap))
    np.testing.assert_allclose(mono[0][0], stereo.mean(axis=0)[: block + overlap], atol=1e-7)


def test_stream_resampler_equals_whole_file_resampling(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.uniform(-0.5, 0.5, (2, 22050)).astype(np.float32)
    path = write_wav(tmp_path / "s.wav", x, 22050)
    stream = StreamResampler(22050, 16000, channels=2)
    parts = [stream.process(b) for b in iter_audio_blocks(path, 3001, channels=None)]
    parts.append(stream.process(np.zeros((2, 0), np.float32), last=True))
    np.testing.assert_allclose(np.concatenate(parts, axis=1), resample(x, 22050, 16000), atol=1e-6)
    same = StreamResampler(16000, 16000, channels=1)
    np.testing.assert_array_equal(same.process(x[:1, :10]), x[:1, :10])


# ------------------------------------------------------------------------------------------------------ writing


def _writable(ext: str) -> bool:
    needs = {".mp3": "MP3", ".opus": "OGG", ".ogg": "OGG"}.get(ext)
    return needs is None or needs in sf.available_formats()


@pytest.mark.parametrize("ext", [".wav", ".flac", ".ogg", ".aiff", ".opus", ".mp3"])
def test_write_audio_round_trip(tmp_path, ext):
    if not _writable(ext):
        pytest.skip(f"this libsndfile cannot write {ext}")
    x = sine(8000, 16000, channels=2)
    path = tmp_path / f"out{ext}"
    write_audio(path, x, 16000)
    back = load_audio(path, channels=None)
    assert back.sample_rate == 16000 and back.samples.shape[0] == 2
    assert leftovers(tmp_path) == []
    if ext in (".wav", ".flac", ".aiff"):  # lossless at PCM_16
        assert back.samples.shape == x.shape
        np.testing.assert_allclose(back.samples, x, atol=1 / 32768 + 1e-6)
    info = sf.info(path)
    expected = {".ogg": "VORBIS", ".opus": "OPUS", ".mp3": "MPEG_LAYER_III"}.get(ext, "PCM_16")
    assert info.subtype == expected


def test_write_audio_clips_instead_of_wrapping(tmp_path):
    write_audio(tmp_path / "loud.wav", np.array([1.5, -2.0, 0.25], np.float32), 8000)
    np.testing.assert_allclose(sf.read(tmp_path / "loud.wav")[0], [32767 / 32768, -1.0, 0.25], atol=1e-6)


def test_write_audio_errors_leave_nothing(tmp_path):
    with pytest.raises(AudioError, match="unsupported output extension"):
        write_audio(tmp_path / "x.m4a", sine(100, 8000), 8000)
    with pytest.raises(AudioError, match="NaN"):
        write_audio(tmp_path / "x.wav", np.full(10, np.nan, np.float32), 8000)
    with pytest.raises(AudioError, match="cannot write"):
        write_audio(tmp_path / "x.opus", sine(100, 11025), 11025)  # Opus has no 11.025 kHz mode
    assert list(tmp_path.iterdir()) == []


def test_find_audio_files(tmp_path):
    for rel in ["b/2.FLAC", "a/1.wav", "a/z.mp3", "c.txt", "a/.hidden.wav", ".git/x.wav", "d/e/f.opus"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    (tmp_path / "d" / "e" / "loop").symlink_to(tmp_path / "d", target_is_directory=True)
    found = [p.relative_to(tmp_path).as_posix() for p in find_audio_files(tmp_path)]
    assert found == ["a/1.wav", "a/z.mp3", "b/2.FLAC", "d/e/f.opus"]
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (outside / "o.wav").write_bytes(b"")
    (tmp_path / "linked").symlink_to(outside, target_is_directory=True)
    found = [p.relative_to(tmp_path).as_posix() for p in find_audio_files(tmp_path)]
    assert found == ["a/1.wav", "a/z.mp3", "b/2.FLAC", "d/e/f.opus", "linked/o.wav"]
    assert find_audio_files(tmp_path / "a" / "1.wav") == [tmp_path / "a" / "1.wav"]
    with pytest.raises(AudioError, match="folder not found"):
        find_audio_files(tmp_path / "nope")
    assert ".wav" in AUDIO_EXTENSIONS and ".flac" in AUDIO_EXTENSIONS


def test_documented_formats_are_readable():
    formats = sf.available_formats()
    for name in ("WAV", "FLAC", "OGG", "AIFF"):
        assert name in formats


# -------------------------------------------------------------------------------------------------- atomic writes


def test_atomic_path_success_renames_and_keeps_suffix(tmp_path):
    target = tmp_path / "out.flac"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".out.flac.tmp-") and tmp.suffix == ".flac"
        assert str(os.getpid()) in tmp.name
        sf.write(tmp, np.zeros(100, np.float32), 8000)  # soundfile infers FLAC from the kept suffix
        assert not target.exists()
    assert sf.info(target).format == "FLAC"
    assert leftovers(tmp_path) == []


def test_atomic_path_error_removes_temp_and_keeps_old_file(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"), atomic_path(target) as tmp:
        tmp.write_text("half-writ")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert leftovers(tmp_path) == []


def test_atomic_path_body_that_writes_nothing(tmp_path):
    with pytest.raises(SimVQError, match="nothing was written"), atomic_path(tmp_path / "x.bin"):
        pass
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_helpers_and_bad_destinations(tmp_path):
    atomic_write_bytes(tmp_path / "a.bin", b"\x00\x01")
    atomic_write_text(tmp_path / "b.txt", "héllo\n")
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "b.txt").read_text(encoding="utf-8") == "héllo\n"
    with pytest.raises(SimVQError, match="does not exist"):
        atomic_write_text(tmp_path / "missing" / "c.txt", "x")
    with pytest.raises(SimVQError, match="is a directory"):
        atomic_write_text(tmp_path, "x")
    assert leftovers(tmp_path) == []


def test_check_not_input(tmp_path):
    source = tmp_path / "in.wav"
    source.write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    check_not_input(tmp_path / "out.wav", [source])
    with pytest.raises(SimVQError, match="output path is an input file"):
        check_not_input(tmp_path / "sub" / ".." / "in.wav", [source])
    link = tmp_path / "link.wav"
    os.link(source, link)
    with pytest.raises(SimVQError, match=f"^{link}: output path is an input file"):
        check_not_input(link, [tmp_path / "other.wav", source])
