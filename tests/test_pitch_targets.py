"""loss.pitch_targets=pyin: pYIN's tracks cut to training crops (alignment, interpolation, resampled files),
carried through the loader, used by the pitch loss instead of YIN's, and prepared once by the trainer."""

import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch

from simvq_audio.data.dataset import AudioDataset, collate_audio
from simvq_audio.data.manifest import read_manifest
from simvq_audio.data.pitch_targets import PitchTargets, crop_track, default_cache_dir
from simvq_audio.losses.pitch import PitchLoss
from simvq_audio.training.config import ConfigError, load_config

SR, HOP = 16000, 200


def glide(sample_rate: int, seconds: float, f_start: float = 120.0, f_end: float = 240.0) -> np.ndarray:
    """A harmonic tone whose F0 rises exponentially: F0(t) = f_start * (f_end / f_start) ** (t / seconds)."""
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    rate = math.log(f_end / f_start) / seconds
    phase = 2 * math.pi * f_start * (np.exp(rate * t) - 1) / rate
    return (0.2 * sum(np.sin(k * phase) / k for k in range(1, 6))).astype(np.float32)


def f0_at(seconds: np.ndarray, total: float, f_start: float = 120.0, f_end: float = 240.0) -> np.ndarray:
    return f_start * (f_end / f_start) ** (seconds / total)


def test_crop_track_aligns_interpolates_and_pads():
    f0 = np.array([100.0, 200.0, 0.0, 300.0, 300.0], np.float32)
    voiced = f0 > 0
    # Hop-aligned: the file's own frames, then unvoiced past its end.
    out, v = crop_track(f0, voiced, start=2 * HOP, frames=5, hop_length=HOP)
    assert v.tolist() == [False, True, True, False, False] and out.tolist() == [0.0, 300.0, 300.0, 0.0, 0.0]
    # Half a hop in: between two voiced frames the F0 is the geometric mean (log-frequency interpolation);
    # next to an unvoiced frame the nearer frame decides.
    out, v = crop_track(f0, voiced, start=0.5 * HOP, frames=2, hop_length=HOP)
    assert out[0] == pytest.approx(math.sqrt(100.0 * 200.0), rel=1e-5)
    assert v.tolist() == [True, False] and out[1] == 0.0  # frame 1.5, between 200 Hz and unvoiced: a tie goes later
    out, v = crop_track(f0, voiced, start=0.25 * HOP, frames=1, hop_length=HOP)
    assert out[0] == pytest.approx(100.0 * 2 ** 0.25, rel=1e-5)
    out, v = crop_track(f0, voiced, start=1.75 * HOP, frames=1, hop_length=HOP)  # nearer frame 2: unvoiced
    assert not v[0] and out[0] == 0.0
    out, v = crop_track(f0, voiced, start=1.25 * HOP, frames=1, hop_length=HOP)  # nearer frame 1: voiced
    assert v[0] and out[0] == pytest.approx(200.0)


@pytest.mark.parametrize("file_rate", [16000, 22050])
def test_dataset_crops_carry_the_pitch_at_their_own_frames(tmp_path, file_rate):
    """Random crops of a pitch glide (also a 22.05 kHz file read at 16 kHz) get the glide's F0 at the
    crop's own frame centres: the glide rises 20 cents a hop, and the crops' targets are off by under 5."""
    seconds = 1.5
    path = tmp_path / "glide.wav"
    sf.write(path, glide(file_rate, seconds, 100.0, 400.0), file_rate)
    targets = PitchTargets(tmp_path / "cache", SR, HOP)
    targets.prepare([path])
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    (tmp_path / "m.jsonl").write_text(json.dumps({"path": str(path), "duration": seconds}) + "\n")
    dataset = AudioDataset(read_manifest(tmp_path / "m.jsonl"), SR, 0.5, seed=3, pitch_targets=targets)
    checked = 0
    from simvq_audio.audio.io import load_audio

    whole = load_audio(path, SR).samples[0]
    for epoch in range(4):
        dataset.set_epoch(epoch)
        item = dataset[0]
        f0, voiced = item["pitch_f0"].numpy(), item["pitch_voiced"].numpy()
        assert f0.shape == voiced.shape == (math.ceil(0.5 * SR / HOP),)
        # Where is this crop? Its start, found by matching its audio against the whole file at 16 kHz.
        crop = item["audio"][0].numpy()
        start = int(np.argmax(np.correlate(whole, crop[:800], mode="valid")))
        centres = (start + np.arange(len(f0)) * HOP + HOP / 2) / SR
        inner = voiced[2:-2]
        assert inner.mean() > 0.9
        cents = 1200 * np.abs(np.log2(f0[2:-2][inner] / f0_at(centres[2:-2][inner], seconds, 100.0, 400.0)))
        assert np.median(cents) < 5 and np.percentile(cents, 90) < 10, (start, np.median(cents))
        checked += 1
    assert checked == 4
    batch = collate_audio([dataset[0], {**dataset[0], "pitch_f0": torch.ones(10), "pitch_voiced": torch.ones(10, dtype=bool)}])
    assert batch["pitch_f0"].shape == (2, 40) and not batch["pitch_voiced"][1, 10:].any()


