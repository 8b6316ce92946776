"""The rough edges of the file commands: outputs checked before any compute, one named output never
silently skipped, whole-file validation in ``info``, and messages."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from simvq_audio.cli import main
from simvq_audio.commands import common
from simvq_audio.models.codec import CodecConfig, SimVQCodec
from simvq_audio.modules.seanet import SEANetConfig
from simvq_audio.quantization.builder import QuantizerConfig


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    cfg = CodecConfig(sample_rate=16000, seanet=SEANetConfig(n_filters=8, ratios=(4, 4), dimension=16, lstm=0),
                      quantizer=QuantizerConfig(codebook_size=64, dim=8))
    path = tmp_path_factory.mktemp("model")
    SimVQCodec(cfg).save_pretrained(path)
    return path


@pytest.fixture
def run(model_dir, capsys):
    """The CLI with the tiny model on CPU: (exit code, stdout, stderr lines)."""

    def _run(*argv) -> tuple[int, str, list[str]]:
        args = [str(a) for a in argv]
        if args[0] in ("encode", "decode"):
            args += ["--model", str(model_dir), "--device", "cpu"]
        code = main(args)
        out, err = capsys.readouterr()
        return code, out, [line for line in err.splitlines() if line.strip()]

    return _run


def noise(path: Path, n: int = 3000, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (np.random.default_rng(seed).standard_normal(n) * 0.1).astype(np.float32), 16000)
    return path


def no_model_load(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the model was loaded: compute was about to be spent")

    monkeypatch.setattr(common, "load_tokenizer", fail)


# -- item 8: unwritable outputs are found before any compute -----------------------------------------
def test_output_under_a_file_is_refused_before_the_model_loads(run, tmp_path, monkeypatch):
    noise(tmp_path / "in" / "a.wav")
    (tmp_path / "blocker").write_text("a file, not a folder")
    no_model_load(monkeypatch)
    code, _, err = run("encode", tmp_path / "in", "-o", tmp_path / "blocker" / "tokens")
    assert code == 1 and len(err) == 1
    assert str(tmp_path / "blocker" / "tokens") in err[0] and "is not a folder" in err[0]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can write anywhere")
def test_read_only_output_folder_is_refused_before_the_model_loads(run, tmp_path, monkeypatch):
    noise(tmp_path / "in" / "a.wav")
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    no_model_load(monkeypatch)
    try:
        code, _, err = run("encode", tmp_path / "in", "-o", out / "sub")
    finally:
        out.chmod(0o755)
    assert code == 1 and len(err) == 1 and "not writable" in err[0]


def test_check_writable_reports_the_system_reason(tmp_path, monkeypatch):
    import tempfile

    def refuse(**kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(common.SimVQError, match=r"out: output folder is not writable .*Permission denied"):
        common.check_writable([common.Job(tmp_path / "a.wav", tmp_path / "out" / "a.svqt")])
    assert not (tmp_path / "out").exists()  # nothing created by the check


# -- item 10: one named output that exists is refused -------------------------------------------------
def test_existing_named_output_file_is_refused_without_overwrite(run, tmp_path, monkeypatch):
    noise(tmp_path / "a.wav")
    (tmp_path / "a.svqt").write_bytes(b"keep me")
    code, out, err = run("encode", tmp_path / "a.wav", "-o", tmp_path / "a.svqt")
    assert code == 1 and len(err) == 1 and "a.svqt: output file exists; pass --overwrite" in err[0]
    assert (tmp_path / "a.svqt").read_bytes() == b"keep me"
    code, _, _ = run("encode", tmp_path / "a.wav", "-o", tmp_path / "a.svqt", "--overwrite")
    assert code == 0 and (tmp_path / "a.svqt").read_bytes()[:4] == b"SVQT"
    (tmp_path / "a.wav.out.wav").write_bytes(b"keep me too")
    code, _, err = run("decode", tmp_path / "a.svqt", "-o", tmp_path / "a.wav.out.wav")
    assert code == 1 and "output file exists; pass --overwrite" in err[0]
    code, out, _ = run("encode", tmp_path / "a.wav", "-o", tmp_path / "folder")  # folders still skip
    assert code == 0 and run("encode", tmp_path / "a.wav", "-o", tmp_path / "folder")[1].find("skipped 1") >= 0


# -- item 9: info validates the whole file --------------------------------------------------------------
def _tokens(run, tmp_path) -> tuple[Path, bytes]:
    noise(tmp_path / "a.wav")
    assert run("encode", tmp_path / "a.wav", "-o", tmp_path / "a.svqt")[0] == 0
    return tmp_path / "a.svqt", (tmp_path / "a.svqt").read_bytes()


def _with_n_frames(data: bytes, n_frames: int) -> bytes:
    import json
    import struct

    length = struct.unpack_from("<I", data, 6)[0]
    header = json.loads(data[10 : 10 + length])
    header["n_frames"] = n_frames
    body = json.dumps(header).encode()
    return struct.pack("<4sHI", b"SVQT", 1, len(body)) + body + data[10 + length :]


@pytest.mark.parametrize("damage, needle", [
    (lambda d: d[:-3], "truncated payload"),
    (lambda d: d + b"\0\0", "corrupt payload"),
    (lambda d: _with_n_frames(d, 10**12), "truncated payload"),
], ids=["truncated", "trailing-bytes", "huge-n_frames"])
def test_info_checks_the_whole_file(run, tmp_path, damage, needle):
    path, data = _tokens(run, tmp_path)
    assert run("info", path)[0] == 0
    path.write_bytes(damage(data))
    code, out, err = run("info", path)
    assert code == 1 and out == "" and len(err) == 1 and str(path) in err[0] and needle in err[0]


# -- item 13: a run without the real-speech data says so ------------------------------------------------
def test_missing_real_speech_data_is_announced(tmp_path, monkeypatch):
    import conftest

    monkeypatch.setattr(conftest, "SHARED_DATA", tmp_path / "shared" / "data")
    header = conftest.pytest_report_header(None)
    assert "NOT FOUND" in header and str(tmp_path / "shared" / "data") in header

    class Report:
        longrepr = ("tests/x.py", 1, f"Skipped: real speech not found at {tmp_path}")

    class Reporter:
        stats = {"skipped": [Report(), Report()]}
        lines: list[str] = []

        def write_line(self, line, **markup):
            self.lines.append(line)

    reporter = Reporter()
    conftest.pytest_terminal_summary(reporter, 0, None)
    assert reporter.lines and reporter.lines[0].startswith("2 real-speech tests SKIPPED")


def test_train_with_a_missing_manifest_names_the_key_to_override(tmp_path, capsys):
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "tiny" / "config.yaml"
    code = main(["train", "--config", str(recipe), f"logging.dir={tmp_path / 'run'}",
                 f"data.train_manifest={tmp_path / 'missing.jsonl'}"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 1 and len(err) == 1
    assert "missing.jsonl: training manifest not found" in err[0] and "data.train_manifest=PATH" in err[0]
    assert not (tmp_path / "run").exists()  # found before the run folder is made


# -- item 14: messages ------------------------------------------------------------------------------------
def test_summary_reads_well_at_every_scale_and_leaves_out_model_loading(monkeypatch):
    clock = iter([110.0, 112.0])  # started at 100: model loaded after 10 s, then 2 s of work
    monkeypatch.setattr(common.time, "perf_counter", lambda: next(clock))
    summary = common.Summary("encoded", done=1, seconds=4.4, tokens=352, started=100.0)
    summary.model_loaded()
    line = summary.line()
    assert "4.4 s of audio" in line and "(model loaded in 10.0 s)" in line and "2.2x real time" in line
    assert [common.format_duration(s) for s in (4.4, 150, 7200)] == ["4.4 s", "2.5 min", "2.00 h"]


def test_progress_lines_when_stderr_is_not_a_terminal(run, tmp_path, monkeypatch):
    monkeypatch.setattr(common, "PROGRESS_LINE_SECONDS", 0.0)
    noise(tmp_path / "in" / "a.wav", 16000)
    code, _, err = run("encode", tmp_path / "in", "-o", tmp_path / "tok")
    assert code == 0 and err and all(line.startswith("encoding: ") and "s of audio" in line for line in err)
    code, _, err = run("encode", tmp_path / "in", "-o", tmp_path / "tok2", "-q")
    assert code == 0 and err == []


def test_ctrl_c_prints_what_was_finished(run, tmp_path, monkeypatch):
    from simvq_audio.inference import Tokenizer

    for i in range(3):
        noise(tmp_path / "in" / f"{i}.wav", 3000 + i, seed=i)
    real = Tokenizer.save_tokens
    written = []

    def save_then_stop(path, token_file):
        if len(written) == 2:
            raise KeyboardInterrupt
        real(path, token_file)
        written.append(path)

    monkeypatch.setattr(Tokenizer, "save_tokens", staticmethod(save_then_stop))
    code, out, err = run("encode", tmp_path / "in", "-o", tmp_path / "tok", "--batch-size", "1")
    assert code == 130 and "interrupted: encoded 2 files" in out and err[-1].endswith("interrupted")


def test_the_same_input_twice_is_encoded_once(run, tmp_path):
    noise(tmp_path / "in" / "a.wav")
    code, out, err = run("encode", tmp_path / "in" / "a.wav", tmp_path / "in", tmp_path / "in" / "a.wav",
                         "-o", tmp_path / "tok")
    assert code == 0 and err == [] and "encoded 1 file," in out
    assert [p.name for p in (tmp_path / "tok").iterdir()] == ["a.svqt"]


def test_another_models_tokens_name_the_force_flag(run, tmp_path, model_dir):
    from simvq_audio.inference import Tokenizer
    from simvq_audio.tokens.format import read_tokens

    path, _ = _tokens(run, tmp_path)
    torch.manual_seed(1)
    other = Tokenizer(SimVQCodec(SimVQCodec.from_pretrained(model_dir).config))
    with pytest.raises(Exception, match=r"--force"):
        other.decode_tokens(read_tokens(path), name=str(path))


def test_zero_frame_token_file_names_the_file(run, tmp_path, model_dir):
    import dataclasses

    from simvq_audio.tokens.format import read_tokens, write_tokens

    path, _ = _tokens(run, tmp_path)
    header = read_tokens(path).header
    empty = dataclasses.replace(header, n_frames=0, n_samples=0, original_n_samples=0)
    write_tokens(tmp_path / "empty.svqt", np.zeros((1, 0), np.uint16), empty)
    code, _, err = run("decode", tmp_path / "empty.svqt", tmp_path / "a.svqt", "-o", tmp_path / "dec")
    assert code == 1 and len(err) == 1 and err[0].split(": error: ")[1].startswith(str(tmp_path / "empty.svqt"))
    assert "no frames" in err[0] and (tmp_path / "dec" / "a.wav").is_file()


def test_metrics_jsonl_holds_each_step_once_after_a_resume(tmp_path):
    import json
    from types import SimpleNamespace

    from simvq_audio.training.tracking import METRICS_NAME, RunLogger

    acc = SimpleNamespace(is_main_process=True)
    first = RunLogger(acc, tmp_path, {}, tensorboard=False)
    for step in (50, 100, 150, 200):
        first.log({"loss": 1.0 / step}, step)
    first.close()
    with open(tmp_path / METRICS_NAME, "a") as f:
        f.write('{"step": 250, "lo')  # torn by kill -9
    resumed = RunLogger(acc, tmp_path, {}, tensorboard=False)  # resumed from the checkpoint at step 100
    for step in (150, 200, 250):
        resumed.log({"loss": 2.0}, step)
    resumed.close()
    rows = [json.loads(line) for line in (tmp_path / METRICS_NAME).read_text().splitlines()]
    assert [r["step"] for r in rows] == [50, 100, 150, 200, 250] and rows[2]["loss"] == 2.0


def test_missing_training_file_is_reported_as_not_found(tmp_path):
    from simvq_audio.data.dataset import AudioDataset
    from simvq_audio.data.manifest import ManifestEntry

    good = noise(tmp_path / "good.wav", 16000)
    dataset = AudioDataset([ManifestEntry(path=tmp_path / "gone.wav", duration=1.0),
                            ManifestEntry(path=good, duration=1.0)], 16000, 0.5)
    item = dataset[0]
    assert item["skipped"] == 1
    assert dataset._bad[tmp_path / "gone.wav"] == f"{tmp_path / 'gone.wav'}: file not found"
