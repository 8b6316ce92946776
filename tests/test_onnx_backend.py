"""The onnx backend of the Tokenizer and of `encode` / `decode`: torch's codes and audio, the graph cache, the
fallback for short inputs, and one-line errors for options that do not go together."""

import numpy as np
import pytest
import soundfile as sf
import torch

pytest.importorskip("onnxruntime", reason="the onnx extra (pip install -e '.[onnx]') is not installed")

from conftest import SHARED_DATA  # noqa: E402
from test_onnx import SR, tiny_codec, voice  # noqa: E402

from simvq_audio.cli import main  # noqa: E402
from simvq_audio.inference import BackendError, Tokenizer  # noqa: E402
from simvq_audio.inference.backends import onnx_cache_dir  # noqa: E402
from simvq_audio.onnx import OnnxCodec, OnnxModelError, export_onnx  # noqa: E402
from simvq_audio.tokens.format import read_tokens  # noqa: E402

# docs/onnx.md: codes differ from torch's only on near-ties (2 of 87,167 on dev speech), audio by float32 rounding.
MAX_CODE_DIFFERENCES = 1e-3
MIN_AUDIO_SNR_DB = 50.0


def snr_db(reference: torch.Tensor, other: torch.Tensor) -> float:
    return 10 * float(torch.log10(reference.pow(2).sum() / (reference - other).pow(2).sum().clamp_min(1e-30)))


def speech(n_files: int = 3, seconds: float = 4.0) -> list[np.ndarray]:
    """Real speech from the dev set, or harmonic tones without the data."""
    if not (SHARED_DATA / "dev").is_dir():
        return [voice(int(seconds * SR), i, f0=110.0 + 30 * i)[0, 0].numpy() for i in range(n_files)]
    from simvq_audio.audio.io import find_audio_files, load_audio

    files = sorted(find_audio_files(SHARED_DATA / "dev"))[:n_files]
    return [load_audio(f, SR, 1).samples[0, : int(seconds * SR)] for f in files]


@pytest.fixture(scope="module")
def codec():
    return tiny_codec()


@pytest.fixture(scope="module")
def graphs(codec, tmp_path_factory):
    directory = tmp_path_factory.mktemp("graphs")
    export_onnx(codec, directory)
    return directory


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "simvq-audio" / "onnx"


def test_onnx_tokenizer_gives_torch_codes_and_audio_on_speech(codec, graphs):
    # Windows of 1 s with context: several windows per item, decoded both in equal-length batches and padded.
    kwargs = {"chunk_seconds": 1.0, "context_seconds": 0.25, "batch_size": 4}
    torch_tok = Tokenizer(codec, **kwargs)
    onnx_tok = Tokenizer(codec, backend="onnx", onnx_dir=graphs, threads=1, **kwargs)
    assert isinstance(onnx_tok.batcher.model, OnnxCodec) and onnx_tok.model is codec and onnx_tok.backend == "onnx"
    assert onnx_tok.spec == torch_tok.spec and onnx_tok.device.type == "cpu"
    items = speech()
    items[1] = items[1][: len(items[1]) - 1234]  # lengths that are not a multiple of the hop, nor equal
    batch = onnx_tok.encode_batch(items)
    reference = torch_tok.encode_batch(items)
    differ = int((batch.audio_codes != reference.audio_codes).sum())
    assert differ <= MAX_CODE_DIFFERENCES * int(reference.padding_mask.sum()) * codec.n_codebooks
    assert torch.equal(batch.padding_mask, reference.padding_mask)
    assert torch.equal(onnx_tok.encode(items[0]), batch.unpad()[0])
    ours, theirs = onnx_tok.decode_batch(reference), torch_tok.decode_batch(reference)
    for a, b, x in zip(ours, theirs, items, strict=True):
        assert a.shape == b.shape == (1, len(x))
        assert snr_db(b, a) > MIN_AUDIO_SNR_DB


