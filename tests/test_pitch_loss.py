"""YIN targets, the pitch head and its loss: known tones, silence, gradients into the encoder."""

import math

import pytest
import torch

from simvq_audio.losses.pitch import PitchLoss
from simvq_audio.models import CodecConfig, SimVQCodec
from simvq_audio.modules import SEANetConfig
from simvq_audio.modules.yin import yin
from simvq_audio.quantization import QuantizerConfig

SR, HOP = 16000, 200


def tone(f0: float, seconds: float = 0.5, harmonics: int = 5) -> torch.Tensor:
    t = torch.arange(int(SR * seconds)) / SR
    return sum(torch.sin(2 * math.pi * f0 * k * t) / k for k in range(1, harmonics + 1))


@pytest.mark.parametrize("f0", [70.0, 110.0, 220.0, 440.0])
def test_yin_finds_the_f0_of_harmonic_tones(f0):
    est, voiced = yin(tone(f0)[None], SR, HOP)
    assert est.shape == voiced.shape == (1, 40)  # ceil(8000 / 200) frames, the codec's framing
    inner = est[0, 3:-3]
    assert voiced[0, 3:-3].all() and torch.allclose(inner, torch.full_like(inner, f0), rtol=0.01)


def test_yin_calls_noise_and_silence_unvoiced_and_frames_follow_the_codec():
    gen = torch.Generator().manual_seed(0)
    x = torch.cat([torch.zeros(4000), tone(150.0, 0.25), torch.randn(4000, generator=gen) * 0.3])
    est, voiced = yin(x[None, None], SR, HOP)
    assert voiced.shape == (1, 60)
    assert not voiced[0, :18].any() and voiced[0, 22:38].all() and voiced[0, 43:].float().mean() < 0.1
    assert torch.all(est[~voiced] == 0)
    with pytest.raises(ValueError, match=r"\[B, N\]"):
        yin(torch.zeros(3), SR, HOP)


def test_pitch_loss_is_zero_for_a_perfect_prediction_and_masks_padding():
    x = torch.stack([tone(200.0), tone(100.0)])
    f0, voiced = yin(x, SR, HOP)
    logit = torch.where(voiced, 30.0, -30.0)
    octaves = torch.log2(f0.clamp(min=1) / 100)
    loss, logs = PitchLoss(SR, HOP)(torch.stack([logit, octaves], 1), x)
    assert loss < 1e-6 and 0.8 < logs["pitch/voiced_share"] <= 1
    wrong = torch.stack([logit, octaves + 1.0], 1)  # an octave too high everywhere
    loss, logs = PitchLoss(SR, HOP)(wrong, x)
    assert logs["loss/pitch_octaves"] == pytest.approx(1.0, abs=1e-4)
    mask = torch.zeros_like(voiced)
    mask[:, :5] = True
    masked, _ = PitchLoss(SR, HOP)(torch.stack([logit, octaves], 1), x, mask)
    assert masked < 1e-6
    with pytest.raises(ValueError, match="does not match"):
        PitchLoss(SR, HOP)(torch.zeros(2, 2, 7), x)


def test_pitch_head_trains_the_encoder_and_reads_f0_off_codes():
    torch.manual_seed(0)
    cfg = CodecConfig(sample_rate=SR, seanet=SEANetConfig(n_filters=4, ratios=(8, 5, 5), dimension=8, lstm=0),
                      quantizer=QuantizerConfig(codebook_size=32, dim=4), pitch_head=True)
    codec = SimVQCodec(cfg).train()
    x = tone(180.0)[None, None] * 0.3
    out = codec(x)
    assert out.pitch.shape == (1, 2, 40)
    loss, _ = PitchLoss(SR, HOP)(out.pitch, x, out.frame_mask)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in codec.encoder.parameters())
    codec.eval()
    f0, prob = codec.predict_pitch(codec.encode(x))
    assert f0.shape == prob.shape == (1, 40) and torch.all(f0 > 0) and torch.all((prob >= 0) & (prob <= 1))
    plain = SimVQCodec(CodecConfig(sample_rate=SR, seanet=cfg.seanet, quantizer=cfg.quantizer)).eval()
    assert plain.pitch_head is None and plain(x).pitch is None
    with pytest.raises(ValueError, match="no pitch head"):
        plain.predict_pitch(plain.encode(x))


def source_filter_codec(seed=0) -> SimVQCodec:
    torch.manual_seed(seed)
    cfg = CodecConfig(sample_rate=SR, seanet=SEANetConfig(n_filters=4, ratios=(8, 5, 5), dimension=8, lstm=0),
                      quantizer=QuantizerConfig(codebook_size=32, dim=4), pitch_head=True, pitch_features=True,
                      excitation_harmonics=4)
    codec = SimVQCodec(cfg)
    for p in (*codec.pitch_proj.parameters(), *codec.decoder.inject.parameters()):
        torch.nn.init.normal_(p, std=0.1)  # as after training; they start at zero
    return codec.eval()


def test_harmonic_excitation_is_the_f0_and_its_multiples_below_nyquist():
    from simvq_audio.modules.excitation import harmonic_excitation

    f0 = torch.full((1, 80), 2000.0)
    voiced = torch.ones(1, 80)
    voiced[:, 40:] = 0
    e = harmonic_excitation(f0, voiced, HOP, SR, 5)
    assert e.shape == (1, 5, 16000)
    spectrum = torch.fft.rfft(e[0, 0, 1000:7000]).abs()
    assert spectrum.argmax() * SR / 6000 == pytest.approx(2000, abs=3)
    assert torch.all(e[0, 4, :7800] == 0)  # 5 x 2000 Hz = 10 kHz > 8 kHz
    assert e[0, :, 8200:].abs().max() == 0  # unvoiced frames (after interpolation)
    lengths = torch.tensor([30])
    assert harmonic_excitation(f0, voiced, HOP, SR, 5, lengths)[..., 6000:].abs().max() == 0


