"""Vocos-style decoder: exact lengths, padded batch equals items alone, storage, gradients."""

import json
import math

import pytest
import torch

from simvq_audio.dataclass_dicts import ConfigError, from_dict
from simvq_audio.models import CodecConfig, SimVQCodec
from simvq_audio.models.pretrained import CONFIG_NAME
from simvq_audio.modules import SEANetConfig
from simvq_audio.modules.vocos import DecoderConfig, ISTFTHead, VocosDecoder
from simvq_audio.quantization import QuantizerConfig


def tiny_vocos(seed=0, n_fft=32, ratios=(4, 4)) -> SimVQCodec:
    torch.manual_seed(seed)
    cfg = CodecConfig(
        sample_rate=16000,
        seanet=SEANetConfig(n_filters=4, ratios=ratios, dimension=8, lstm=0),
        quantizer=QuantizerConfig(codebook_size=32, dim=4),
        decoder=DecoderConfig(kind="vocos", dim=16, intermediate_dim=24, n_layers=2, n_fft=n_fft),
    )
    return SimVQCodec(cfg).eval()


def test_decoder_is_the_vocos_kind():
    m = tiny_vocos()
    assert isinstance(m.decoder, VocosDecoder) and m.hop_length == 16


@pytest.mark.parametrize("n_fft", [16, 32, 64])
def test_any_length_round_trips_to_exactly_that_length(n_fft):
    m = tiny_vocos(n_fft=n_fft)
    gen = torch.Generator().manual_seed(1)
    for n in [1, 2, 15, 16, 17] + torch.randint(18, 900, (6,), generator=gen).tolist():
        x = torch.randn(2, 1, n, generator=gen)
        codes = m.encode(x)
        assert m.decode(codes).shape == (2, 1, codes.shape[-1] * 16)
        assert m.decode(codes, n).shape == (2, 1, n)
        assert m(x).audio.shape == (2, 1, n)


def test_padded_batch_decodes_each_item_as_alone():
    m = tiny_vocos()
    lengths = [37, 160, 401, 250, 5]
    gen = torch.Generator().manual_seed(3)
    items = [torch.randn(1, 1, n, generator=gen) for n in lengths]
    batch = torch.zeros(len(items), 1, max(lengths))
    for i, x in enumerate(items):
        batch[i, :, : x.shape[-1]] = x
    codes = m.encode(batch, lengths=torch.tensor(lengths))
    frames = [m.num_frames(n) for n in lengths]
    audio = m.decode(codes, frame_lengths=torch.tensor(frames))
    for i, f in enumerate(frames):
        alone = m.decode(codes[i : i + 1, :, :f])
        torch.testing.assert_close(audio[i : i + 1, :, : f * 16], alone, rtol=1e-5, atol=1e-6)
        assert torch.all(audio[i, :, f * 16 :] == 0)  # padding is silent


def test_istft_inverts_a_known_stft():
    """The head's overlap-add inverts a "same"-padded STFT of the same window and hop."""
    n_fft, hop, t = 64, 16, 40
    head = ISTFTHead(dim=4, n_fft=n_fft, hop_length=hop, max_log_magnitude=10.0)
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(2, t * hop, generator=gen)
    pad = (n_fft - hop) // 2
    padded = torch.nn.functional.pad(x, (pad, pad))
    spec = torch.stft(padded, n_fft, hop, window=torch.hann_window(n_fft), center=False, return_complex=True)
    assert spec.shape[-1] == t
    y = head.istft(spec)
    assert y.shape == x.shape
    # edges see fewer windows; the interior is exact
    torch.testing.assert_close(y[:, n_fft:-n_fft], x[:, n_fft:-n_fft], rtol=1e-4, atol=1e-4)


