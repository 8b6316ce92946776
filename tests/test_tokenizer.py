"""Inference: batching equals one-at-a-time, chunking equals whole-signal, token files round trip."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from simvq_audio.audio.io import load_audio
from simvq_audio.errors import AudioError, TokenFileError
from simvq_audio.inference import DecodedFile, EncodedBatch, Tokenizer, resolve_device
from simvq_audio.inference.batching import batch_groups
from simvq_audio.inference.windows import StreamChunker, iter_windows, plan_chunks, split_samples
from simvq_audio.models.codec import CodecConfig, SimVQCodec
from simvq_audio.modules.seanet import SEANetConfig
from simvq_audio.quantization.builder import QuantizerConfig
from simvq_audio.tokens.format import TokenFile


def tiny_model(lstm: int = 1, seed: int = 0) -> SimVQCodec:
    torch.manual_seed(seed)
    cfg = CodecConfig(
        sample_rate=16000,
        seanet=SEANetConfig(n_filters=8, ratios=(4, 4), dimension=16, lstm=lstm),
        quantizer=QuantizerConfig(codebook_size=64, dim=8),
    )
    return SimVQCodec(cfg).eval()


@pytest.fixture(scope="module")
def model() -> SimVQCodec:
    return tiny_model()


def noise(n: int, seed: int = 0, channels: int | None = None) -> np.ndarray:
    shape = (n,) if channels is None else (channels, n)
    return (np.random.default_rng(seed).standard_normal(shape) * 0.1).astype(np.float32)


# -- chunk planning ---------------------------------------------------------------------------------
@pytest.mark.parametrize("n_frames", [1, 7, 10, 11, 95])
def test_plan_chunks_tiles_the_signal(n_frames):
    plan = plan_chunks(n_frames, chunk_frames=10, context_frames=3)
    kept = [f for c in plan for f in range(c.keep_start, c.keep_stop)]
    assert kept == list(range(n_frames))
    for c in plan:
        assert 0 <= c.start <= c.keep_start < c.keep_stop <= c.stop <= n_frames
        assert c.keep_start - c.start == min(3, c.keep_start) or len(plan) == 1


def test_stream_chunker_equals_split_samples():
    rng = np.random.default_rng(1)
    for n in [5, 64, 1000, 4097]:
        x = rng.standard_normal((2, n)).astype(np.float32)
        expected = split_samples(x, hop=8, chunk_frames=20, context_frames=5)
        cuts = np.sort(rng.integers(0, n, 6))
        blocks = np.split(x, cuts, axis=1)
        got = list(iter_windows(iter(blocks), StreamChunker(8, 20, 5, channels=2)))
        assert [c for c, _ in got] == [c for c, _ in expected]
        for (_, a), (_, b) in zip(got, expected, strict=True):
            np.testing.assert_array_equal(a, b)


def test_batch_groups_respect_limits():
    sizes = [5, 100, 7, 50, 50, 3, 1000, 60]
    groups = batch_groups(sizes, batch_size=3, max_batch_samples=160)
    assert sorted(i for g in groups for i in g) == list(range(len(sizes)))
    for g in groups:
        assert len(g) <= 3
        assert len(g) == 1 or len(g) * max(sizes[i] for i in g) <= 160


# -- in memory ----------------------------------------------------------------------------------
def test_properties(model):
    tk = Tokenizer(model)
    assert (tk.sample_rate, tk.hop_length, tk.frame_rate, tk.codebook_size, tk.n_codebooks) == (16000, 16, 1000.0, 64, 1)
    assert tk.bitrate == pytest.approx(6000.0)
    assert tk.model_id == model.model_id and tk.device == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")


def test_encode_is_deterministic(model):
    x = noise(5000)
    a, b = Tokenizer(model).encode(x), Tokenizer(model).encode(torch.from_numpy(x))
    assert a.dtype == torch.long and a.shape == (1, 313)
    assert torch.equal(a, b)


@pytest.mark.parametrize("batch_invariant", [True, False], ids=["window-alone", "padded-batch"])
def test_batched_equals_single(model, batch_invariant):
    rng = np.random.default_rng(2)
    wavs = [noise(int(n), seed=i) for i, n in enumerate(rng.integers(16, 2000, 7))]
    tk = Tokenizer(model, batch_size=4, batch_invariant=batch_invariant)
    batch = tk.encode_batch(wavs)
    frames = [-(-len(w) // 16) for w in wavs]
    assert isinstance(batch, EncodedBatch) and batch.audio_codes.shape == (7, 1, max(frames))
    assert batch.padding_mask.dtype == torch.bool and batch.lengths.tolist() == frames
    assert batch.n_samples.tolist() == [len(w) for w in wavs]
    assert not batch.audio_codes.masked_select(~batch.padding_mask[:, None, :]).any()  # padding is 0
    for w, codes in zip(wavs, batch.unpad(), strict=True):
        assert torch.equal(codes, tk.encode(w))
    decoded = tk.decode_batch(batch)  # lengths from the batch: each item's own
    as_list = tk.decode_batch(batch.unpad(), lengths=[len(w) for w in wavs])
    padded = tk.decode_batch(batch.audio_codes, batch.padding_mask, lengths=[len(w) for w in wavs])
    for w, codes, audio, a, b in zip(wavs, batch.unpad(), decoded, as_list, padded, strict=True):
        assert audio.shape == (1, len(w))
        torch.testing.assert_close(audio, tk.decode(codes, len(w)), atol=1e-5, rtol=0)
        assert torch.equal(audio, a) and torch.equal(audio, b)


def test_batch_with_one_rate_per_item(model):
    tk = Tokenizer(model)
    items = [noise(2205, seed=1), noise(1600, seed=2)]
    batch = tk.encode_batch(items, sample_rate=[22050, 16000])
    assert torch.equal(batch.unpad()[0], tk.encode(items[0], 22050))
    with pytest.raises(ValueError, match="one rate per item"):
        tk.encode_batch(items, sample_rate=[16000])
    with pytest.raises(TypeError, match="encode_batch"):
        tk.encode(items)


def test_encode_resamples_and_downmixes(model):
    stereo = noise(2205, channels=2)
    codes = Tokenizer(model).encode(stereo, sample_rate=22050)
    assert codes.shape == (1, 100)  # 2205 samples at 22.05 kHz -> 1600 at 16 kHz -> 100 frames


def test_chunked_equals_whole_without_lstm():
    model = tiny_model(lstm=0)
    x = noise(16000 * 3 // 2, seed=3)
    whole = Tokenizer(model, chunk_seconds=100).encode(x)
    # 0.25 s windows with 0.05 s context: 6 windows; context exceeds the receptive field (~150 samples).
    chunked = Tokenizer(model, chunk_seconds=0.25, context_seconds=0.05).encode(x)
    assert torch.equal(whole, chunked)
    audio_whole = Tokenizer(model, chunk_seconds=100).decode(whole)
    audio_chunked = Tokenizer(model, chunk_seconds=0.25, context_seconds=0.05).decode(whole)
    torch.testing.assert_close(audio_whole, audio_chunked, atol=1e-5, rtol=0)


def test_chunked_with_lstm_is_close(model):
    x = noise(16000 * 3, seed=4)
    whole = Tokenizer(model, chunk_seconds=100).encode(x)
    chunked = Tokenizer(model, chunk_seconds=0.25, context_seconds=0.05).encode(x)
    assert chunked.shape == whole.shape
    assert (chunked != whole).float().mean().item() < 0.05


@pytest.mark.parametrize(
    "wav, problem",
    [(np.zeros(0, np.float32), "empty"), (np.zeros(15, np.float32), "shorter than one frame (15 samples < hop 16"),
     (np.array([0.0, np.nan] * 20, np.float32), "NaN")],
)
def test_bad_audio(model, wav, problem):
    with pytest.raises(AudioError, match=problem.replace("(", r"\(")):
        Tokenizer(model).encode(wav)


def test_bad_codes(model):
    with pytest.raises(TokenFileError, match="codes must be in"):
        Tokenizer(model).decode(torch.tensor([[0, 64]]))
    with pytest.raises(TokenFileError, match="expected codes"):
        Tokenizer(model).decode(torch.zeros(3, 5, dtype=torch.long))


# -- files -----------------------------------------------------------------------------------------
def test_file_round_trip_keeps_rate_channels_length(model, tmp_path):
    x = noise(22050 * 2 + 7, channels=2)
    sf.write(tmp_path / "a.wav", x.T, 22050, subtype="FLOAT")
    tk = Tokenizer(model)
    tf = tk.encode_file(tmp_path / "a.wav")
    h = tf.header
    assert (h.original_sample_rate, h.original_channels, h.original_n_samples) == (22050, 2, x.shape[-1])
    assert h.n_frames == tf.codes.shape[-1] == -(-h.n_samples // 16) and h.model_id == tk.model_id
    tk.save_tokens(tmp_path / "a.svqt", tf)
    loaded = tk.load_tokens(tmp_path / "a.svqt")
    np.testing.assert_array_equal(loaded.codes, tf.codes)
    audio, rate = tk.decode_tokens(loaded)
    assert rate == 22050 and audio.shape == x.shape and audio.dtype == np.float32


def test_long_file_is_streamed_like_whole(model, tmp_path):
    x = noise(22050 * 2, channels=2, seed=5)
    sf.write(tmp_path / "long.wav", x.T, 22050, subtype="FLOAT")
    tk = Tokenizer(model, chunk_seconds=0.5, context_seconds=0.05, batch_size=3)
    tf = tk.encode_file(tmp_path / "long.wav")
    in_memory = tk.encode(load_audio(tmp_path / "long.wav", 16000, 1).samples)
    np.testing.assert_array_equal(tf.codes.astype(np.int64), in_memory.numpy())
    whole, rate = tk.decode_tokens(tf)
    blocks = list(tk.iter_decode_tokens(tf))
    assert len(blocks) > 1
    np.testing.assert_allclose(np.concatenate(blocks, axis=1), whole, atol=1e-5)
    tk.decode_to_file(tf, tmp_path / "out.flac")
    info = sf.info(str(tmp_path / "out.flac"))
    assert (info.samplerate, info.channels, info.frames) == (22050, 2, x.shape[-1])


def test_encode_files_reports_each_bad_file(model, tmp_path):
    sf.write(tmp_path / "good.wav", noise(3000), 16000)
    sf.write(tmp_path / "short.wav", noise(10), 16000)
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF not really a wav")
    paths = [tmp_path / n for n in ("good.wav", "short.wav", "corrupt.wav", "missing.wav")]
    results = dict(Tokenizer(model).encode_files(paths))
    assert set(results) == set(paths)
    assert isinstance(results[paths[0]], TokenFile)
    for p in paths[1:]:
        assert isinstance(results[p], AudioError) and str(results[p]).startswith(str(p))


def test_tokens_of_another_model(model, tmp_path):
    sf.write(tmp_path / "a.wav", noise(3000), 16000)
    tf = Tokenizer(tiny_model(seed=1)).encode_file(tmp_path / "a.wav")
    tk = Tokenizer(model)
    with pytest.raises(TokenFileError, match="made by model"):
        tk.decode_tokens(tf, name="a.svqt")
    audio, rate = tk.decode_tokens(tf, force=True)
    assert audio.shape == (1, 3000) and rate == 16000


def test_from_pretrained(model, tmp_path):
    model.save_pretrained(tmp_path / "m")
    tk = Tokenizer.from_pretrained(tmp_path / "m", device="cpu", batch_size=2)
    assert tk.model_id == model.model_id and tk.batch_size == 2
    x = noise(4000)
    assert torch.equal(tk.encode(x), Tokenizer(model).encode(x))


def test_streamed_file_failing_midway_does_not_stop_the_others(model, tmp_path):
    x = noise(16000 * 12, seed=6)
    x[16000 * 11] = np.nan  # in the second 10 s block read from disk: windows before it are already encoded
    sf.write(tmp_path / "late_nan.wav", x, 16000, subtype="FLOAT")
    sf.write(tmp_path / "good.wav", noise(3000), 16000)
    tk = Tokenizer(model, chunk_seconds=2.0, context_seconds=0.05, batch_size=2)
    results = dict(tk.encode_files([tmp_path / "late_nan.wav", tmp_path / "good.wav"]))
    assert isinstance(results[tmp_path / "good.wav"], TokenFile)
    error = results[tmp_path / "late_nan.wav"]
    assert isinstance(error, AudioError) and "NaN" in str(error)


def test_decode_files_batches_short_files_and_streams_long_ones(model, tmp_path):
    tk = Tokenizer(model, chunk_seconds=0.5, context_seconds=0.05, batch_size=2)
    lengths = {"a": 3000, "b": 4000, "long": 22050 * 2}
    for name, n in lengths.items():
        sf.write(tmp_path / f"{name}.wav", noise(n, seed=n), 16000 if name != "long" else 22050)
        tk.save_tokens(tmp_path / f"{name}.svqt", tk.encode_file(tmp_path / f"{name}.wav"))
    (tmp_path / "bad.svqt").write_bytes(b"SVQT nonsense")
    other = Tokenizer(tiny_model(seed=1))
    other.save_tokens(tmp_path / "other.svqt", other.encode_file(tmp_path / "a.wav"))
    paths = [tmp_path / f"{n}.svqt" for n in ("a", "b", "long", "bad", "other")]
    results = dict(tk.decode_files(paths))
    assert set(results) == set(paths)
    assert isinstance(results[paths[3]], TokenFileError) and isinstance(results[paths[4]], TokenFileError)
    streamed = results[paths[2]]
    assert isinstance(streamed, DecodedFile) and streamed.audio is None  # decoded while written
    for path in paths[:3]:
        results[path].write(tmp_path / f"{path.stem}.out.wav")
        info = sf.info(str(tmp_path / f"{path.stem}.out.wav"))
        assert info.frames == lengths[path.stem]
        expected, _ = tk.decode_tokens(tk.load_tokens(path))
        got, _ = sf.read(tmp_path / f"{path.stem}.out.wav", dtype="float32", always_2d=True)
        np.testing.assert_allclose(got.T, expected, atol=2 / 32768)  # 16-bit PCM
    assert isinstance(dict(tk.decode_files([paths[4]], force=True))[paths[4]], DecodedFile)


def test_spec_is_the_header_identity(model, tmp_path):
    sf.write(tmp_path / "a.wav", noise(3000), 16000)
    tk = Tokenizer(model)
    header = tk.encode_file(tmp_path / "a.wav").header
    assert header.spec == tk.spec == model.spec
    assert (tk.spec.model_id, tk.spec.dtype, tk.spec.frame_rate) == (model.model_id, "uint16", 1000.0)


@pytest.mark.parametrize("kind,soft", [("seanet", False), ("vocos", False), ("vocos", True)])
def test_chunked_decoding_continues_the_harmonics_across_windows(kind, soft, tmp_path):
    """A model with harmonics of its pitch head's F0 (SEANet with excitation and a harmonic branch; a
    source-filter Vocos head) decodes windows of a long item with the running phase of the windows
    before: the joins are seamless and the audio equals the whole item's decode, in memory and streamed."""
    from simvq_audio.modules.vocos import DecoderConfig

    torch.manual_seed(5)
    vocos = kind == "vocos"
    cfg = CodecConfig(sample_rate=16000, seanet=SEANetConfig(n_filters=8, ratios=(4, 4), dimension=16, lstm=0),
                      quantizer=QuantizerConfig(codebook_size=64, dim=8), pitch_head=True,
                      excitation_harmonics=8, harmonic_branch=0 if vocos else 4, soft_voicing=soft,
                      decoder=DecoderConfig(kind="vocos", dim=16, intermediate_dim=24, n_layers=2, n_fft=64,
                                            phase="noise", envelope_bands=5) if vocos else DecoderConfig())
    model = SimVQCodec(cfg).eval()
    with torch.no_grad():  # voiced everywhere (soft: about half voiced), F0 around 200 Hz, moving with the codes
        model.pitch_head.net[-1].bias.copy_(torch.tensor([0.0 if soft else 4.0, 1.0]))
        if vocos:  # the source at unit gain
            model.decoder.head.out.bias[model.decoder.head.gain_offset:].fill_(0.0)
        else:  # the harmonic branch's sines at a level that shows
            model.harmonic.amplitudes.bias.fill_(0.0)
    assert model.takes_phase_offset
    sf.write(tmp_path / "long.wav", noise(24000, seed=7), 16000, subtype="FLOAT")
    tk = Tokenizer(model, chunk_seconds=0.4, context_seconds=0.06, batch_size=2)  # 1,500 frames: 4 windows
    tf = tk.encode_file(tmp_path / "long.wav")
    codes = torch.from_numpy(tf.codes.astype(np.int64))
    whole = model.decode(codes[None])[0]
    scale = float(whole.abs().max())
    assert scale > 1e-2
    chunked = tk.decode(codes)
    torch.testing.assert_close(chunked, whole, atol=1e-4 * scale, rtol=0)
    streamed = np.concatenate(list(tk.iter_decode_tokens(tf)), axis=-1)
    np.testing.assert_allclose(streamed, whole.numpy(), atol=1e-4 * scale, rtol=0)
    # Without the offsets each window restarts its harmonics at phase 0: a jump at every join.
    batcher, plan = tk.batcher, plan_chunks(codes.shape[-1], 400, 60)
    assert len(plan) == 4
    restarted = torch.cat([batcher.kept_audio(a, c) for a, c in zip(
        batcher.decode_windows([codes[:, c.start:c.stop] for c in plan]), plan, strict=True)], dim=-1)
    assert float((restarted - whole).abs().max()) > 0.1 * scale
