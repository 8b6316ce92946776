"""Pitch tracks (pYIN) and the evaluation's pitch metrics on synthetic harmonic tones."""

from __future__ import annotations

import math

import numpy as np
import pytest

from simvq_audio.pitch import (
    PITCH_METRIC_NAMES,
    frame_length_for,
    gross_pitch_error,
    pitch_error_cents,
    pitch_metrics,
    pitch_rmse_cents,
    track_pitch,
    voicing_f1,
)

RATE = 16000
F0 = 150.0
SEMITONE = 2 ** (1 / 12)


def _tone(f0: float, seconds: float = 0.6, rate: int = RATE) -> np.ndarray:
    """A harmonic tone: 10 harmonics at ``1/k`` amplitude, peak about 0.5."""
    t = np.arange(round(seconds * rate)) / rate
    x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 11) if k * f0 < rate / 2)
    return (0.5 * x / np.max(np.abs(x))).astype(np.float32)


@pytest.fixture(scope="module")
def tracks() -> dict[str, np.ndarray]:
    noise = np.random.default_rng(0).normal(0, 0.1, round(0.6 * RATE)).astype(np.float32)
    return {"tone": track_pitch(_tone(F0), RATE), "semitone": track_pitch(_tone(F0 * SEMITONE), RATE),
            "octave": track_pitch(_tone(2 * F0), RATE), "noise": track_pitch(noise, RATE)}


def test_track_has_one_frame_per_10_ms_and_finds_f0(tracks):
    tone = tracks["tone"]
    assert tone.shape == (1 + round(0.6 * RATE) // 160,)
    voiced = tone[np.isfinite(tone)]
    assert len(voiced) >= 0.8 * len(tone)
    assert np.median(voiced) == pytest.approx(F0, rel=0.01)
    assert track_pitch(_tone(F0)[:1000], RATE, hop_length=200).shape == (1 + 1000 // 200,)


def test_tone_against_itself_is_perfect(tracks):
    scores = pitch_metrics(tracks["tone"], tracks["tone"])
    assert list(scores) == list(PITCH_METRIC_NAMES)
    assert scores == {"voicing_f1": 1.0, "pitch_rmse_cents": 0.0, "gross_pitch_error": 0.0}


def test_semitone_shift_is_about_100_cents(tracks):
    assert pitch_rmse_cents(tracks["tone"], tracks["semitone"]) == pytest.approx(100.0, abs=10.0)
    assert np.median(pitch_error_cents(tracks["tone"], tracks["semitone"])) == pytest.approx(100.0, abs=10.0)
    assert voicing_f1(tracks["tone"], tracks["semitone"]) > 0.9


def test_octave_error_is_gross(tracks):
    assert gross_pitch_error(tracks["tone"], tracks["octave"]) > 0.9
    assert pitch_rmse_cents(tracks["tone"], tracks["octave"]) == pytest.approx(1200.0, abs=50.0)
    assert gross_pitch_error(tracks["tone"], tracks["semitone"], threshold_cents=300.0) == 0.0


def test_noise_against_tone_has_low_voicing_f1(tracks):
    # pYIN calls a few noise frames voiced near fmin (about 1 in 5 here), against a fully voiced tone
    assert voicing_f1(tracks["tone"], tracks["noise"]) < 0.5


def test_nothing_voiced_in_both_gives_nan(tracks):
    silent = track_pitch(np.zeros(RATE // 2, dtype=np.float32), RATE)
    assert np.isnan(silent).all()
    for ref, est in ((tracks["tone"], silent), (silent, tracks["tone"]), (silent, silent)):
        assert math.isnan(pitch_rmse_cents(ref, est)) and math.isnan(gross_pitch_error(ref, est))
    assert math.isnan(voicing_f1(silent, silent))  # 0 / 0: nothing to detect and nothing detected
    assert voicing_f1(tracks["tone"], silent) == 0.0 and voicing_f1(silent, tracks["tone"]) == 0.0


def test_metrics_on_known_arrays():
    nan = np.nan
    ref = np.array([100.0, 100.0, 200.0, nan, nan, 100.0])
    est = np.array([100.0 * SEMITONE**0.5, 400.0, nan, 50.0, nan, 100.0, 100.0])  # one frame longer: truncated
    # voiced in both: frames 0, 1, 5 with errors 50, 2400, 0 cents; TP 3, FN 1 (frame 2), FP 1 (frame 3)
    np.testing.assert_allclose(pitch_error_cents(ref, est), [50.0, 2400.0, 0.0], atol=1e-9)
    assert voicing_f1(ref, est) == pytest.approx(6 / 8)
    assert pitch_rmse_cents(ref, est) == pytest.approx(math.sqrt((50**2 + 2400**2) / 3))
    assert gross_pitch_error(ref, est) == pytest.approx(1 / 3)


def test_frame_length_and_errors():
    assert frame_length_for(16000) == 1024 and frame_length_for(24000) == 2048 and frame_length_for(8000) == 512
    with pytest.raises(ValueError, match="1-D"):
        track_pitch(np.zeros((2, 100)), RATE)
    with pytest.raises(ValueError, match="fmax"):
        track_pitch(np.ones(100), 1000)
    with pytest.raises(ValueError, match="NaN"):
        track_pitch(np.full(100, np.nan), RATE)


def test_compute_metrics_with_pitch_uses_given_reference_track(tracks):
    from simvq_audio.metrics import compute_metrics

    x = _tone(F0)
    scores = compute_metrics(x, x, RATE, pitch=True, ref_f0=tracks["octave"])
    assert set(PITCH_METRIC_NAMES) <= set(scores) and scores["gross_pitch_error"] > 0.9
    assert not set(PITCH_METRIC_NAMES) & set(compute_metrics(x, x, RATE))  # off by default