def test_cache_folder_is_keyed_by_model_id_and_reused(codec, cache, monkeypatch):
    first = Tokenizer(codec, backend="onnx", threads=1)
    assert first.onnx_dir == onnx_cache_dir(codec.model_id) == cache / codec.model_id
    stamp = (first.onnx_dir / "encoder.onnx").stat().st_mtime_ns

    def no_export(*args, **kwargs):
        raise AssertionError("the cached graphs should have been reused")

    with monkeypatch.context() as patch:
        patch.setattr("simvq_audio.onnx.export_onnx", no_export)
        again = Tokenizer(codec, backend="onnx", threads=1)
    assert again.onnx_dir == first.onnx_dir and (again.onnx_dir / "encoder.onnx").stat().st_mtime_ns == stamp
    other = tiny_codec(seed=3)
    assert Tokenizer(other, backend="onnx", threads=1).onnx_dir == cache / other.model_id != first.onnx_dir
    assert sorted(p.name for p in cache.iterdir()) == sorted([codec.model_id, other.model_id])  # no temporary folders


def test_graphs_cached_by_an_older_version_are_exported_again(codec, cache):
    """Format 1 graphs (no pitch graph, no window inputs) still load from a folder a user names, but the
    cache replaces them, so a model with harmonics gets the graphs that continue their phase across windows."""
    import json

    first = Tokenizer(codec, backend="onnx", threads=1)
    manifest_path = first.onnx_dir / "onnx.json"
    manifest = json.loads(manifest_path.read_text())
    assert manifest["format_version"] == 2
    manifest["format_version"] = 1
    manifest_path.write_text(json.dumps(manifest))
    assert OnnxCodec(first.onnx_dir, threads=1).model_id == codec.model_id  # readable as it is
    Tokenizer(codec, backend="onnx", threads=1)
    assert json.loads(manifest_path.read_text())["format_version"] == 2


def test_a_killed_export_leaves_no_folder(codec, cache, monkeypatch):
    def killed(model, directory):
        (directory / "encoder.onnx").write_bytes(b"half")
        raise KeyboardInterrupt

    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr("simvq_audio.onnx.export_onnx", killed)
        Tokenizer(codec, backend="onnx")
    assert list(cache.iterdir()) == []
    assert (Tokenizer(codec, backend="onnx", threads=1).onnx_dir / "onnx.json").is_file()


def test_new_or_empty_onnx_dir_is_exported_into(codec, tmp_path):
    (tmp_path / "empty").mkdir()
    for directory in (tmp_path / "new" / "graphs", tmp_path / "empty"):
        tok = Tokenizer(codec, backend="onnx", onnx_dir=directory, threads=1)
        assert tok.onnx_dir == directory and OnnxCodec(directory).model_id == codec.model_id


def test_input_shorter_than_the_graphs_take_goes_through_the_torch_codec(codec, graphs):
    onnx_tok, torch_tok = Tokenizer(codec, backend="onnx", onnx_dir=graphs, threads=1), Tokenizer(codec)
    runner = onnx_tok.batcher.model
    short = voice(runner.min_samples - 1, 4)[0, 0].numpy()
    assert short.shape[-1] >= onnx_tok.hop_length
    codes = onnx_tok.encode(short)
    assert codes.shape[-1] < runner.min_frames and torch.equal(codes, torch_tok.encode(short))
    assert torch.equal(onnx_tok.decode(codes), torch_tok.decode(codes))
    longer = voice(3000, 5)[0, 0].numpy()
    batch = onnx_tok.encode_batch([short, longer])
    assert torch.equal(batch.unpad()[0], codes) and torch.equal(batch.unpad()[1], torch_tok.encode(longer))


def test_options_that_do_not_go_together_are_clear_errors(codec, graphs, tmp_path):
    with pytest.raises(BackendError, match="CPU only"):
        Tokenizer(codec, backend="onnx", device="cuda")
    with pytest.raises(BackendError, match="onnx backend"):
        Tokenizer(codec, onnx_dir=graphs)
    with pytest.raises(BackendError, match="torch.set_num_threads"):
        Tokenizer(codec, threads=2)
    with pytest.raises(BackendError, match="at least 1"):
        Tokenizer(codec, backend="onnx", onnx_dir=graphs, threads=0)
    with pytest.raises(BackendError, match="unknown backend"):
        Tokenizer(codec, backend="tensorrt")
    with pytest.raises(OnnxModelError, match=f"{graphs}.*not of the model loaded"):
        Tokenizer(tiny_codec(seed=3), backend="onnx", onnx_dir=graphs)
    (tmp_path / "notes.txt").write_text("not graphs")
    with pytest.raises(OnnxModelError, match="no onnx.json"):
        Tokenizer(codec, backend="onnx", onnx_dir=tmp_path)


