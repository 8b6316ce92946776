"""`simvq-audio encode / decode / info`: round trips, folder mirroring, skipping, and every bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from simvq_audio.cli import main
from simvq_audio.models.codec import CodecConfig, SimVQCodec
from simvq_audio.modules.seanet import SEANetConfig
from simvq_audio.quantization.builder import QuantizerConfig

REPO = Path(__file__).resolve().parents[1]


def tiny_model(seed: int = 0) -> SimVQCodec:
    torch.manual_seed(seed)
    cfg = CodecConfig(
        sample_rate=16000,
        seanet=SEANetConfig(n_filters=8, ratios=(4, 4), dimension=16, lstm=1),
        quantizer=QuantizerConfig(codebook_size=64, dim=8),
    )
    return SimVQCodec(cfg)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model")
    tiny_model().save_pretrained(path)
    return path


@pytest.fixture
def run(model_dir, capsys):
    """Run the CLI with the tiny model on CPU; returns (exit code, stdout, stderr lines)."""

    def _run(*argv: str | Path, model: Path | None = model_dir) -> tuple[int, str, list[str]]:
        args = [str(a) for a in argv]
        if args[0] in ("encode", "decode") and model is not None:
            args += ["--model", str(model), "--device", "cpu"]
        code = main(args)
        out, err = capsys.readouterr()
        return code, out, [line for line in err.splitlines() if line.strip()]

    return _run


def write_noise(path: Path, n: int, rate: int = 16000, channels: int = 1, seed: int = 0) -> np.ndarray:
    x = (np.random.default_rng(seed).standard_normal((n, channels)) * 0.1).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x, rate, subtype="FLOAT" if path.suffix == ".wav" else None)
    return x


def no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.rglob(".*") if ".tmp-" in p.name]


# -- round trips ---------------------------------------------------------------------------------------
def test_round_trip_keeps_rate_channels_length(run, tmp_path):
    x = write_noise(tmp_path / "in.wav", 22050 + 123, rate=22050, channels=2)
    code, out, err = run("encode", tmp_path / "in.wav", "-o", tmp_path / "in.svqt")
    assert code == 0 and err == []
    assert "resampling 22050 Hz -> 16000 Hz and downmixing 2 channels to mono for 1 file" in out
    assert "encoded 1 file" in out and "failed 0" in out
    code, out, err = run("decode", tmp_path / "in.svqt", "-o", tmp_path / "out.flac")
    assert code == 0 and err == []
    info = sf.info(str(tmp_path / "out.flac"))
    assert (info.samplerate, info.channels, info.frames) == (22050, 2, x.shape[0])


def test_folders_are_mirrored(run, tmp_path):
    write_noise(tmp_path / "in" / "a.wav", 3000)
    write_noise(tmp_path / "in" / "deep" / "er" / "b.flac", 5000, seed=1)
    (tmp_path / "in" / "notes.txt").write_text("not audio")
    code, out, err = run("encode", tmp_path / "in", "-o", tmp_path / "tok")
    assert code == 0 and err == []
    assert sorted(p.relative_to(tmp_path / "tok").as_posix() for p in (tmp_path / "tok").rglob("*.svqt")) == [
        "a.svqt", "deep/er/b.svqt"]
    assert "encoded 2 files" in out and "0.5 s of audio" in out and "tokens" in out and "x real time" in out
    code, out, err = run("decode", tmp_path / "tok", "-o", tmp_path / "dec", "--format", "flac")
    assert code == 0 and err == []
    assert sf.info(str(tmp_path / "dec" / "deep" / "er" / "b.flac")).frames == 5000
    assert sf.info(str(tmp_path / "dec" / "a.flac")).frames == 3000


def test_existing_outputs_are_skipped_unless_overwrite(run, tmp_path):
    write_noise(tmp_path / "in" / "a.wav", 3000)
    write_noise(tmp_path / "in" / "b.wav", 4000, seed=1)
    assert run("encode", tmp_path / "in", "-o", tmp_path / "tok")[0] == 0
    (tmp_path / "tok" / "a.svqt").write_bytes(b"stale")
    code, out, _ = run("encode", tmp_path / "in", "-o", tmp_path / "tok")
    assert code == 0 and "encoded 0 files, skipped 2" in out
    assert (tmp_path / "tok" / "a.svqt").read_bytes() == b"stale"
    code, out, _ = run("encode", tmp_path / "in", "-o", tmp_path / "tok", "--overwrite")
    assert code == 0 and "encoded 2 files, skipped 0" in out
    assert (tmp_path / "tok" / "a.svqt").read_bytes()[:4] == b"SVQT"


def test_same_file_twice_gives_identical_tokens(run, tmp_path):
    write_noise(tmp_path / "a.wav", 7000)
    run("encode", tmp_path / "a.wav", "-o", tmp_path / "1.svqt")
    run("encode", tmp_path / "a.wav", "-o", tmp_path / "2.svqt", "--batch-size", "1")
    assert (tmp_path / "1.svqt").read_bytes() == (tmp_path / "2.svqt").read_bytes()


def test_long_file_through_cli_chunked(run, tmp_path):
    x = write_noise(tmp_path / "long.wav", 22050 * 2 + 5, rate=22050)
    assert run("encode", tmp_path / "long.wav", "-o", tmp_path / "t", "--chunk-seconds", "0.4")[0] == 0
    assert run("decode", tmp_path / "t" / "long.svqt", "-o", tmp_path / "long.wav.out.wav",
               "--chunk-seconds", "0.4")[0] == 0
    info = sf.info(str(tmp_path / "long.wav.out.wav"))
    assert (info.samplerate, info.frames) == (22050, x.shape[0])


def test_info(run, tmp_path, model_dir):
    write_noise(tmp_path / "a.wav", 3000)
    run("encode", tmp_path / "a.wav", "-o", tmp_path / "a.svqt")
    code, out, _ = run("info", tmp_path / "a.svqt", "--json")
    info = json.loads(out)
    assert code == 0 and info["n_frames"] == 188 and info["original_n_samples"] == 3000 and info["source"] == "a.wav"
    code, out, _ = run("info", model_dir)
    assert code == 0 and "model_id" in out and "bitrate_bps" in out and "parameters" in out


# -- bad input: one line naming the file, non-zero exit ------------------------------------------------
def _one_error(err: list[str], *needles: str) -> None:
    assert len(err) == 1, err
    assert err[0].startswith("simvq-audio ") and ": error: " in err[0]
    for needle in needles:
        assert needle in err[0], (needle, err[0])


def _wav_with(path: Path, samples: np.ndarray, rate: int = 16000) -> Path:
    sf.write(path, samples.astype(np.float32), rate, subtype="FLOAT")
    return path


def _empty_dir(d: Path) -> Path:
    (d / "empty_dir").mkdir()
    return d / "empty_dir"


def _corrupt(d: Path) -> Path:
    (d / "bad.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    return d / "bad.wav"


@pytest.mark.parametrize(
    "make, needle",
    [
        (lambda d: d / "missing.wav", "no such file"),
        (_empty_dir, "no audio files found"),
        (_corrupt, "cannot read audio"),
        (lambda d: _wav_with(d / "empty.wav", np.zeros(0)), "no samples"),
        (lambda d: _wav_with(d / "short.wav", np.zeros(10)), "shorter than one frame (10 samples < hop 16"),
        (lambda d: _wav_with(d / "nan.wav", np.array([0.1, np.nan] * 100)), "NaN"),
    ],
    ids=["missing", "no-audio-folder", "corrupt", "empty", "short", "nan"],
)
def test_bad_audio_input(run, tmp_path, make, needle):
    source = make(tmp_path)
    code, _, err = run("encode", source, "-o", tmp_path / "out")
    assert code != 0
    _one_error(err, str(source), needle)
    assert not list((tmp_path / "out").rglob("*.svqt")) if (tmp_path / "out").exists() else True


def test_output_that_is_an_input_is_refused(run, tmp_path):
    write_noise(tmp_path / "a.wav", 3000)
    before = (tmp_path / "a.wav").read_bytes()
    code, _, err = run("encode", tmp_path / "a.wav", "-o", tmp_path / "a.wav")
    assert code != 0
    _one_error(err, str(tmp_path / "a.wav"), "output path is an input file")
    assert (tmp_path / "a.wav").read_bytes() == before


def test_several_inputs_need_an_output_folder(run, tmp_path):
    write_noise(tmp_path / "a.wav", 3000)
    write_noise(tmp_path / "b.wav", 3000)
    code, _, err = run("encode", tmp_path / "a.wav", tmp_path / "b.wav", "-o", tmp_path / "x.svqt")
    assert code != 0 and not (tmp_path / "x.svqt").exists()
    _one_error(err, "x.svqt", "need an output folder")


def test_folder_run_reports_every_failure_and_continues(run, tmp_path):
    write_noise(tmp_path / "in" / "good.wav", 3000)
    write_noise(tmp_path / "in" / "short.wav", 5)
    (tmp_path / "in" / "corrupt.flac").write_bytes(b"fLaC garbage")
    code, out, err = run("encode", tmp_path / "in", "-o", tmp_path / "tok")
    assert code == 1
    assert len(err) == 2 and any("short.wav" in e for e in err) and any("corrupt.flac" in e for e in err)
    assert (tmp_path / "tok" / "good.svqt").is_file() and "failed 2" in out
    assert no_temp_files(tmp_path / "tok")


def test_tokens_of_another_model(run, tmp_path):
    write_noise(tmp_path / "a.wav", 3000)
    other = tmp_path / "other_model"
    tiny_model(seed=1).save_pretrained(other)
    run("encode", tmp_path / "a.wav", "-o", tmp_path / "a.svqt", model=other)
    code, _, err = run("decode", tmp_path / "a.svqt", "-o", tmp_path / "a_out.wav")
    assert code != 0 and not (tmp_path / "a_out.wav").exists()
    _one_error(err, str(tmp_path / "a.svqt"), "made by model")
    code, _, err = run("decode", tmp_path / "a.svqt", "-o", tmp_path / "a_out.wav", "--force")
    assert code == 0 and sf.info(str(tmp_path / "a_out.wav")).frames == 3000


def test_truncated_token_file(run, tmp_path):
    write_noise(tmp_path / "a.wav", 3000)
    run("encode", tmp_path / "a.wav", "-o", tmp_path / "a.svqt")
    data = (tmp_path / "a.svqt").read_bytes()
    (tmp_path / "a.svqt").write_bytes(data[:-10])
    code, _, err = run("decode", tmp_path / "a.svqt", "-o", tmp_path / "dec")
    assert code != 0
    _one_error(err, str(tmp_path / "a.svqt"), "truncated")
    assert not list((tmp_path / "dec").rglob("*")) if (tmp_path / "dec").exists() else True


def test_missing_builtin_model_is_one_clear_line(run, tmp_path, monkeypatch):
    from simvq_audio.models import pretrained

    monkeypatch.setattr(pretrained, "builtin_model_dir", lambda name: tmp_path / "no_such_model" / name)
    write_noise(tmp_path / "a.wav", 3000)
    code, _, err = run("encode", tmp_path / "a.wav", "-o", tmp_path / "a.svqt", model=None)
    assert code != 0
    _one_error(err, "built-in model 'default' is not installed", "--model")


def test_help_runs_as_a_subprocess():
    result = subprocess.run([sys.executable, str(REPO / "cli.py"), "--help"], capture_output=True, text=True,
                            timeout=120, cwd=REPO)
    assert result.returncode == 0 and "encode" in result.stdout and "decode" in result.stdout