def test_the_pitch_loss_takes_the_given_targets_instead_of_yin():
    wav = torch.from_numpy(glide(SR, 1.0))[None, None]
    frames = SR // HOP
    pred = torch.zeros(1, 2, frames)
    loss = PitchLoss(SR, HOP)
    _, yin_logs = loss(pred, wav)
    assert yin_logs["pitch/voiced_share"] > 0.8  # YIN hears the tone
    silent = (torch.zeros(1, frames), torch.zeros(1, frames, dtype=torch.bool))
    _, logs = loss(pred, wav, targets=silent)
    assert float(logs["pitch/voiced_share"]) == 0.0


def test_config_checks(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("data:\n  train_manifest: x.jsonl\nmodel:\n  pitch_head: true\n")
    cfg = load_config(config, ["loss.pitch=1", "loss.pitch_targets=pyin", "data.pitch_cache=cache"])
    assert cfg.data.pitch_cache == str(tmp_path / "cache") or cfg.data.pitch_cache.endswith("/cache")
    with pytest.raises(ConfigError, match="pitch_targets=pyin needs loss.pitch > 0"):
        load_config(config, ["loss.pitch_targets=pyin"])
    with pytest.raises(ConfigError, match="pitch_targets must be one of"):
        load_config(config, ["loss.pitch=1", "loss.pitch_targets=crepe"])


def test_default_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SIMVQ_AUDIO_CACHE", str(tmp_path / "a"))
    assert default_cache_dir() == tmp_path / "a" / "pitch"
    monkeypatch.delenv("SIMVQ_AUDIO_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert default_cache_dir() == tmp_path / "x" / "simvq-audio" / "pitch"


def test_trainer_prepares_the_targets_and_the_loss_uses_them(tmp_path):
    """The trainer tracks every training file once into data.pitch_cache, and the pitch loss reads the
    batch's targets from there: cache entries planted as all-unvoiced make the voiced share 0, where
    YIN (the default) hears the tones."""
    from test_training import metrics, run

    from simvq_audio.training.pitch_fit import TargetCache, pyin_targets

    lines = []
    for i, (lo, hi) in enumerate([(110, 220), (150, 300), (200, 260), (90, 180)]):
        path = tmp_path / f"g{i}.wav"
        sf.write(path, glide(SR, 1.0, lo, hi), SR)
        lines.append(json.dumps({"path": str(path), "duration": 1.0}))
    (tmp_path / "train.jsonl").write_text("\n".join(lines) + "\n")
    common = [f"data.train_manifest={tmp_path / 'train.jsonl'}", "data.valid_manifest=null", "model.pitch_head=true",
              "loss.pitch=1.0", "training.max_steps=2", "training.discriminator_start_step=1000",
              "model.sample_rate=16000", "model.seanet.ratios=[8,5,5]"]  # hop 200, as HOP
    run(tmp_path / "yin", *common)
    assert min(r["pitch/voiced_share"] for r in metrics(tmp_path / "yin") if "pitch/voiced_share" in r) > 0.5
    cache = tmp_path / "cache"
    run(tmp_path / "pyin", *common, "loss.pitch_targets=pyin", f"data.pitch_cache={cache}")
    assert len(list(cache.glob("*.npz"))) == 4
    f0, voiced = TargetCache(cache).get(tmp_path / "g1.wav", SR, HOP)
    assert np.array_equal(voiced, pyin_targets(glide(SR, 1.0, 150, 300), SR, HOP)[1])
    for i in range(4):  # plant silence: what the loss sees must come from the cache
        path = tmp_path / f"g{i}.wav"
        n = len(TargetCache(cache).get(path, SR, HOP)[0])
        TargetCache(cache).put(path, SR, HOP, np.zeros(n, np.float32), np.zeros(n, bool))
    run(tmp_path / "planted", *common, "loss.pitch_targets=pyin", f"data.pitch_cache={cache}")
    shares = [r["pitch/voiced_share"] for r in metrics(tmp_path / "planted") if "pitch/voiced_share" in r]
    assert shares and max(shares) == 0.0


def test_prepare_names_unreadable_files_and_tracks_the_rest(tmp_path, caplog):
    good, bad = tmp_path / "good.wav", tmp_path / "bad.wav"
    sf.write(good, glide(SR, 0.5), SR)
    bad.write_bytes(b"not audio at all")
    targets = PitchTargets(tmp_path / "cache", SR, HOP)
    with caplog.at_level("WARNING"):
        assert targets.prepare([good, bad], workers=2) == 1
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    lines = [r.getMessage() for r in caplog.records if "no pitch targets" in r.getMessage()]
    assert len(lines) == 1 and str(bad) in lines[0] and "\n" not in lines[0]
    f0, voiced = targets.crop(good, 0.0, SR // 2)
    assert voiced[3:-3].all() and f0.shape == (SR // 2 // HOP,)
