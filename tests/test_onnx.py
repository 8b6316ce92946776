"""ONNX export: a tiny seeded source-filter codec exported, then run by ONNX Runtime against torch."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime", reason="the onnx extra (pip install -e '.[onnx]') is not installed")

from conftest import SHARED_DATA  # noqa: E402

from simvq_audio.inference.batching import Batcher, BatchSettings  # noqa: E402
from simvq_audio.models.codec import CodecConfig, SimVQCodec  # noqa: E402
from simvq_audio.modules.seanet import SEANetConfig  # noqa: E402
from simvq_audio.onnx.export import export_onnx  # noqa: E402
from simvq_audio.onnx.graphs import DecoderGraph, EncoderGraph, GraphYin, fold_weight_norm, min_samples  # noqa: E402
from simvq_audio.onnx.runtime import OnnxCodec, OnnxModelError  # noqa: E402
from simvq_audio.quantization.builder import QuantizerConfig  # noqa: E402

SR, HOP = 16000, 40


def tiny_codec(seed=0, n_q=2, **head) -> SimVQCodec:
    """Every pitch part on, the ones that start at zero given seeded weights (as after training);
    ``head``: the pitch head's shape (``pitch_head_kernel=5`` ...)."""
    torch.manual_seed(seed)
    cfg = CodecConfig(sample_rate=SR, seanet=SEANetConfig(n_filters=4, ratios=(5, 4, 2), dimension=8, lstm=1),
                      quantizer=QuantizerConfig(codebook_size=64, dim=4, n_q=n_q), pitch_head=True,
                      pitch_features=True, excitation_harmonics=4, harmonic_branch=6, **head)
    codec = SimVQCodec(cfg)
    with torch.no_grad():
        for p in (*codec.pitch_proj.parameters(), *codec.decoder.inject.parameters(),
                  codec.harmonic.amplitudes.weight):
            p.normal_(std=0.3)
        codec.harmonic.amplitudes.bias.fill_(-1.0)
        codec.pitch_head.net[-1].bias.copy_(torch.tensor([2.0, 0.5]))  # voiced, ~140 Hz: the sines are on
    return codec.eval()