def test_source_filter_head_passes_the_source_through_at_unit_gain():
    """With the free magnitude off and the source's gain at 1, the head's output is the source itself:
    its STFT (frames centred as the inverse's, zero outside) and the overlap-add invert each other, so
    the voiced part's harmonics keep the source's frequency and phase exactly."""
    n_fft, hop, t = 64, 16, 40
    head = ISTFTHead(dim=4, n_fft=n_fft, hop_length=hop, max_log_magnitude=10.0, source=True)
    assert head.out.out_features == 3 * (n_fft // 2 + 1)
    with torch.no_grad():
        head.out.weight.zero_()
        head.out.bias.zero_()
        head.out.bias[: n_fft // 2 + 1].fill_(-40.0)  # free magnitude e^-40
    gen = torch.Generator().manual_seed(8)
    source = torch.randn(2, 1, t * hop, generator=gen)
    y = head(torch.randn(2, 4, t, generator=gen), source=source)
    torch.testing.assert_close(y, source, rtol=1e-4, atol=1e-4)
    # and a constant gain scales it
    with torch.no_grad():
        head.out.bias[2 * (n_fft // 2 + 1):].fill_(math.log(0.01))
    torch.testing.assert_close(head(torch.randn(2, 4, t, generator=gen), source=source), 0.01 * source,
                               rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="needs a source"):
        head(torch.randn(1, 4, t))
    with pytest.raises(ValueError, match="takes no source"):
        ISTFTHead(dim=4, n_fft=n_fft, hop_length=hop, max_log_magnitude=10.0)(torch.randn(1, 4, t), source=source)


def test_source_filter_vocos_codec_decodes_padded_batches_as_items_alone():
    torch.manual_seed(2)
    cfg = CodecConfig(sample_rate=16000, seanet=SEANetConfig(n_filters=4, ratios=(4, 4), dimension=8, lstm=0),
                      quantizer=QuantizerConfig(codebook_size=32, dim=4), pitch_head=True, excitation_harmonics=40,
                      decoder=DecoderConfig(kind="vocos", dim=16, intermediate_dim=24, n_layers=2, n_fft=32))
    m = SimVQCodec(cfg).eval()
    assert m.decoder.head.source and m.harmonic is None
    with torch.no_grad():
        m.pitch_head.net[-1].bias.copy_(torch.tensor([2.0, 0.5]))  # voiced at 2^0.5 x the reference F0
        m.decoder.head.out.bias[2 * 17:].fill_(0.0)                 # source at gain 1
    gen = torch.Generator().manual_seed(9)
    codes = torch.randint(0, 32, (3, 1, 50), generator=gen)
    frames = torch.tensor([50, 23, 4])
    audio = m.decode(codes, frame_lengths=frames)
    scale = float(audio.abs().max())  # pulses of up to 40 unit harmonics: float32 rounding at that scale
    for i, f in enumerate(frames.tolist()):
        alone = m.decode(codes[i:i + 1, :, :f])
        torch.testing.assert_close(audio[i:i + 1, :, :f * 16], alone, rtol=0, atol=3e-5 * scale)
        assert torch.all(audio[i, :, f * 16:] == 0)
    # turning the source off changes the audio: the head uses it
    with torch.no_grad():
        m.decoder.head.out.bias[2 * 17:].fill_(-40.0)
    assert (m.decode(codes) - audio).abs().max() > 1e-2


def test_noise_phase_is_fixed_uniform_and_makes_noise_not_a_frame_rate_buzz():
    """A flat magnitude with a constant phase per bin (what a slowly varying learned phase gives)
    overlaps into a pulse train at the frame rate; with ``noise_phase`` it is noise."""
    from simvq_audio.modules.vocos import noise_phase

    bins, t, n_fft, hop = 129, 400, 256, 64
    phase = noise_phase(bins, t)
    assert phase.shape == (bins, t) and phase.dtype == torch.float32
    assert torch.equal(phase, noise_phase(bins, 2 * t)[:, :t])  # a frame's phase depends on its index only
    shifted = noise_phase(bins, t, start=torch.tensor([0, 37]))  # windows starting at frames 0 and 37
    assert torch.equal(shifted[0], phase) and torch.equal(shifted[1], noise_phase(bins, t + 37)[:, 37:])
    assert float(phase.min()) >= 0 and float(phase.max()) < 2 * math.pi
    hist = torch.histc(phase, bins=8, min=0, max=2 * math.pi) / phase.numel()
    assert float((hist - 1 / 8).abs().max()) < 0.01
    head = ISTFTHead(dim=4, n_fft=n_fft, hop_length=hop, max_log_magnitude=10.0)

    def hop_correlation(phases):
        y = head.istft(torch.polar(torch.ones(1, bins, t), phases))[0, n_fft:-n_fft]
        y = y - y.mean()
        return float((y[hop:] * y[:-hop]).sum() / (y * y).sum())

    assert hop_correlation(torch.zeros(1, bins, t) + torch.rand(bins, 1)) > 0.9  # buzz at the frame rate
    assert abs(hop_correlation(phase[None])) < 0.1


def test_noise_phase_head_predicts_magnitudes_and_gains_only():
    torch.manual_seed(4)
    cfg = CodecConfig(sample_rate=16000, seanet=SEANetConfig(n_filters=4, ratios=(4, 4), dimension=8, lstm=0),
                      quantizer=QuantizerConfig(codebook_size=32, dim=4), pitch_head=True, excitation_harmonics=40,
                      decoder=DecoderConfig(kind="vocos", dim=16, intermediate_dim=24, n_layers=2, n_fft=32,
                                            phase="noise"))
    m = SimVQCodec(cfg).eval()
    assert m.decoder.head.out.out_features == 2 * 17 and m.decoder.head.gain_offset == 17
    gen = torch.Generator().manual_seed(10)
    codes = torch.randint(0, 32, (2, 1, 30), generator=gen)
    frames = torch.tensor([30, 11])
    audio = m.decode(codes, frame_lengths=frames)
    torch.testing.assert_close(audio[1:, :, :11 * 16], m.decode(codes[1:, :, :11]), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(m.decode(codes), m.decode(codes))  # deterministic
    with pytest.raises(ConfigError, match="phase"):
        from_dict(CodecConfig, {"decoder": {"kind": "vocos", "phase": "random"}})


def test_envelope_basis_interpolates_linearly_between_equally_spaced_nodes():
    from simvq_audio.modules.vocos import envelope_basis

    basis = envelope_basis(17, 5)  # nodes at bins 0, 4, 8, 12, 16
    assert basis.shape == (17, 5)
    torch.testing.assert_close(basis.sum(1), torch.ones(17))
    nodes = torch.tensor([0.0, 4.0, -2.0, 1.0, 3.0])
    torch.testing.assert_close(basis @ nodes, torch.tensor(
        [0, 1, 2, 3, 4, 2.5, 1, -0.5, -2, -1.25, -0.5, 0.25, 1, 1.5, 2, 2.5, 3]))
    assert torch.equal(envelope_basis(9, 9), torch.eye(9))  # one node per bin: the identity


def test_envelope_bands_head_predicts_a_coarse_envelope_that_cannot_draw_harmonics():
    """With ``envelope_bands`` the free log magnitude is piecewise linear between nodes 8 bins apart: whatever
    the layer does, it has no peaks closer than that, so a harmonic comb at 4 bins' spacing (a pitch) can
    only come from the source."""
    torch.manual_seed(3)
    cfg = DecoderConfig(kind="vocos", dim=16, intermediate_dim=24, n_layers=2, n_fft=64, phase="noise",
                        envelope_bands=5)
    decoder = VocosDecoder(8, 16, cfg, source=True)
    head = decoder.head
    assert head.out.out_features == 5 + 33 and head.gain_offset == 5
    with torch.no_grad():
        head.out.weight.normal_(0, 0.5)  # a layer far from its initial (smooth) output
    log_mag, _, log_gain = head.polar(torch.randn(2, 16, 12))
    assert log_mag.shape == log_gain.shape == (2, 33, 12) and float(log_mag.abs().max()) < head.max_log_magnitude
    curvature = log_mag[:, 2:] - 2 * log_mag[:, 1:-1] + log_mag[:, :-2]  # zero except at the nodes
    kinks = (curvature.abs() > 1e-4).any(0).any(-1).nonzero().flatten() + 1
    assert set(kinks.tolist()) <= {8, 16, 24}
    audio = decoder(torch.randn(2, 8, 12), source=torch.randn(2, 1, 12 * 16))
    assert audio.shape == (2, 1, 192) and torch.isfinite(audio).all()
    with pytest.raises(ConfigError, match="envelope_bands"):
        from_dict(CodecConfig, {"decoder": {"kind": "vocos", "envelope_bands": 1}})
    with pytest.raises(ConfigError, match="envelope_bands"):
        from_dict(CodecConfig, {"decoder": {"kind": "vocos", "n_fft": 32, "envelope_bands": 18}})


def test_a_vocos_model_saved_without_envelope_bands_keeps_its_id(tmp_path):
    m = tiny_vocos()
    mid = m.save_pretrained(tmp_path)
    meta = json.loads((tmp_path / CONFIG_NAME).read_text())
    del meta["config"]["decoder"]["envelope_bands"]  # as written before the field existed
    (tmp_path / CONFIG_NAME).write_text(json.dumps(meta))
    assert SimVQCodec.from_pretrained(tmp_path).model_id == mid


def test_training_forward_gives_gradients_everywhere():
    m = tiny_vocos().train()
    x = torch.randn(2, 1, 320)
    out = m(x)
    ((out.audio - x) ** 2).mean().add(out.quantizer_loss).backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_save_load_round_trip_keeps_the_decoder(tmp_path):
    m = tiny_vocos()
    m.train()(torch.randn(2, 1, 800))
    m.eval()
    mid = m.save_pretrained(tmp_path)
    stored = json.loads((tmp_path / CONFIG_NAME).read_text())
    assert stored["config"]["decoder"]["kind"] == "vocos"
    loaded = SimVQCodec.from_pretrained(tmp_path)
    assert loaded.model_id == mid and isinstance(loaded.decoder, VocosDecoder)
    codes = m.encode(torch.randn(1, 1, 500))
    torch.testing.assert_close(loaded.decode(codes), m.decode(codes))


def test_models_without_a_decoder_key_load_as_seanet_with_their_id(tmp_path):
    torch.manual_seed(0)
    cfg = CodecConfig(seanet=SEANetConfig(n_filters=4, ratios=(4, 4), dimension=8, lstm=0),
                      quantizer=QuantizerConfig(codebook_size=32, dim=4))
    m = SimVQCodec(cfg).eval()
    mid = m.save_pretrained(tmp_path)
    meta = json.loads((tmp_path / CONFIG_NAME).read_text())
    del meta["config"]["decoder"]  # as written before the decoder was configurable
    (tmp_path / CONFIG_NAME).write_text(json.dumps(meta))
    loaded = SimVQCodec.from_pretrained(tmp_path)
    assert loaded.model_id == mid and loaded.config.decoder.kind == "seanet"


def test_config_errors():
    with pytest.raises(ConfigError, match="decoder kind"):
        from_dict(CodecConfig, {"decoder": {"kind": "hifigan"}})
    with pytest.raises(ConfigError, match="odd"):
        from_dict(CodecConfig, {"decoder": {"kind": "vocos", "kernel_size": 4}})
    with pytest.raises(ConfigError, match="mono"):
        from_dict(CodecConfig, {"decoder": {"kind": "vocos"}, "seanet": {"channels": 2}})
    with pytest.raises(ValueError, match="n_fft"):
        tiny_vocos(n_fft=8)  # n_fft must be at least the hop (16)
