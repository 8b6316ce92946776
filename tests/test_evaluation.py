"""`simvq-audio eval`: a tiny random model and real codecs on three 2 s cuts of real speech."""

from __future__ import annotations

import csv
import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from simvq_audio.errors import SimVQError
from simvq_audio.evaluation import CSV_COLUMNS, METRICS, EvalConfig, evaluate, format_table
from simvq_audio.evaluation.baselines import BaselineError
from simvq_audio.evaluation.evaluate import codebook_stats, column_stats

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RATE = 16000
BASELINES = ("opus:6k", "codec2:1200")  # codec2:3200 runs in the manifest test


def _tiny_model_dir(path: Path) -> Path:
    from simvq_audio.models.codec import CodecConfig, SimVQCodec
    from simvq_audio.modules.seanet import SEANetConfig
    from simvq_audio.quantization.builder import QuantizerConfig

    torch.manual_seed(0)
    config = CodecConfig(sample_rate=RATE, seanet=SEANetConfig(n_filters=8, ratios=(4, 4), dimension=16, lstm=1),
                         quantizer=QuantizerConfig(codebook_size=64, dim=8))
    SimVQCodec(config).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict:
    """Three 2 s cuts of real dev speech (one in a sub-folder), a manifest of them, a tiny model."""
    from simvq_audio.audio.io import find_audio_files, load_audio

    if not (DATA / "dev").is_dir():
        pytest.skip(f"real speech not found at {DATA}")
    if not shutil.which("c2enc") or not (shutil.which("ffmpeg") or shutil.which("opusenc")):
        pytest.skip("codec tools not installed (Debian packages codec2 and ffmpeg or opus-tools)")
    root = tmp_path_factory.mktemp("eval")
    refs = root / "refs"
    (refs / "sub").mkdir(parents=True)
    names = []
    for i, src in enumerate(find_audio_files(DATA / "dev")[:3]):
        x = load_audio(src, sample_rate=RATE).samples[0][RATE: 3 * RATE]  # skip the leading second
        name = f"{'sub/' if i == 2 else ''}{src.stem}.flac"
        sf.write(refs / name, x, RATE)
        names.append(name)
    manifest = root / "refs.jsonl"
    manifest.write_text("".join(json.dumps({"path": f"refs/{n}", "duration": 2.0}) + "\n" for n in names))
    return {"root": root, "refs": refs, "names": sorted(names), "manifest": manifest,
            "model": _tiny_model_dir(root / "model")}


