"""Manifests, the `manifest` command and the training dataset (crops, determinism, bad files, workers)."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from simvq_audio.commands import manifest as manifest_command
from simvq_audio.data.dataset import AudioDataset, collate_audio
from simvq_audio.data.manifest import (
    ManifestEntry,
    build_manifest,
    read_manifest,
    write_manifest,
)
from simvq_audio.errors import SimVQError

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _tone(seconds: float, rate: int, freq: float = 220.0, channels: int = 1, seed: int = 0) -> np.ndarray:
    """[N] or [N, C] float32: a tone plus a little noise (so crops at different offsets differ)."""
    t = np.arange(round(seconds * rate)) / rate
    x = 0.3 * np.sin(2 * np.pi * freq * t) + 0.05 * np.random.default_rng(seed).standard_normal(t.size)
    x = x.astype(np.float32)
    return np.stack([x, 0.5 * x], axis=1) if channels == 2 else x


def _wav(path: Path, seconds: float, rate: int = 16000, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, _tone(seconds, rate, **kwargs), rate, subtype="PCM_16")
    return path


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "audio"
    _wav(root / "spk1" / "a.wav", 1.5, seed=1)
    (root / "spk1" / "a.normalized.txt").write_text("Hello  world.\n")
    _wav(root / "spk1" / "b.flac", 0.2, seed=2)
    (root / "spk1" / "b.txt").write_text("short one")
    _wav(root / "spk2" / "84_121123_000007_000000.wav", 3.0, rate=22050, seed=3)
    (root / "spk2" / "notes.txt").write_text("not audio")
    return root


def _entries(tmp_path: Path, specs: list[tuple[str, float, int]]) -> list[ManifestEntry]:
    out = []
    for i, (name, seconds, rate) in enumerate(specs):
        path = _wav(tmp_path / name, seconds, rate, seed=i, freq=150.0 + 40 * i)
        out.append(ManifestEntry(path=path, duration=seconds, sample_rate=rate))
    return out


# ----------------------------------------------------------------------------- manifests


def test_build_manifest_fields_and_filters(folder: Path) -> None:
    entries = build_manifest(folder, speaker_from="parent")
    assert [e.id for e in entries] == ["spk1/a", "spk1/b", "spk2/84_121123_000007_000000"]
    a, b, c = entries
    assert a.path.is_absolute() and a.duration == pytest.approx(1.5) and a.sample_rate == 16000
    assert a.text == "Hello world." and b.text == "short one" and c.text is None
    assert [e.speaker for e in entries] == ["spk1", "spk1", "spk2"]
    assert c.sample_rate == 22050 and c.duration == pytest.approx(3.0)
    assert build_manifest(folder, speaker_from="filename")[2].speaker == "84"
    assert [e.id for e in build_manifest(folder, min_duration=0.5, max_duration=2.0)] == ["spk1/a"]
    assert build_manifest(folder)[0].speaker is None


def test_build_manifest_skips_bad_files_and_rejects_non_folder(folder: Path, tmp_path: Path) -> None:
    (folder / "broken.wav").write_bytes(b"RIFF not really a wav")
    skipped: list[Path] = []
    entries = build_manifest(folder, on_skip=lambda p, reason: skipped.append(p))
    assert len(entries) == 3 and skipped == [folder / "broken.wav"]
    with pytest.raises(SimVQError, match="not a folder"):
        build_manifest(tmp_path / "missing")


def test_manifest_round_trip_absolute_and_relative(folder: Path, tmp_path: Path) -> None:
    entries = build_manifest(folder, speaker_from="parent")
    for relative in (False, True):
        out = tmp_path / "lists" / f"m{int(relative)}.jsonl"
        write_manifest(out, entries, relative=relative)
        first = json.loads(out.read_text().splitlines()[0])
        assert Path(first["path"]).is_absolute() != relative
        back = read_manifest(out)
        assert [e.path.resolve() for e in back] == [e.path.resolve() for e in entries]
        assert [(e.speaker, e.text, e.id, e.sample_rate) for e in back] == [
            (e.speaker, e.text, e.id, e.sample_rate) for e in entries
        ]
    assert not [p for p in (tmp_path / "lists").iterdir() if p.name.startswith(".")]  # no temp files left


def test_read_manifest_extra_keys_relative_paths_and_errors(tmp_path: Path) -> None:
    m = tmp_path / "sub" / "train.jsonl"
    m.parent.mkdir()
    line = {"path": "train/x.flac", "duration": 2.5, "sample_rate": 16000, "speaker": "S1", "gender": "M",
            "license": "CC BY 4.0", "source": "somewhere"}
    m.write_text(json.dumps(line) + "\n\n")
    (entry,) = read_manifest(m)
    assert entry.path == m.parent.absolute() / "train" / "x.flac" and entry.speaker == "S1" and entry.split is None
    m.write_text(json.dumps({**line, "sample_rate": 16000.0, "speaker": 7, "path": "/abs/y.wav"}) + "\n")
    (entry,) = read_manifest(m)
    assert (entry.sample_rate, entry.speaker, entry.path) == (16000, "7", Path("/abs/y.wav"))
    for bad, message in [("{oops", "invalid JSON"), ('{"duration": 1}', "path"), ('{"path": "a", "duration": -1}', "duration"),
                         ("[1]", "JSON object")]:
        m.write_text(json.dumps(line) + "\n" + bad + "\n")
        with pytest.raises(SimVQError, match=rf"train.jsonl:2: .*{message}"):
            read_manifest(m)
    with pytest.raises(SimVQError, match="not found"):
        read_manifest(tmp_path / "nope.jsonl")


@pytest.mark.skipif(not (SHARED_DATA / "dev.jsonl").is_file(), reason="shared data not available")
def test_read_shared_manifest() -> None:
    entries = read_manifest(SHARED_DATA / "dev.jsonl")
    assert len(entries) > 10 and all(e.path.is_file() for e in entries[:5])


def _run_manifest_command(argv: list[str]) -> int:
    # The command module itself (the dispatcher imports every sub-command, some written elsewhere).
    parser = argparse.ArgumentParser()
    manifest_command.add_arguments(parser)
    return manifest_command.run(parser.parse_args(argv))


def test_manifest_command(folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "m.jsonl"
    assert _run_manifest_command([str(folder), "-o", str(out), "--min-duration", "0.5", "--relative",
                                  "--speaker-from", "parent"]) == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["path"] for x in lines] == ["audio/spk1/a.wav", "audio/spk2/84_121123_000007_000000.wav"]
    assert lines[0]["speaker"] == "spk1" and lines[0]["text"] == "Hello world."
    assert "2 files" in capsys.readouterr().out
    with pytest.raises(SimVQError, match="not a folder"):
        _run_manifest_command([str(tmp_path / "missing"), "-o", str(out)])


# ----------------------------------------------------------------------------- dataset


def test_crops_shape_length_and_padding(tmp_path: Path) -> None:
    entries = _entries(tmp_path, [("long.wav", 2.0, 16000), ("short.wav", 0.25, 16000), ("st.wav", 2.0, 16000)])
    sf.write(tmp_path / "st.wav", _tone(2.0, 16000, channels=2), 16000)
    ds = AudioDataset(entries, sample_rate=16000, segment_seconds=0.5)
    assert len(ds) == 3
    for i, expected in enumerate([8000, 4000, 8000]):
        item = ds[i]
        assert item["audio"].shape == (1, 8000) and item["audio"].dtype == torch.float32
        assert item["length"] == expected and item["skipped"] == 0
    short = ds[1]["audio"]
    assert short[:, 4000:].abs().max() == 0 and short[:, :4000].abs().max() > 0.1
    stereo = AudioDataset(entries, 16000, 0.5, channels=2)[2]["audio"]
    assert stereo.shape == (2, 8000) and not torch.equal(stereo[0], stereo[1])
    whole = AudioDataset(entries, 16000, None)
    batch = collate_audio([whole[0], whole[1]])
    assert batch["audio"].shape == (2, 1, 32000) and batch["lengths"].tolist() == [32000, 4000]


def test_crop_is_the_file_content(tmp_path: Path) -> None:
    entries = _entries(tmp_path, [("a.wav", 2.0, 16000)])
    full, _ = sf.read(entries[0].path, dtype="float32")
    crop = AudioDataset(entries, 16000, 0.25, seed=5)[0]["audio"][0].numpy()
    starts = [s for s in range(full.size - crop.size + 1) if np.array_equal(full[s : s + 8], crop[:8])]
    assert any(np.array_equal(full[s : s + crop.size], crop) for s in starts)
    first = AudioDataset(entries, 16000, 0.25, random_crop=False)[0]["audio"][0].numpy()
    assert np.array_equal(first, full[:4000])


def test_determinism_across_instances_and_epochs(tmp_path: Path) -> None:
    entries = _entries(tmp_path, [("a.wav", 3.0, 16000), ("b.wav", 3.0, 22050)])
    a = AudioDataset(entries, 16000, 0.3, gain_db=(-6.0, 6.0), seed=1)
    b = AudioDataset(entries, 16000, 0.3, gain_db=(-6.0, 6.0), seed=1)
    for i in range(2):
        assert torch.equal(a[i]["audio"], b[i]["audio"])
    before = a[0]["audio"].clone()
    a.set_epoch(1)
    assert not torch.equal(a[0]["audio"], before)
    a.set_epoch(0)
    assert torch.equal(a[0]["audio"], before)
    assert not torch.equal(AudioDataset(entries, 16000, 0.3, seed=2)[0]["audio"], before)


def test_gain_range(tmp_path: Path) -> None:
    entries = _entries(tmp_path, [("a.wav", 1.0, 16000)])
    plain = AudioDataset(entries, 16000, 0.5, random_crop=False)[0]["audio"]
    for epoch in range(4):
        ds = AudioDataset(entries, 16000, 0.5, random_crop=False, gain_db=(-12.0, -6.0))
        ds.set_epoch(epoch)
        ratio = (ds[0]["audio"].abs().max() / plain.abs().max()).item()
        assert 10 ** (-12 / 20) - 1e-4 <= ratio <= 10 ** (-6 / 20) + 1e-4
    fixed = AudioDataset(entries, 16000, 0.5, random_crop=False, gain_db=(6.0, 6.0))[0]["audio"]
    np.testing.assert_allclose(fixed.numpy(), plain.numpy() * 10 ** (6 / 20), rtol=1e-5, atol=1e-7)


def test_resampling_of_a_22k_file(tmp_path: Path) -> None:
    entries = _entries(tmp_path, [("a.wav", 2.0, 22050)])
    sf.write(entries[0].path, (0.5 * np.sin(2 * np.pi * 1000 * np.arange(44100) / 22050)).astype(np.float32), 22050)
    item = AudioDataset(entries, 16000, 0.5, seed=3)[0]
    x = item["audio"][0].numpy()
    assert x.shape == (8000,) and item["length"] == 8000
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    assert np.argmax(spectrum) * 16000 / x.size == pytest.approx(1000, abs=4)
    # Amplitude is preserved through the crop (no resampler edge transient inside it).
    assert np.abs(x).max() == pytest.approx(0.5, abs=0.02)
    whole = AudioDataset(entries, 16000, None)[0]
    assert whole["audio"].shape == (1, 32000) and whole["length"] == 32000


def test_corrupt_file_is_skipped_and_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    entries = _entries(tmp_path, [("a.wav", 1.0, 16000), ("b.wav", 1.0, 16000)])
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00garbage")
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), 16000)
    entries += [ManifestEntry(bad, 1.0), ManifestEntry(empty, 1.0), ManifestEntry(tmp_path / "gone.wav", 1.0)]
    ds = AudioDataset(entries, 16000, 0.5)
    with caplog.at_level(logging.WARNING, logger="simvq_audio.data.dataset"):
        items = [ds[i] for i in range(len(ds))] + [ds[2], ds[3]]
    assert all(item["audio"].shape == (1, 8000) and item["length"] == 8000 for item in items)
    assert [item["skipped"] for item in items[:2]] == [0, 0]
    assert all(item["skipped"] >= 1 for item in items[2:])
    warned = [r.getMessage() for r in caplog.records]
    for path in (bad, empty, tmp_path / "gone.wav"):
        assert sum(str(path) in m for m in warned) == 1  # once per file, even when met again
    again = AudioDataset(entries, 16000, 0.5)
    assert [again[i]["skipped"] for i in range(2, 5)] == [items[2]["skipped"], items[3]["skipped"], items[4]["skipped"]]


def test_all_files_corrupt_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"nothing here")
    ds = AudioDataset([ManifestEntry(bad, 1.0), ManifestEntry(tmp_path / "missing.flac", 1.0)], 16000, 0.5)
    with pytest.raises(SimVQError, match="none of the 2 audio files"):
        ds[0]
    with pytest.raises(SimVQError, match="no audio files"):
        AudioDataset([], 16000, 0.5)


def test_dataloader_with_workers_matches_main_process(tmp_path: Path) -> None:
    entries = _entries(tmp_path, [(f"f{i}.wav", 1.0, 16000 if i % 2 else 22050) for i in range(6)])
    ds = AudioDataset.from_manifest(_manifest(tmp_path, entries), 16000, 0.25, gain_db=(-3.0, 3.0), seed=7)
    ds.set_epoch(2)
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=2, collate_fn=collate_audio)
    batches = list(loader)
    assert [b["audio"].shape for b in batches] == [(3, 1, 4000)] * 2
    assert all(b["lengths"].tolist() == [4000] * 3 and b["skipped"] == 0 for b in batches)
    expected = torch.stack([ds[i]["audio"] for i in range(6)])
    assert torch.equal(torch.cat([b["audio"] for b in batches]), expected)


def _manifest(tmp_path: Path, entries: list[ManifestEntry]) -> Path:
    path = tmp_path / "m.jsonl"
    write_manifest(path, entries, relative=True)
    return path