def voice(n: int, seed: int, f0: float = 140.0) -> torch.Tensor:
    """A gliding harmonic tone with noise, ``[1, 1, n]``: YIN finds it voiced."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / SR
    phase = 2 * torch.pi * torch.cumsum(torch.full((n,), f0) * (1 + 0.3 * torch.sin(2 * torch.pi * t)), 0) / SR
    x = sum(torch.sin(k * phase) / k for k in range(1, 6)) * 0.2 + 0.01 * torch.randn(n, generator=g)
    return x.float()[None, None]


def padded_voices(runtime, lengths=(1234, 2345, 801)):
    """Three voices of ``lengths`` samples, zero-padded into one batch, and their codes and frames by ``runtime``."""
    lengths = list(lengths)
    audio = torch.zeros(len(lengths), 1, max(lengths))
    for i, n in enumerate(lengths):
        audio[i, :, :n] = voice(n, i)
    codes = runtime.encode(audio, lengths=torch.tensor(lengths))
    return lengths, audio, codes, [-(-n // HOP) for n in lengths]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    codec = tiny_codec()
    directory = tmp_path_factory.mktemp("onnx")
    manifest = export_onnx(codec, directory)
    return codec, directory, manifest


def test_folder_has_both_graphs_config_and_id(exported):
    codec, directory, manifest = exported
    names = {p.name for p in directory.iterdir()}
    assert {"encoder.onnx", "decoder.onnx", "config.json", "onnx.json"} <= names
    assert json.loads((directory / "config.json").read_text())["model_id"] == codec.model_id == manifest["model_id"]
    assert manifest["min_samples"] == min_samples(codec) and manifest["hop_length"] == HOP
    onnx = pytest.importorskip("onnx")
    for name in ("encoder.onnx", "decoder.onnx"):
        onnx.checker.check_model(str(directory / name))


@pytest.mark.parametrize("seed", range(4))
def test_codes_and_audio_equal_torch_for_random_lengths_and_batches(exported, seed):
    codec, directory, _ = exported
    rng = np.random.default_rng(seed)
    batch, n = int(rng.integers(1, 4)), int(rng.integers(min_samples(codec), 4000))
    audio = torch.cat([voice(n, seed * 10 + i, f0=100 + 40 * i) for i in range(batch)])
    runtime = OnnxCodec(directory, threads=1)
    codes = codec.encode(audio)
    assert torch.equal(runtime.encode(audio), codes)
    assert codes.shape[-1] == -(-n // HOP)
    reference = codec.decode(codes, n)
    ours = runtime.decode(codes, n)
    assert ours.shape == reference.shape == (batch, 1, n)
    assert (ours - reference).abs().max() < 1e-4 * max(1.0, float(reference.abs().max()))


def test_padded_batch_items_equal_items_alone(exported):
    codec, directory, _ = exported
    runtime = OnnxCodec(directory, threads=1)
    lengths, audio, codes, frames = padded_voices(runtime)
    for i, n in enumerate(lengths):
        assert torch.equal(codes[i, :, :frames[i]], codec.encode(audio[i:i + 1, :, :n])[0])
    audio_out = runtime.decode(codes, frame_lengths=frames)
    for i, t in enumerate(frames):
        alone = codec.decode(codes[i:i + 1, :, :t])[0]
        assert (audio_out[i, :, :t * HOP] - alone).abs().max() < 1e-4
        assert torch.all(audio_out[i, :, t * HOP:] == 0)


def test_a_wide_pitch_head_exports_and_padded_items_equal_items_alone(tmp_path):
    """A pitch head of two kernel-5 layers (``fit-pitch-head --kernel 5 --layers 2``): the decoder graph and
    the pitch graph equal torch, and a padded batch gives each item what it gets alone."""
    codec = tiny_codec(seed=3, pitch_head_width=12, pitch_head_kernel=5, pitch_head_layers=2)
    assert codec.pitch_head.context == 4
    export_onnx(codec, tmp_path)
    runtime = OnnxCodec(tmp_path, threads=1)
    lengths, audio, codes, frames = padded_voices(runtime)
    audio_out = runtime.decode(codes, frame_lengths=frames)
    torch_out = codec.decode(codes, frame_lengths=torch.tensor(frames))
    for i, t in enumerate(frames):
        alone = codec.decode(codes[i:i + 1, :, :t])[0]
        tolerance = 2e-4 * max(1.0, float(alone.abs().max()))  # float32 rounding in ONNX Runtime
        assert (audio_out[i, :, :t * HOP] - alone).abs().max() < tolerance
        assert (torch_out[i, :, :t * HOP] - alone).abs().max() < 1e-5
        for ours, theirs in zip(runtime.predict_pitch(codes[i:i + 1, :, :t]), codec.predict_pitch(codes[i:i + 1, :, :t]), strict=True):
            assert torch.allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_shortest_input_works_and_shorter_is_a_clear_error(exported):
    codec, directory, manifest = exported
    runtime = OnnxCodec(directory, threads=1)
    n = manifest["min_samples"]
    x = voice(n, 5)
    assert torch.equal(runtime.encode(x), codec.encode(x))
    with pytest.raises(OnnxModelError, match="at least"):
        runtime.encode(x[..., :n - 1])
    with pytest.raises(OnnxModelError, match="frames"):
        runtime.decode(torch.zeros(1, 2, manifest["min_frames"] - 1, dtype=torch.long))
    with pytest.raises(OnnxModelError, match=r"\[0, 64\)"):
        runtime.decode(torch.full((1, 2, 8), 64))


def test_fallback_codec_takes_inputs_too_short_for_the_graphs(exported):
    codec, directory, manifest = exported
    runtime = OnnxCodec(directory, threads=1, fallback=codec)
    x = voice(manifest["min_samples"] - 1, 6)
    codes = runtime.encode(x)
    assert torch.equal(codes, codec.encode(x))
    assert torch.equal(runtime.decode(codes), codec.decode(codes))
    with pytest.raises(OnnxModelError, match="fallback"):
        OnnxCodec(directory, fallback=tiny_codec(seed=3))


def test_numpy_in_numpy_out(exported):
    codec, directory, _ = exported
    runtime = OnnxCodec(directory, threads=1)
    x = voice(1000, 3)
    codes = runtime.encode(x.numpy())
    assert isinstance(codes, np.ndarray) and codes.dtype == np.int64
    assert isinstance(runtime.decode(codes, 1000), np.ndarray)


def test_graphs_in_torch_equal_the_codec_and_folding_leaves_it_working():
    codec = tiny_codec(seed=1, n_q=1)
    x = torch.cat([voice(2222, 1), voice(2222, 2, f0=210.0)])
    with torch.no_grad():
        codes = codec.encode(x)
        assert torch.equal(EncoderGraph(codec)(x), codes)
        # pow(2, x) for exp2 moves the F0 by an ulp; the sines' phase drifts by ~1e-4 rad over 2,222 samples.
        assert (DecoderGraph(codec)(codes) - codec.decode(codes)).abs().max() < 1e-4
        before = codec.decode(codes)
        # The graphs fold copies; the codec keeps its weight norm and its outputs.
        assert torch.equal(codec.decode(codes), before)
        folded = fold_weight_norm(codec)
        assert not any("parametrizations" in k for k in folded.state_dict())
        assert torch.equal(folded.encode(x), codes) and torch.equal(folded.decode(codes), before)


@pytest.mark.parametrize("source_harmonics,phase,bands,soft", [(0, "learned", 0, False), (30, "learned", 0, False),
                                                               (30, "noise", 0, False), (30, "noise", 9, True)])
def test_vocos_decoder_graph_equals_torch_for_any_length(tmp_path, source_harmonics, phase, bands, soft):
    """The Vocos decoder's graph (inverse DFT as products, overlap-add as a transposed convolution)
    decodes as torch does, harmonic branch and source-filter head (its STFT as a strided convolution)
    included, for lengths down to one frame and batches."""
    from simvq_audio.modules.vocos import DecoderConfig

    torch.manual_seed(1)
    cfg = CodecConfig(sample_rate=SR, seanet=SEANetConfig(n_filters=4, ratios=(5, 4, 2), dimension=8, lstm=0),
                      quantizer=QuantizerConfig(codebook_size=16, dim=4), pitch_head=True, pitch_features=True,
                      harmonic_branch=6, excitation_harmonics=source_harmonics, soft_voicing=soft,
                      decoder=DecoderConfig(kind="vocos", dim=16, intermediate_dim=32, n_layers=2, n_fft=160,
                                            phase=phase, envelope_bands=bands))
    codec = SimVQCodec(cfg).eval()
    with torch.no_grad():
        codec.harmonic.amplitudes.bias.fill_(-1.0)
        codec.pitch_head.net[-1].bias.copy_(torch.tensor([2.0, 0.5]))
        if source_harmonics:  # the source at gain 0.1: a tenth of the output or more
            codec.decoder.head.out.bias[codec.decoder.head.gain_offset:].fill_(-2.3)
    manifest = export_onnx(codec, tmp_path)
    runtime = OnnxCodec(tmp_path, threads=1)
    g = torch.Generator().manual_seed(0)
    for batch, frames in ((1, manifest["min_frames"]), (1, 1), (3, 37), (2, 200)):
        if frames < manifest["min_frames"]:
            continue
        codes = torch.randint(0, 16, (batch, 1, frames), generator=g)
        reference = codec.decode(codes)
        ours = runtime.decode(codes)
        assert ours.shape == reference.shape == (batch, 1, frames * HOP)
        scale = float(reference.abs().max())  # the source's pulses reach ~3: float32 rounding at that scale
        assert scale > 1e-3
        assert torch.allclose(ours, reference, atol=2e-4 * max(scale, 1.0), rtol=1e-4), \
            float((ours - reference).abs().max())
    audio = torch.cat([voice(3000, 5), voice(3000, 6, f0=200.0)])
    assert torch.equal(runtime.encode(audio), codec.encode(audio))
    # Windows of longer items: the harmonics' phase offset and the noise's start frame, as torch takes them.
    assert runtime.takes_phase_offset and codec.takes_phase_offset  # the harmonic branch's sines, at least
    assert runtime.takes_start_frame == codec.takes_start_frame == (phase == "noise")
    codes = torch.randint(0, 16, (2, 1, 60), generator=g)
    place = dict(phase_offset=torch.tensor([1.0, -2.5]), start_frame=torch.tensor([7, 4000]))
    reference = codec.decode(codes, **place)
    assert not torch.allclose(reference, codec.decode(codes), atol=1e-3)
    assert torch.allclose(runtime.decode(codes, **place), reference, atol=2e-4 * max(float(reference.abs().max()), 1.0),
                          rtol=1e-4)
    for ours, theirs in zip(runtime.predict_pitch(codes), codec.predict_pitch(codes), strict=True):
        assert torch.allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    # A long item decoded in windows by ONNX Runtime equals torch's decode of the whole item.
    long = torch.randint(0, 16, (1, 400), generator=g)
    batcher = Batcher(runtime, torch.device("cpu"), BatchSettings(batch_size=2, chunk_frames=120, context_frames=30))
    whole = codec.decode(long[None])[0]
    assert torch.allclose(batcher.decode_items([long])[0], whole, atol=2e-4 * max(float(whole.abs().max()), 1.0),
                          rtol=1e-4)


def test_graph_yin_equals_yin_on_voice():
    codec = tiny_codec()
    x = torch.cat([voice(8000, 1), voice(8000, 2, f0=230.0) * 0.01])
    f0, voiced = codec._yin(x)
    f0_g, voiced_g = GraphYin(SR, HOP)(x.mean(1))
    assert voiced.any() and torch.equal(voiced, voiced_g)
    assert torch.allclose(f0, f0_g, rtol=1e-4, atol=0)


@pytest.mark.skipif(not (SHARED_DATA / "dev").is_dir(), reason=f"real speech: no data at {SHARED_DATA}")
def test_graph_yin_equals_yin_on_real_speech():
    from simvq_audio.audio.io import find_audio_files, load_audio

    codec = tiny_codec()
    files = sorted(find_audio_files(SHARED_DATA / "dev"))[:3]
    for path in files:
        x = torch.from_numpy(load_audio(path, SR, 1).samples)[None]
        f0, voiced = codec._yin(x)
        f0_g, voiced_g = GraphYin(SR, HOP)(x.mean(1))
        assert voiced.float().mean() > 0.2
        assert (voiced != voiced_g).float().mean() < 1e-3
        both = voiced & voiced_g
        assert torch.allclose(f0[both], f0_g[both], rtol=1e-3)


def test_cli_export_onnx_writes_a_checked_folder(tmp_path):
    codec = tiny_codec(n_q=1)
    codec.save_pretrained(tmp_path / "model")
    out = tmp_path / "onnx"
    result = subprocess.run([sys.executable, "-m", "simvq_audio.cli", "export-onnx", "--model", str(tmp_path / "model"),
                             "-o", str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "codes equal torch's" in result.stdout
    assert json.loads((out / "config.json").read_text()) == json.loads((tmp_path / "model" / "config.json").read_text())
    assert OnnxCodec(out).model_id == codec.model_id


def test_check_reports_graphs_of_another_model(exported):
    from simvq_audio.onnx.check import check_export

    codec, directory, _ = exported
    same = check_export(codec, directory)
    assert same["equal_codes"] == same["codes"] and same["snr_db"] > 60
    other = check_export(tiny_codec(seed=7), directory)
    assert other["equal_codes"] < other["codes"] and other["snr_db"] < 40


@pytest.mark.parametrize("n_fft,hop", [(160, 40), (150, 40), (40, 40)], ids=["blocks", "transposed-conv", "one-block"])
def test_graph_istft_overlap_add_equals_the_heads_inverse_stft(tmp_path, n_fft, hop):
    """Shifted block sums (n_fft a multiple of the hop) and the identity transposed convolution (otherwise)
    both invert as ``ISTFTHead.istft`` does, for one frame and many, and as an exported graph."""
    import onnxruntime as ort

    from simvq_audio.modules.vocos import ISTFTHead
    from simvq_audio.onnx.graphs import GraphISTFT

    head = ISTFTHead(8, n_fft, hop, max_log_magnitude=5.0)
    graph = GraphISTFT(head)
    assert graph.blocks == (n_fft // hop if n_fft % hop == 0 else 0)
    g = torch.Generator().manual_seed(3)
    for t in (1, 2, 7, 50):
        spec = torch.complex(torch.randn(2, n_fft // 2 + 1, t, generator=g), torch.randn(2, n_fft // 2 + 1, t, generator=g))
        reference = head.istft(spec)
        ours = graph(spec.real, spec.imag)
        assert ours.shape == reference.shape == (2, t * hop)
        assert torch.allclose(ours, reference, atol=1e-5, rtol=1e-4), float((ours - reference).abs().max())
    path = tmp_path / "istft.onnx"
    torch.onnx.export(graph, (spec.real, spec.imag), str(path), input_names=["re", "im"], output_names=["audio"],
                      dynamic_axes={"re": {0: "b", 2: "t"}, "im": {0: "b", 2: "t"}, "audio": {0: "b", 1: "n"}},
                      opset_version=17, dynamo=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    spec = torch.complex(torch.randn(1, n_fft // 2 + 1, 13, generator=g), torch.randn(1, n_fft // 2 + 1, 13, generator=g))
    (audio,) = session.run(None, {"re": spec.real.numpy(), "im": spec.imag.numpy()})
    assert np.allclose(audio, head.istft(spec).numpy(), atol=1e-5, rtol=1e-4)
