"""YIN targets, the pitch head and its loss: known tones, silence, gradients into the encoder."""

import math

import pytest
import torch

from simvq_audio.losses.pitch import PitchLoss, yin
from simvq_audio.models import CodecConfig, SimVQCodec
from simvq_audio.modules import SEANetConfig
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
