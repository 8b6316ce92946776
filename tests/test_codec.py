"""SEANet codec: lengths, causality, per-item padding, gradients and strict storage."""

import json

import pytest
import torch

from simvq_audio.models import CodecConfig, ModelLoadError, SimVQCodec
from simvq_audio.models.pretrained import CONFIG_NAME, WEIGHTS_NAME, read_model_meta
from simvq_audio.modules import SEANetConfig
from simvq_audio.quantization import CodebookMismatchError, QuantizerConfig


def tiny(causal=False, lstm=1, ratios=(4, 4), n_q=1, seed=0) -> SimVQCodec:
    torch.manual_seed(seed)
    cfg = CodecConfig(
        sample_rate=16000,
        seanet=SEANetConfig(n_filters=4, ratios=ratios, dimension=8, lstm=lstm, causal=causal),
        quantizer=QuantizerConfig(codebook_size=32, dim=4, n_q=n_q),
    )
    return SimVQCodec(cfg).eval()


def test_properties():
    m = tiny(ratios=(5, 4), n_q=2)
    assert (m.hop_length, m.frame_rate, m.n_codebooks, m.codebook_size) == (20, 800.0, 2, 32)
    assert m.bitrate == pytest.approx(2 * 5 * 800)
    assert [m.num_frames(n) for n in (1, 20, 21, 40)] == [1, 1, 2, 2]