def test_harmonic_sum_is_the_sum_of_the_excitation_channels():
    """The closed form (three sines per sample) equals the K channels summed, across voicing changes,
    F0 glides through the Nyquist cut-offs, the phase's wrap and padded items."""
    from simvq_audio.modules.excitation import harmonic_excitation, harmonic_sum

    gen = torch.Generator().manual_seed(7)
    f0 = torch.rand(3, 60, generator=gen) * 500 + 50
    voiced = (torch.rand(3, 60, generator=gen) > 0.25).float()
    lengths = torch.tensor([60, 41, 7])
    for k in (1, 5, 48, 200):
        channels = harmonic_excitation(f0, voiced, HOP, SR, k, lengths)
        total = harmonic_sum(f0, voiced, HOP, SR, k, lengths)
        assert total.shape == (3, 1, 60 * HOP) and torch.isfinite(total).all()
        scale = float(channels.sum(1).abs().max())
        assert scale > 0.5 * min(k, 16)
        torch.testing.assert_close(total, channels.sum(1, keepdim=True), rtol=0, atol=2e-5 * scale)


def test_source_filter_codec_keeps_lengths_and_batch_equals_single():
    codec = source_filter_codec()
    lengths = [3000, 16000, 801]
    gen = torch.Generator().manual_seed(5)
    items = [tone(float(f), n / SR)[None, None] * 0.3 + 0.01 * torch.randn(1, 1, n, generator=gen)
             for f, n in zip((120, 230, 90), lengths, strict=True)]
    batch = torch.zeros(3, 1, max(lengths))
    for i, x in enumerate(items):
        batch[i, :, : x.shape[-1]] = x
    codes = codec.encode(batch, lengths=torch.tensor(lengths))
    frames = [codec.num_frames(n) for n in lengths]
    audio = codec.decode(codes, frame_lengths=torch.tensor(frames))
    for i, x in enumerate(items):
        alone = codec.encode(x)
        assert torch.equal(codes[i : i + 1, :, : frames[i]], alone)
        torch.testing.assert_close(audio[i : i + 1, :, : frames[i] * HOP], codec.decode(alone), rtol=1e-4, atol=1e-5)
        assert codec.decode(alone, lengths[i]).shape == (1, 1, lengths[i])


def test_source_filter_training_uses_yin_and_gradients_reach_the_new_parts():
    codec = source_filter_codec().train()
    x = tone(150.0)[None, None] * 0.3
    out = codec(x)
    (out.audio.square().mean() + out.pitch.square().mean()).backward()
    for module in (codec.pitch_proj, codec.decoder.inject, codec.pitch_head):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
    with pytest.raises(ValueError, match="need pitch_head"):
        CodecConfig(excitation_harmonics=4)


def test_harmonic_branch_adds_f0_multiples_and_keeps_batch_equal_single():
    torch.manual_seed(0)
    cfg = CodecConfig(sample_rate=SR, seanet=SEANetConfig(n_filters=4, ratios=(8, 5, 5), dimension=8, lstm=0),
                      quantizer=QuantizerConfig(codebook_size=32, dim=4), pitch_head=True, pitch_features=True,
                      harmonic_branch=6)
    codec = SimVQCodec(cfg).train()
    x = tone(200.0, 1.0)[None, None] * 0.3
    quiet = codec(x).audio
    torch.nn.init.constant_(codec.harmonic.amplitudes.bias, -1.0)  # louder harmonics: amplitude e^-1 each
    loud = codec(x).audio
    spectrum = torch.fft.rfft((loud - quiet)[0, 0, 2000:14000].detach()).abs()
    peaks = (torch.topk(spectrum, 6).indices.float() * SR / 12000).sort().values
    assert torch.allclose(peaks, torch.tensor([200.0, 400, 600, 800, 1000, 1200]), atol=3)  # YIN's F0 in training
    quiet.square().mean().backward()
    assert codec.harmonic.amplitudes.weight.grad is not None
    codec.eval()
    lengths = [2400, 16000]
    batch = torch.zeros(2, 1, 16000)
    batch[0, :, :2400], batch[1] = x[..., :2400], x[0]
    codes = codec.encode(batch, lengths=torch.tensor(lengths))
    audio = codec.decode(codes, frame_lengths=torch.tensor([12, 80]))
    torch.testing.assert_close(audio[:1, :, :2400], codec.decode(codec.encode(x[..., :2400])), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("forcing", [True, False])
def test_teacher_forcing_chooses_the_training_excitations_f0(forcing):
    """teacher_forcing=True: in training the sines follow YIN's F0 of the input; False: the pitch head's,
    so the training forward decodes exactly as decode() does from the same codes."""
    import dataclasses

    codec = source_filter_codec(seed=3)
    codec = SimVQCodec(dataclasses.replace(codec.config, teacher_forcing=forcing,
                                           quantizer=QuantizerConfig(codebook_size=32, dim=4, data_init=False)))
    for p in (*codec.pitch_proj.parameters(), *codec.decoder.inject.parameters()):
        torch.nn.init.normal_(p, std=0.1)
    with torch.no_grad():
        codec.pitch_head.net[-1].bias.copy_(torch.tensor([2.0, 1.0]))  # voiced at 200 Hz, unlike the input
    x = tone(150.0, 0.5)[None, None] * 0.3
    trained = codec.train()(x, generator=torch.Generator().manual_seed(0))
    codec.eval()
    decoded = codec.decode(trained.codes, x.shape[-1])
    same = torch.allclose(trained.audio, decoded, rtol=1e-4, atol=1e-5)
    assert same != forcing