# -- the command line ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model_dir(codec, tmp_path_factory):
    path = tmp_path_factory.mktemp("model")
    codec.save_pretrained(path)
    return path


@pytest.fixture
def cli(model_dir, capsys):
    """Run the CLI with the tiny model; returns (exit code, stderr lines)."""

    def run(*argv) -> tuple[int, list[str]]:
        code = main([str(a) for a in argv] + ["--model", str(model_dir), "-q"])
        return code, [line for line in capsys.readouterr().err.splitlines() if line.strip()]

    return run


def test_cli_onnx_round_trip_writes_torch_codes(cli, graphs, tmp_path):
    (tmp_path / "in").mkdir()
    for i, x in enumerate(speech(2, seconds=3.0)):
        sf.write(tmp_path / "in" / f"{i}.wav", x, SR, subtype="FLOAT")
    assert cli("encode", tmp_path / "in", "-o", tmp_path / "torch", "--threads", "1") == (0, [])
    assert cli("encode", tmp_path / "in", "-o", tmp_path / "onnx", "--backend", "onnx", "--onnx-dir", graphs,
               "--threads", "1") == (0, [])
    for name in ("0.svqt", "1.svqt"):
        ours, theirs = read_tokens(tmp_path / "onnx" / name), read_tokens(tmp_path / "torch" / name)
        assert ours.header == theirs.header
        assert np.mean(ours.codes != theirs.codes) <= MAX_CODE_DIFFERENCES
    assert cli("decode", tmp_path / "torch", "-o", tmp_path / "wav-torch", "--threads", "1") == (0, [])
    assert cli("decode", tmp_path / "torch", "-o", tmp_path / "wav-onnx", "--backend", "onnx", "--onnx-dir", graphs,
               "--threads", "1") == (0, [])
    for name in ("0.wav", "1.wav"):
        a, rate = sf.read(tmp_path / "wav-onnx" / name, dtype="float32")
        b, _ = sf.read(tmp_path / "wav-torch" / name, dtype="float32")
        assert rate == SR and a.shape == b.shape
        assert snr_db(torch.from_numpy(b), torch.from_numpy(a)) > MIN_AUDIO_SNR_DB


@pytest.mark.parametrize("argv, problem", [
    (["--backend", "onnx", "--device", "cuda"], "CPU only"),
    (["--onnx-dir", "{graphs}"], "--onnx-dir needs --backend onnx"),
    (["--backend", "onnx", "--threads", "0"], "--threads must be at least 1"),
])
def test_cli_refuses_options_that_do_not_go_together(cli, graphs, tmp_path, argv, problem):
    sf.write(tmp_path / "a.wav", voice(2000, 1)[0, 0].numpy(), SR)
    code, err = cli("encode", tmp_path / "a.wav", "-o", tmp_path / "a.svqt", *[a.format(graphs=graphs) for a in argv])
    assert code == 1 and len(err) == 1 and problem in err[0], err
    assert not (tmp_path / "a.svqt").exists()


def test_cli_refuses_graphs_of_another_model(cli, tmp_path):
    other = tmp_path / "other-graphs"
    export_onnx(tiny_codec(seed=3), other)
    sf.write(tmp_path / "a.wav", voice(2000, 1)[0, 0].numpy(), SR)
    assert cli("encode", tmp_path / "a.wav", "-o", tmp_path / "a.svqt", "--threads", "1") == (0, [])
    for command, source, output in (("encode", tmp_path / "a.wav", tmp_path / "b.svqt"),
                                    ("decode", tmp_path / "a.svqt", tmp_path / "b.wav")):
        code, err = cli(command, source, "-o", output, "--backend", "onnx", "--onnx-dir", other)
        assert code == 1 and len(err) == 1, err
        assert str(other) in err[0] and "not of the model loaded" in err[0]
        assert not output.exists()
