"""export-dataset: sharded token corpus from real speech with a tiny random model."""

from __future__ import annotations

import json
import math
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from simvq_audio.corpus.format import FAILURES_NAME, META_NAME, ShardFiles, read_index, read_meta
from simvq_audio.corpus.plan import CorpusEntry, list_inputs, plan_shards
from simvq_audio.corpus.writer import finalize_corpus, write_corpus, write_shards
from simvq_audio.errors import SimVQError, TokenFileError
from simvq_audio.models.spec import ModelSpec

DEV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dev"
DOC = Path(__file__).resolve().parents[1] / "docs" / "speech-lm.md"
CROPS = (0.15, 0.2, 0.3, 0.25, 0.35, 0.18)  # seconds; the tiny model runs 1000 frames/s


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    from simvq_audio.models.codec import CodecConfig, SimVQCodec
    from simvq_audio.modules.seanet import SEANetConfig
    from simvq_audio.quantization.builder import QuantizerConfig

    torch.manual_seed(0)
    config = CodecConfig(sample_rate=16000, seanet=SEANetConfig(n_filters=8, ratios=(4, 4), dimension=16, lstm=1),
                         quantizer=QuantizerConfig(codebook_size=64, dim=8, n_q=2))
    path = tmp_path_factory.mktemp("model")
    SimVQCodec(config).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tokenizer(model_dir):
    from simvq_audio.inference import Tokenizer

    return Tokenizer.from_pretrained(model_dir, device="cpu")


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory) -> Path:
    """Six short crops of real dev speech in two folders (one at 8 kHz), plus one corrupt file."""
    if not DEV.is_dir():
        pytest.skip(f"{DEV} not available")
    sources = sorted(DEV.rglob("*.flac"))[: len(CROPS)]
    root = tmp_path_factory.mktemp("audio")
    (root / "b").mkdir()
    for i, (src, seconds) in enumerate(zip(sources, CROPS, strict=True)):
        x, sr = sf.read(src, dtype="float32")
        x = x[int(sr * 0.5): int(sr * (0.5 + seconds))]
        if i == 3:
            x, sr = x[::2], sr // 2
        sf.write(root / ("b" if i % 2 else "") / f"utt{i}.flac", x, sr)
    (root / "b" / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio")
    return root


def _export(tokenizer, input_path, out, shard_size=2, **kwargs):
    entries, root = list_inputs(input_path)
    plan = plan_shards(entries, tokenizer.spec, root, shard_size=shard_size)
    report, meta = write_corpus(tokenizer, plan, out, **kwargs)
    return plan, report, meta


@pytest.fixture(scope="module")
def exported(tokenizer, audio_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus") / "tokens"
    plan, report, meta = _export(tokenizer, audio_dir, out)
    return out, plan, report, meta


def _files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def test_meta_and_index_are_consistent(exported, tokenizer, audio_dir):
    out, plan, report, meta = exported
    assert meta == read_meta(out)
    assert (meta.model_id, meta.n_codebooks, meta.codebook_size) == (tokenizer.model_id, 2, 64)
    assert (meta.dtype, meta.layout, meta.hop_length, meta.frame_rate) == ("uint16", "n_frames,n_codebooks", 16, 1000.0)
    assert plan.n_shards == 4 and len(meta.shards) == 4 and report.encoded == [0, 1, 2, 3]
    records = [r for i in range(plan.n_shards) for r in read_index(ShardFiles.of(out, i).index)]
    assert meta.n_utterances == len(records) == len(CROPS)
    assert meta.n_frames == sum(r.n_frames for r in records)
    assert [r.source for r in records] == sorted(r.source for r in records)
    for info, i in zip(meta.shards, range(plan.n_shards), strict=True):
        shard = [r for r in records if r.shard == i]
        assert info.n_utterances == len(shard) and info.n_frames == sum(r.n_frames for r in shard)
        assert [r.offset for r in shard] == list(np.cumsum([0] + [r.n_frames for r in shard])[:-1])
        assert ShardFiles.of(out, i).bin.stat().st_size == info.n_frames * 2 * 2
    for r in records:
        info = sf.info(str(audio_dir / r.source))
        assert r.duration == pytest.approx(info.frames / info.samplerate, abs=1e-6)
        assert r.n_frames == math.ceil(round(info.frames * 16000 / info.samplerate) / 16)
        assert r.id == r.source.rsplit(".", 1)[0]


def test_tokens_equal_tokenizer_encode(exported, tokenizer, audio_dir):
    from simvq_audio.corpus import TokenDataset

    out = exported[0]
    dataset = TokenDataset(out, return_meta=True)
    assert len(dataset) == len(CROPS)
    for codes, meta in dataset:
        x, sr = sf.read(audio_dir / meta["source"], dtype="float32")
        expected = tokenizer.encode(x, sr)  # [n_q, T]
        assert codes.dtype == torch.long and torch.equal(codes, expected.T), meta["id"]


def test_corrupt_file_is_reported_and_skipped(exported):
    out, _, report, meta = exported
    failures = [json.loads(line) for line in (out / FAILURES_NAME).read_text().splitlines()]
    assert [(f["id"], f["source"]) for f in failures] == [("b/broken", "b/broken.wav")]
    assert "b/broken.wav" in failures[0]["error"]
    assert meta.n_failed == 1 and report.failures == failures
    assert sum(s.n_failed for s in meta.shards) == 1


def test_rerun_rebuilds_only_a_deleted_shard_and_cli_exits_nonzero(exported, model_dir, audio_dir, tmp_path, capsys):
    from simvq_audio.export_dataset import main

    out = tmp_path / "tokens"
    shutil.copytree(exported[0], out)
    before = _files(out)
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    ShardFiles.of(out, 2).bin.unlink()
    ShardFiles.of(out, 1).index.unlink()  # an index missing = shard unfinished, even with its .bin there
    rc = main([str(audio_dir), "-o", str(out), "--model", str(model_dir), "--shard-size", "2", "--device", "cpu", "-q"])
    assert rc == 1  # the corrupt file still counts as failed
    assert "1 file(s) failed (b/broken.wav)" in capsys.readouterr().err
    assert _files(out) == before
    for name in ("shard-00000.bin", "shard-00000.jsonl", "shard-00003.bin", "shard-00003.jsonl"):
        assert (out / name).stat().st_mtime_ns == mtimes[name], name
    assert (out / "shard-00002.jsonl").stat().st_mtime_ns != mtimes["shard-00002.jsonl"]
    assert not [p for p in out.iterdir() if ".tmp-" in p.name]


def test_two_processes_equal_one(exported, tokenizer, tmp_path):
    out, plan, _, _ = exported
    two = tmp_path / "two"
    reports = [write_shards(tokenizer, plan, two, num_processes=2, process_index=p) for p in (0, 1)]
    assert [r.encoded for r in reports] == [[0, 2], [1, 3]]
    assert not (two / META_NAME).exists()
    with pytest.raises(SimVQError, match="unfinished"):
        finalize_corpus(tmp_path / "empty", plan)
    finalize_corpus(two, plan)
    assert _files(two) == _files(out)


def test_unfinished_and_mismatched_exports_are_refused(exported, tokenizer, audio_dir, tmp_path):
    from simvq_audio.corpus import TokenDataset

    out, plan, _, _ = exported
    write_shards(tokenizer, plan, tmp_path / "part", num_processes=2, process_index=1)
    with pytest.raises(TokenFileError, match="not finished"):
        TokenDataset(tmp_path / "part")
    with pytest.raises(SimVQError, match="plan.json differs"):
        _export(tokenizer, audio_dir, out, shard_size=3)


def test_manifest_input_keeps_labels(tokenizer, audio_dir, tmp_path):
    from simvq_audio.corpus import TokenDataset

    lines = [{"path": "utt0.flac", "duration": 0.15, "speaker": "s1", "text": "hello", "split": "a"},
             {"path": str(audio_dir / "b" / "utt1.flac"), "duration": 0.2, "id": "x1", "split": "b"}]
    manifest = audio_dir / "list.jsonl"  # not audio: folder exports ignore it
    manifest.write_text("".join(json.dumps(x) + "\n" for x in lines))
    _, _, meta = _export(tokenizer, manifest, tmp_path / "tok", shard_size=1)
    assert meta.n_utterances == 2 and meta.n_failed == 0 and len(meta.shards) == 2
    rows = {m["id"]: m for _, m in TokenDataset(tmp_path / "tok", return_meta=True)}
    assert set(rows) == {"utt0", "x1"}
    assert (rows["utt0"]["speaker"], rows["utt0"]["text"], rows["utt0"]["split"]) == ("s1", "hello", "a")
    assert rows["x1"]["source"] == "b/utt1.flac"
    assert [m["id"] for _, m in TokenDataset(tmp_path / "tok", split="b", return_meta=True)] == ["x1"]
    duplicate = audio_dir / "dup.jsonl"
    duplicate.write_text(json.dumps(lines[0]) + "\n" + json.dumps(lines[0]) + "\n")
    with pytest.raises(SimVQError, match="listed twice"):
        list_inputs(duplicate)


def test_folder_durations_from_headers(audio_dir):
    entries, root = list_inputs(audio_dir, with_durations=True)
    assert root == audio_dir.absolute() and len(entries) == len(CROPS) + 1
    for e in entries:
        expected = 0.0 if e.source == "b/broken.wav" else sf.info(str(e.path)).duration
        assert e.duration == pytest.approx(expected)
    with pytest.raises(SimVQError, match="not one audio file"):
        list_inputs(audio_dir / "utt0.flac")
    with pytest.raises(SimVQError, match="no such file"):
        list_inputs(audio_dir / "missing")


def test_plan_is_a_pure_function_of_the_sorted_inputs():
    info = ModelSpec("id", "m", 16000, 50.0, 320, 1024, 1)
    entries = [CorpusEntry(path=Path(f"/d/{i}.wav"), source=f"{i:02d}.wav", id=str(i), duration=0.1 * (i % 7 + 1))
               for i in range(23)]
    shuffled = entries[::-1][5:] + entries[::-1][:5]
    for kwargs in ({"shard_size": 5}, {"shard_size": None, "shard_frames": 60}):
        a, b = plan_shards(entries, info, "/d", **kwargs), plan_shards(shuffled, info, "/d", **kwargs)
        assert a == b and a.fingerprint() == b.fingerprint()
        assert sorted(i for p in range(3) for i in a.shards_of(3, p)) == list(range(a.n_shards))
        assert [e for i in range(a.n_shards) for e in a.shard_entries(i)] == entries
    by_size = plan_shards(entries, info, "/d", shard_size=5)
    assert [len(by_size.shard_entries(i)) for i in range(by_size.n_shards)] == [5, 5, 5, 5, 3]
    by_frames = plan_shards(entries, info, "/d", shard_size=None, shard_frames=60)
    for i in range(by_frames.n_shards):
        frames = [math.ceil(e.duration * 50) for e in by_frames.shard_entries(i)]
        assert sum(frames) <= 60 or len(frames) == 1


def _doc_example(name: str) -> str:
    match = re.search(rf"<!-- example: {name} .*?-->\s*```python\n(.*?)```", DOC.read_text(), re.S)
    assert match, f"example {name} not found in {DOC}"
    return match.group(1)


@pytest.mark.parametrize("name", ["numpy-reader", "tiny-lm", "back-to-audio"])
def test_speech_lm_doc_examples_run(exported, name, monkeypatch, capsys, model_dir):
    monkeypatch.setattr(sys, "argv", ["example.py", str(exported[0]), str(model_dir)])
    namespace = {"__name__": "__main__"}
    exec(compile(_doc_example(name), f"{DOC}:{name}", "exec"), namespace)
    if name == "tiny-lm":
        losses = namespace["losses"]
        assert len(losses) == 20 and all(math.isfinite(x) for x in losses)
        assert np.mean(losses[-5:]) < losses[0]
        assert "step 20: loss" in capsys.readouterr().out
    elif name == "back-to-audio":
        tokenizer = namespace["tokenizer"]
        assert namespace["audio"].shape == (1, namespace["codes"].shape[0] * tokenizer.hop_length)
    else:
        assert namespace["utterance"].shape == (namespace["first"]["n_frames"], 2)


def test_shards_are_small_by_duration_by_default_and_a_rerun_keeps_its_setting(exported, audio_dir, model_dir,
                                                                                tmp_path, capsys):
    """A killed export loses only its shard in progress, so the default shard is 10 minutes of audio,
    not 1,000 utterances (an hour of CPU work); a rerun without options resumes with the folder's own."""
    from simvq_audio.commands.export_dataset import DEFAULT_SHARD_SECONDS
    from simvq_audio.export_dataset import main

    fresh = tmp_path / "fresh"
    main([str(audio_dir), "-o", str(fresh), "--model", str(model_dir), "--device", "cpu", "-q"])
    recorded = json.loads((fresh / "plan.json").read_text())
    assert recorded["shard_size"] is None and recorded["shard_frames"] == math.ceil(DEFAULT_SHARD_SECONDS * 1000)
    small = tmp_path / "small"
    main([str(audio_dir), "-o", str(small), "--model", str(model_dir), "--device", "cpu", "-q",
          "--shard-seconds", "0.6"])
    assert json.loads((small / "plan.json").read_text())["n_shards"] > 1

    out = tmp_path / "resumed"
    shutil.copytree(exported[0], out)  # written with --shard-size 2
    before = _files(out)
    ShardFiles.of(out, 1).index.unlink()
    capsys.readouterr()
    assert main([str(audio_dir), "-o", str(out), "--model", str(model_dir), "--device", "cpu", "-q"]) == 1
    assert "holds an export of another" not in capsys.readouterr().err and _files(out) == before
