"""Metrics on real speech: identity scores, known-SNR noise, degradations, NaN for silence."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch

from simvq_audio.losses import MultiScaleMelLoss
from simvq_audio.metrics import METRIC_NAMES, compute_metrics, mel_distance, pesq_wb, si_sdr, stoi

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="module")
def speech() -> tuple[np.ndarray, int]:
    """The shortest dev utterance (about 3 s, 16 kHz), cropped to at most 3 s."""
    manifest = DATA / "dev.jsonl"
    if not manifest.exists():
        pytest.skip(f"real speech not found at {DATA}")
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    row = min(rows, key=lambda r: r["duration"])
    wav, sr = sf.read(DATA / row["path"], dtype="float32", always_2d=True)
    return wav.mean(axis=1)[: 3 * sr], sr


def _with_noise(x: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(len(x))
    noise *= np.sqrt(np.sum(x.astype(np.float64) ** 2) / np.sum(noise**2) / 10 ** (snr_db / 10))
    return (x + noise).astype(np.float32)


def test_identity_scores(speech) -> None:
    x, sr = speech
    scores = compute_metrics(x, x, sr)
    assert set(scores) == set(METRIC_NAMES)
    assert all(isinstance(v, float) for v in scores.values())
    assert scores["si_sdr"] > 100
    assert scores["pesq_wb"] > 4.4
    assert scores["stoi"] > 0.99
    assert scores["mel_distance"] == 0.0


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 20.0])
def test_si_sdr_matches_known_snr(speech, snr_db: float) -> None:
    x, _ = speech
    y = _with_noise(x, snr_db)
    assert si_sdr(x, y) == pytest.approx(snr_db, abs=0.3)
    assert si_sdr(x, 0.25 * y) == pytest.approx(si_sdr(x, y), abs=1e-6)  # scale invariant


def test_degraded_signals_score_lower(speech) -> None:
    x, sr = speech
    clean = compute_metrics(x, x, sr)
    mild = compute_metrics(x, _with_noise(x, 20.0), sr)
    harsh = compute_metrics(x, _with_noise(x, 0.0), sr)
    for key in ("pesq_wb", "stoi", "si_sdr"):
        assert clean[key] > mild[key] > harsh[key], key
    assert clean["mel_distance"] < mild["mel_distance"] < harsh["mel_distance"]
    # Band-limiting to 4 kHz (narrow-band telephone) costs wide-band PESQ and mel distance.
    narrow = soxr.resample(soxr.resample(x, sr, 8000), 8000, sr)
    assert pesq_wb(x, narrow, sr) < 4.0
    assert mel_distance(x, narrow, sr) > 0.05


def test_other_sample_rate(speech) -> None:
    x, sr = speech
    x24 = soxr.resample(x, sr, 24000)
    assert pesq_wb(x24, x24, 24000) > 4.4
    assert stoi(x24, x24, 24000) > 0.99
    assert pesq_wb(x24, _with_noise(x24, 10.0), 24000) < 3.0


def test_lengths_truncated_to_shorter(speech) -> None:
    x, sr = speech
    y = _with_noise(x, 10.0)
    longer = np.concatenate([y, np.ones(800, dtype=np.float32)])
    assert compute_metrics(x, longer, sr) == compute_metrics(x, y, sr)
    assert si_sdr(x[:-500], y) == si_sdr(x[:-500], y[:-500])


def test_mel_distance_is_the_default_mel_loss(speech) -> None:
    x, sr = speech
    y = _with_noise(x, 10.0)
    expected = MultiScaleMelLoss(sr)(torch.from_numpy(y)[None, None], torch.from_numpy(x)[None, None])
    assert mel_distance(x, y, sr) == pytest.approx(float(expected), rel=1e-6)


def test_nan_when_undefined(speech) -> None:
    x, sr = speech
    silence = np.zeros_like(x)
    for ref, est in ((silence, silence), (silence, x), (x, silence)):
        scores = compute_metrics(ref, est, sr)  # never raises
        assert math.isnan(scores["pesq_wb"]) and math.isnan(scores["si_sdr"])
        assert math.isfinite(scores["mel_distance"])
    assert math.isnan(stoi(silence, x, sr))
    short = x[: sr // 10]  # 0.1 s: too short for PESQ and STOI
    assert math.isnan(pesq_wb(short, short, sr))
    assert math.isnan(stoi(short, short, sr))


def test_bad_input_raises() -> None:
    with pytest.raises(ValueError, match="1-D"):
        si_sdr(np.zeros((2, 100)), np.zeros(100))
    with pytest.raises(ValueError, match="NaN"):
        mel_distance(np.full(100, np.nan), np.zeros(100), 16000)
    with pytest.raises(ValueError, match="at least one sample"):
        si_sdr(np.zeros(0), np.zeros(10))
    # [1, N] and tensors are accepted.
    wav = torch.randn(1, 4000)
    assert si_sdr(wav, wav.numpy()) > 100