@pytest.fixture(scope="module")
def report(workspace):
    """One full run through the CLI command: model, Opus, Codec 2 x 2 and EnCodec (unavailable here or not)."""
    import argparse

    from simvq_audio.commands import evaluate as command

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    out = workspace["root"] / "out"
    argv = [str(workspace["refs"]), "--model", str(workspace["model"]), "-o", str(out), "--plots", "1",
            "--device", "cpu", "--quiet", *(a for spec in (*BASELINES, "encodec:1.5") for a in ("--baseline", spec))]
    assert command.run(parser.parse_args(argv)) == 0
    with open(out / "per_file.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return {"out": out, "rows": rows, "summary": json.loads((out / "summary.json").read_text())}


def _systems(summary: dict) -> dict:
    return {s["name"]: s for s in summary["systems"]}


def test_csv_has_one_row_per_file_and_system(report, workspace):
    rows, summary = report["rows"], report["summary"]
    available = [s["name"] for s in summary["systems"] if s["available"]]
    assert available[0] == "simvq-codec" and available[1:] == list(BASELINES)
    assert len(rows) == 3 * len(available)
    assert list(rows[0].keys()) == list(CSV_COLUMNS)
    assert sorted({r["file"] for r in rows}) == workspace["names"]
    for name in available:
        assert sorted(r["file"] for r in rows if r["system"] == name) == workspace["names"]
    assert all(math.isclose(float(r["duration_s"]), 2.0) for r in rows)


def test_summary_means_equal_csv_means(report):
    rows, summary = report["rows"], report["summary"]
    assert summary["n_files"] == 3 and summary["sample_rate"] == RATE and summary["skipped"] == []
    for s in summary["systems"]:
        if not s["available"]:
            continue
        mine = [r for r in rows if r["system"] == s["name"]]
        assert s["n"] == len(mine) == 3
        for col in (*METRICS, "bitrate_actual"):
            values = np.array([float(r[col]) for r in mine])
            finite = values[np.isfinite(values)]
            stats = s["metrics"][col]
            assert stats["n"] == len(finite)
            assert stats["mean"] == pytest.approx(finite.mean(), rel=1e-12)
            assert stats["std"] == pytest.approx(finite.std(ddof=1), rel=1e-9, abs=1e-12)


def test_summary_describes_model_and_systems(report, workspace):
    from simvq_audio.models.pretrained import read_model_meta

    summary = report["summary"]
    assert summary["model_id"] == read_model_meta(workspace["model"])["model_id"]
    assert summary["model"]["bitrate"] == pytest.approx(6000.0)  # 1 x log2(64) bits x 1000 frames/s
    assert summary["format"] == "simvq-audio-eval" and summary["date"].startswith("20")
    model = _systems(summary)["simvq-codec"]
    assert model["kind"] == "model" and model["bitrate_nominal"] == pytest.approx(6000.0)
    assert 0 < model["codebook_utilisation"] <= 1 and 1 <= model["perplexity"] <= 64
    assert model["codes_used"] == round(model["codebook_utilisation"] * 64)
    assert model["metrics"]["bitrate_actual"]["mean"] == pytest.approx(6000.0)


def test_baselines_give_finite_metrics_and_bitrates(report):
    systems = _systems(report["summary"])
    for spec, nominal in zip(BASELINES, (6000, 1200), strict=True):
        s = systems[spec]
        assert s["kind"] == "baseline" and s["bitrate_nominal"] == nominal
        for col in METRICS:
            assert s["metrics"][col]["n"] == 3, (spec, col)
        assert 0.5 < s["metrics"]["stoi"]["mean"] <= 1
        assert -4 <= s["delay_samples"] <= 800  # codecs are late (within 50 ms), not early
    assert systems["codec2:1200"]["metrics"]["bitrate_actual"]["mean"] == pytest.approx(1200.0)
    assert 6000 <= systems["opus:6k"]["metrics"]["bitrate_actual"]["mean"] < 9000


def test_opus_6k_beats_codec2_1200_on_pesq(report):
    systems = _systems(report["summary"])
    assert systems["opus:6k"]["metrics"]["pesq_wb"]["mean"] > systems["codec2:1200"]["metrics"]["pesq_wb"]["mean"]


def test_encodec_reported_when_unavailable(report):
    encodec = _systems(report["summary"])["encodec:1.5"]
    if encodec["available"]:
        assert encodec["metrics"]["pesq_wb"]["n"] == 3
    else:
        assert encodec["reason"].startswith("encodec:1.5: ") and "\n" not in encodec["reason"]
        assert "unavailable: encodec:1.5" in format_table(report["summary"])


def test_figures_written(report):
    out = report["out"]
    plots = sorted(p.name for p in (out / "plots").iterdir())
    assert len([p for p in plots if p.startswith("mel_")]) == 1 and "code_usage.png" in plots
    assert not [p for p in plots if p.startswith(".")]  # no temporary files left
    for name in plots:
        assert (out / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(report["summary"]["outputs"]["plots"]) == sorted(f"plots/{p}" for p in plots)


def test_console_table_has_one_row_per_system(report):
    lines = format_table(report["summary"]).splitlines()
    assert lines[0].split()[:3] == ["system", "kbps", "n"]
    assert [ln.split()[0] for ln in lines[1:4]] == ["simvq-codec", *BASELINES]


def test_pitch_metrics_reported(report):
    pitch = ("voicing_f1", "pitch_rmse_cents", "gross_pitch_error")
    assert set(pitch) <= set(METRICS) and all(r[m] != "" for r in report["rows"] for m in pitch)
    opus = _systems(report["summary"])["opus:6k"]["metrics"]
    assert all(opus[m]["n"] == 3 for m in pitch)
    assert opus["voicing_f1"]["mean"] > 0.7 and 0 <= opus["gross_pitch_error"]["mean"] < 0.5


def test_reference_pitch_tracked_once_per_file_or_not_at_all(workspace, tmp_path, monkeypatch):
    import simvq_audio.pitch as pitch

    calls, track = [], pitch.track_pitch
    monkeypatch.setattr(pitch, "track_pitch", lambda *a, **k: calls.append(1) or track(*a, **k))
    config = EvalConfig(model=None, baselines=("codec2:1200", "codec2:3200"), max_files=2, plots=0)
    evaluate(workspace["refs"], tmp_path / "a", config)
    assert len(calls) == 2 * (1 + 2)  # per file: the reference once, each system once
    rep = evaluate(workspace["refs"], tmp_path / "b", replace(config, pitch=False))
    assert len(calls) == 6 and all(r["voicing_f1"] is None for r in rep.rows)
    assert _systems(rep.summary)["codec2:1200"]["metrics"]["pitch_rmse_cents"] == {"mean": None, "std": None, "n": 0}


def test_manifest_input_without_model(workspace, tmp_path):
    rep = evaluate(workspace["manifest"], tmp_path / "out",
                   EvalConfig(model=None, baselines=("codec2:3200",), plots=1, max_files=2))
    assert [r["file"] for r in rep.rows] == [f"refs/{n}" for n in workspace["names"][:2]]  # manifest order
    assert rep.summary["model"] is None and rep.summary["sample_rate"] == 16000 and rep.summary["n_files"] == 2
    assert [p.name.startswith("mel_000_") for p in rep.plot_paths] == [True]  # no code usage without a model
    assert (tmp_path / "out" / "per_file.csv").read_text().count("\n") == 1 + 2
    codec2 = _systems(rep.summary)["codec2:3200"]
    assert all(codec2["metrics"][m]["n"] == 2 for m in METRICS)
    assert codec2["metrics"]["bitrate_actual"]["mean"] == pytest.approx(3200.0)


def test_repeated_spec_runs_once(workspace, tmp_path):
    rep = evaluate(workspace["refs"], tmp_path, EvalConfig(model=None, baselines=("codec2:1200", "codec2:1200"),
                                                             max_files=1, plots=0))
    assert [r["system"] for r in rep.rows] == ["codec2:1200"]
    assert [s["name"] for s in rep.summary["systems"]] == ["codec2:1200"]


def test_unreadable_file_is_skipped(workspace, tmp_path):
    folder = tmp_path / "refs"
    folder.mkdir()
    (folder / "broken.wav").write_bytes(b"RIFF not really a wave file")
    sf.write(folder / "good.flac", sf.read(workspace["refs"] / workspace["names"][0])[0], RATE)
    rep = evaluate(folder, tmp_path / "out", EvalConfig(model=None, baselines=("codec2:1200",), plots=0))
    assert [r["file"] for r in rep.rows] == ["good.flac"]
    assert len(rep.summary["skipped"]) == 1 and "broken.wav" in rep.summary["skipped"][0]["error"]
    assert not (tmp_path / "out" / "plots").exists()


def test_errors(workspace, tmp_path):
    with pytest.raises(SimVQError, match="reference not found") as info:
        evaluate(tmp_path / "nowhere", tmp_path / "out", EvalConfig(model=None, baselines=("codec2:1200",)))
    assert "nowhere" in str(info.value)
    with pytest.raises(BaselineError, match="unknown baseline 'mp3:128'"):
        evaluate(workspace["refs"], tmp_path / "out", EvalConfig(model=str(workspace["model"]),
                                                                 baselines=("mp3:128",)))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SimVQError, match="no audio files"):
        evaluate(tmp_path / "empty", tmp_path / "out", EvalConfig(model=None, baselines=("codec2:1200",)))
    with pytest.raises(SimVQError, match="nothing to evaluate"):
        evaluate(workspace["refs"], tmp_path / "out", EvalConfig(model=None))
    with pytest.raises(SimVQError, match="metrics use the model's rate"):
        evaluate(workspace["refs"], tmp_path / "out", EvalConfig(model=str(workspace["model"]), sample_rate=24000))
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(SimVQError, match="not a folder"):
        evaluate(workspace["refs"], tmp_path / "file.txt", EvalConfig(model=None, baselines=("codec2:1200",)))
    assert not (tmp_path / "out").exists()  # every error comes before any output


def test_cli_errors_are_one_line(workspace, tmp_path, capsys):
    from simvq_audio.cli import main

    assert main(["eval", str(tmp_path / "missing"), "--no-model", "--baseline", "codec2:1200"]) == 1
    assert main(["eval", str(workspace["refs"]), "--no-model", "--baseline", "opus:1k"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("simvq-audio eval: error: ") for line in err)
    assert "missing" in err[0] and "opus:1k" in err[1]


def test_codebook_stats_and_column_stats():
    counts = np.array([[4, 4, 0, 0], [1, 1, 1, 1]])
    stats = codebook_stats(counts)
    assert stats["codebook_utilisation_per_codebook"] == [0.5, 1.0]
    assert stats["perplexity_per_codebook"] == pytest.approx([2.0, 4.0])
    assert stats["codebook_utilisation"] == 0.75 and stats["perplexity"] == pytest.approx(3.0)
    assert stats["dead_codes"] == 2 and stats["codes_used"] == 6
    assert stats["uniform_ceiling"] == pytest.approx(1 - (0.75**8 + 0.75**4) / 2)
    assert column_stats([1.0, float("nan"), 3.0]) == {"mean": 2.0, "std": pytest.approx(math.sqrt(2)), "n": 2}
    assert column_stats([float("nan")]) == {"mean": None, "std": None, "n": 0}


def test_max_files_spreads_over_the_list():
    from simvq_audio.evaluation.evaluate import spread

    items = list(range(10))
    assert spread(items, 3) == [0, 3, 6] and spread(items, 1) == [0]
    assert spread(items, 10) == items and spread(items, 20) == items
    assert len(set(spread(list(range(92)), 12))) == 12