@pytest.mark.parametrize("causal", [False, True])
def test_any_length_round_trips_to_exactly_that_length(causal):
    m = tiny(causal=causal)
    gen = torch.Generator().manual_seed(1)
    for n in [1, 2, 15, 16, 17] + torch.randint(18, 900, (8,), generator=gen).tolist():
        x = torch.randn(2, 1, n, generator=gen)
        codes = m.encode(x)
        assert codes.shape == (2, 1, -(-n // 16)) and codes.dtype == torch.long
        assert m.decode(codes, n).shape == (2, 1, n)
        assert m(x).audio.shape == (2, 1, n)


def test_causal_future_never_changes_the_past():
    m = tiny(causal=True)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(1, 1, 640, generator=gen)
    y = x.clone()
    y[..., 400:] = torch.randn(1, 1, 240, generator=gen)
    cx, cy = m.encode(x), m.encode(y)
    assert torch.equal(cx[..., :25], cy[..., :25])  # frames 0..24 end at sample 400
    assert not torch.equal(cx, cy)
    ax, ay = m.decode(cx), m.decode(cy)
    assert torch.allclose(ax[..., :400], ay[..., :400])


def test_non_causal_looks_ahead():
    m = tiny(causal=False, lstm=0)
    x = torch.randn(1, 1, 640)
    y = x.clone()
    y[..., 400:] = 0
    with torch.no_grad():
        zx, zy = m.encoder(x), m.encoder(y)
    assert not torch.allclose(zx[..., 24], zy[..., 24])  # frame 24 ends at sample 400 but sees past it


@pytest.mark.parametrize("causal", [False, True])
def test_padded_batch_equals_items_alone(causal):
    m = tiny(causal=causal)
    lengths = [37, 160, 401, 250]
    gen = torch.Generator().manual_seed(3)
    items = [torch.randn(1, 1, n, generator=gen) for n in lengths]
    batch = torch.zeros(len(items), 1, max(lengths))
    for i, x in enumerate(items):
        batch[i, :, : x.shape[-1]] = x
    codes = m.encode(batch, lengths=torch.tensor(lengths))
    frames = [m.num_frames(n) for n in lengths]
    audio = m.decode(codes, frame_lengths=torch.tensor(frames))
    for i, x in enumerate(items):
        alone = m.encode(x)
        assert torch.equal(codes[i : i + 1, :, : frames[i]], alone)
        torch.testing.assert_close(audio[i : i + 1, :, : frames[i] * m.hop_length], m.decode(alone))


@pytest.mark.parametrize("causal", [False, True])
def test_batch_padded_past_every_item_keeps_its_shape(causal):
    """A training batch of short files padded to the crop length: every item is shorter than the batch.
    The output still has the batch's length (the trainer's loss multiplies it by the crop's mask), the
    codes ceil(N / hop) frames, and the valid part of each item is what the item alone gives."""
    m = tiny(causal=causal)
    lengths, width = [137, 250], 480
    gen = torch.Generator().manual_seed(4)
    batch = torch.zeros(2, 1, width)
    for i, n in enumerate(lengths):
        batch[i, :, :n] = torch.randn(1, 1, n, generator=gen)
    out = m(batch, torch.tensor(lengths))
    assert out.audio.shape == (2, 1, width)
    assert out.codes.shape == (2, 1, width // m.hop_length)
    assert m.encode(batch, lengths=torch.tensor(lengths)).shape == (2, 1, width // m.hop_length)
    for i, n in enumerate(lengths):
        alone = m(batch[i : i + 1, :, :n])
        frames = m.num_frames(n)
        assert torch.equal(out.codes[i : i + 1, :, :frames], alone.codes)
        torch.testing.assert_close(out.audio[i : i + 1, :, :n], alone.audio)


def test_training_forward_gives_gradients_everywhere():
    m = tiny(n_q=2).train()
    x = torch.randn(2, 1, 320, requires_grad=True)
    out = m(x)
    ((out.audio - x) ** 2).mean().add(out.quantizer_loss).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert set(out.metrics) == {"perplexity/q0", "usage/q0", "perplexity/q1", "usage/q1"}


def test_bad_inputs_raise_clear_errors():
    m = tiny()
    with pytest.raises(ValueError, match=r"expected audio \[B, 1, N\]"):
        m.encode(torch.randn(100))
    with pytest.raises(ValueError, match="at least one sample"):
        m.encode(torch.randn(1, 1, 0))
    with pytest.raises(ValueError, match="floating point"):
        m.encode(torch.ones(1, 1, 10, dtype=torch.long))
    with pytest.raises(ValueError, match="lengths"):
        m.encode(torch.randn(2, 1, 50), lengths=torch.tensor([50, 51]))
    with pytest.raises(ValueError, match="codes must lie"):
        m.decode(torch.full((1, 1, 3), 32))
    with pytest.raises(ValueError, match="length must be"):
        m.decode(torch.zeros(1, 1, 3, dtype=torch.long), length=49)


@pytest.mark.parametrize("dtype", [None, torch.float16])
def test_save_load_round_trip_gives_identical_codes(tmp_path, dtype):
    m = tiny(n_q=2)
    m.train()(torch.randn(2, 1, 800))  # data init, so the stored model is a trained-looking one
    m.eval()
    mid = m.save_pretrained(tmp_path, dtype=dtype)
    loaded = SimVQCodec.from_pretrained(tmp_path)
    assert loaded.model_id == mid == read_model_meta(tmp_path)["model_id"]
    x = torch.randn(3, 1, 1000)
    if dtype is None:
        assert mid == m.model_id
        assert torch.equal(loaded.encode(x), m.encode(x))
    assert torch.equal(loaded.encode(x), SimVQCodec.from_pretrained(tmp_path).encode(x))
    stored = json.loads((tmp_path / CONFIG_NAME).read_text())
    assert stored["format"] == "simvq-audio-codec" and stored["format_version"] == 1
    # the frozen codebook is rebuilt from its seed, never stored
    from safetensors.torch import load_file

    assert not any("base_codebook" in k for k in load_file(str(tmp_path / WEIGHTS_NAME)))


def test_loading_is_strict(tmp_path):
    m = tiny()
    m.save_pretrained(tmp_path / "ok")
    meta = json.loads((tmp_path / "ok" / CONFIG_NAME).read_text())

    def variant(name, edit):
        d = tmp_path / name
        d.mkdir()
        (d / WEIGHTS_NAME).write_bytes((tmp_path / "ok" / WEIGHTS_NAME).read_bytes())
        data = json.loads(json.dumps(meta))
        edit(data)
        (d / CONFIG_NAME).write_text(json.dumps(data))
        return d

    with pytest.raises(ModelLoadError, match="unknown config key 'config.seanet.colour'"):
        SimVQCodec.from_pretrained(variant("unknown", lambda d: d["config"]["seanet"].update(colour=1)))
    with pytest.raises(ModelLoadError, match="do not match the config"):
        SimVQCodec.from_pretrained(variant("shape", lambda d: d["config"]["seanet"].update(n_filters=8)))
    with pytest.raises(ModelLoadError, match="version 2 is not supported"):
        SimVQCodec.from_pretrained(variant("version", lambda d: d.update(format_version=2)))
    with pytest.raises(ModelLoadError, match="model id"):
        SimVQCodec.from_pretrained(variant("id", lambda d: d.update(model_id="0" * 16)))
    with pytest.raises(ModelLoadError, match="fingerprint mismatch") as info:
        SimVQCodec.from_pretrained(variant("seed", lambda d: (d["config"]["quantizer"].update(seed=5), d.pop("model_id"))))
    assert isinstance(info.value.__cause__, CodebookMismatchError)
    with pytest.raises(ModelLoadError, match="not a model folder"):
        SimVQCodec.from_pretrained(tmp_path / "nowhere")
    broken = variant("broken", lambda d: None)
    (broken / WEIGHTS_NAME).write_bytes(b"garbage")
    with pytest.raises(ModelLoadError, match="unreadable weights"):
        SimVQCodec.from_pretrained(broken)


def test_float64_audio_is_converted_int_is_refused():
    m = tiny()
    x = torch.randn(1, 1, 333)
    assert torch.equal(m.encode(x.double()), m.encode(x))
    with pytest.raises(ValueError, match="floating point"):
        m.encode((x * 1000).to(torch.int16))


def test_soft_voicing_scales_the_sines_by_the_voicing_probability():
    """``soft_voicing``: the sines' amplitude is the pitch head's voicing probability (hard: 1 above 0.5,
    else 0); at a saturated probability both decode alike, in between only the soft one keeps harmonics."""
    from simvq_audio.models.pretrained import _canonical_config

    def build(soft):
        torch.manual_seed(0)
        return SimVQCodec(CodecConfig(sample_rate=16000, seanet=SEANetConfig(n_filters=4, ratios=(4, 4), dimension=8,
                                                                             lstm=0),
                                      quantizer=QuantizerConfig(codebook_size=32, dim=4), pitch_head=True,
                                      harmonic_branch=4, soft_voicing=soft)).eval()

    hard, soft = build(False), build(True)
    prob = torch.tensor([[0.1, 0.4, 0.6, 0.99]])
    assert torch.equal(hard.voicing(prob), torch.tensor([[0.0, 0.0, 1.0, 1.0]])) and torch.equal(soft.voicing(prob), prob)
    with torch.no_grad():
        for m in (hard, soft):
            m.harmonic.amplitudes.bias.fill_(0.0)
    codes = torch.randint(0, 32, (1, 1, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for m in (hard, soft):
            m.pitch_head.net[-1].bias.copy_(torch.tensor([30.0, 1.0]))  # voiced for sure
    torch.testing.assert_close(soft.decode(codes), hard.decode(codes), atol=1e-6, rtol=0)
    with torch.no_grad():
        for m in (hard, soft):
            m.pitch_head.net[-1].bias.copy_(torch.tensor([-1.0, 1.0]))  # voicing probability below 0.5
    assert float((soft.decode(codes) - hard.decode(codes)).abs().max()) > 1e-3
    assert "soft_voicing" not in _canonical_config(hard.config) and "soft_voicing" in _canonical_config(soft.config)
