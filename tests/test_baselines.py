"""Real-codec baselines: spec parsing, tools, delay estimation, bit counts on real speech."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from simvq_audio.errors import SimVQError
from simvq_audio.evaluation import baselines as bl
from simvq_audio.evaluation.baselines import (
    BaselineError,
    BaselineUnavailable,
    Codec2Baseline,
    DelayEstimator,
    EncodecBaseline,
    OpusBaseline,
    parse_baseline,
    run_baseline,
    shift,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RATE = 16000


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """Two seconds of real speech at 16 kHz (from the first dev file)."""
    from simvq_audio.audio.io import find_audio_files, load_audio

    if not (DATA / "dev").is_dir():
        pytest.skip(f"real speech not found at {DATA}")
    if not shutil.which("c2enc") or not (shutil.which("ffmpeg") or shutil.which("opusenc")):
        pytest.skip("codec tools not installed (Debian packages codec2 and ffmpeg or opus-tools)")
    x = load_audio(find_audio_files(DATA / "dev")[0], sample_rate=RATE).samples[0]
    return x[RATE: 3 * RATE]


@pytest.mark.parametrize(("spec", "kind", "bitrate"), [
    ("opus:6k", OpusBaseline, 6000.0), ("opus:12", OpusBaseline, 12000.0), ("codec2:1200", Codec2Baseline, 1200.0),
    ("codec2:3200", Codec2Baseline, 3200.0), ("codec2:700c", Codec2Baseline, 700.0),
    ("encodec:1.5", EncodecBaseline, 1500.0), ("encodec:6k", EncodecBaseline, 6000.0),
])
def test_parse_known_specs(spec, kind, bitrate):
    b = parse_baseline(spec)
    assert isinstance(b, kind)
    assert b.nominal_bitrate == bitrate
    assert b.spec == spec


@pytest.mark.parametrize("spec", ["mp3:128", "opus", "opus:3k", "opus:fast", "codec2:1000", "encodec:2", ""])
def test_unknown_spec_is_one_line_error(spec):
    with pytest.raises(BaselineError) as info:
        parse_baseline(spec)
    message = str(info.value)
    assert "\n" not in message and "unknown baseline" in message and "codec2:<mode>" in message
    assert isinstance(info.value, SimVQError)


def test_missing_tools_name_the_debian_package(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(BaselineError, match=r"c2enc.*Debian package codec2"):
        parse_baseline("codec2:1200").check()
    with pytest.raises(BaselineError, match=r"ffmpeg.*Debian package ffmpeg.*opus-tools"):
        parse_baseline("opus:6k").check()


def test_encodec_without_package_or_weights_is_unavailable(monkeypatch, tmp_path):
    import importlib.util

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty cache: weights never there
    with pytest.raises(BaselineUnavailable, match="encodec:1.5: ") as info:
        parse_baseline("encodec:1.5").check()
    assert "\n" not in str(info.value)
    if importlib.util.find_spec("encodec") is None:
        assert "not installed" in str(info.value)
    else:
        assert "not cached" in str(info.value)


@pytest.mark.parametrize("lag", [0, 37, -12, 400])
def test_delay_estimator_finds_a_known_shift(lag):
    rng = np.random.default_rng(0)
    est = DelayEstimator(RATE)
    for _ in range(3):
        x = rng.standard_normal(RATE).astype(np.float32)
        late = np.concatenate([np.zeros(max(lag, 0)), x[max(-lag, 0):]]).astype(np.float32)  # late[n + lag] = x[n]
        est.add(x, late)
    assert est.delay() == lag
    assert np.allclose(shift(late, lag, RATE)[500: RATE - 500], x[500: RATE - 500])


def test_shift_pads_with_zeros():
    x = np.arange(1, 6, dtype=np.float32)
    assert shift(x, 2, 5).tolist() == [3, 4, 5, 0, 0]
    assert shift(x, -2, 6).tolist() == [0, 0, 1, 2, 3, 4]


@pytest.mark.parametrize("spec", ["codec2:1200", "codec2:3200"])
def test_codec2_round_trip(speech, spec, tmp_path):
    b = parse_baseline(spec)
    b.check()
    run = run_baseline(b, speech, RATE, tmp_path)
    assert run.audio.dtype == np.float32 and np.all(np.isfinite(run.audio))
    assert abs(len(run.audio) - len(speech)) <= 2  # resampled 16k -> 8k -> 16k, trimmed to the input
    # 2 s is 50 frames of 40 ms: headerless payload of exactly the nominal rate
    assert run.bits == round(b.nominal_bitrate * len(speech) / RATE)
    assert np.std(run.audio) > 0.1 * np.std(speech)
    assert list(tmp_path.iterdir()) == []  # scratch files removed


def test_opus_round_trip(speech, tmp_path):
    b = parse_baseline("opus:6k")
    b.check()
    run = run_baseline(b, speech, RATE, tmp_path)
    assert len(run.audio) == len(speech) and np.all(np.isfinite(run.audio))
    seconds = len(speech) / RATE
    assert 6000 <= run.bits / seconds < 9000  # 6 kbit/s plus Ogg pages and headers
    est = DelayEstimator(RATE)
    est.add(speech, run.audio)
    assert abs(est.delay()) <= 4  # ffmpeg removes Opus pre-skip; resamplers are near zero-phase


def test_opus_tools_fallback(speech, tmp_path, monkeypatch):
    if not bl._which("opusenc", "opusdec"):
        pytest.skip("opus-tools not installed")
    monkeypatch.setattr(bl, "_ffmpeg_has_encoder", lambda name: False)
    b = parse_baseline("opus:6k")
    b.check()
    assert b._tool == "opus-tools"
    run = run_baseline(b, speech, RATE, tmp_path)
    assert abs(len(run.audio) - len(speech)) <= 2 * RATE // 100 and np.all(np.isfinite(run.audio))
    assert 5000 <= run.bits / (len(speech) / RATE) < 10000
