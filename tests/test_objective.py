"""The codec objective: the generator's pass through D on fakes alone gives the same loss."""

import torch

from simvq_audio.discriminators import DiscriminatorConfig, build_discriminator
from simvq_audio.models import CodecConfig, SimVQCodec
from simvq_audio.modules import SEANetConfig
from simvq_audio.quantization import QuantizerConfig
from simvq_audio.training.config import LossConfig
from simvq_audio.training.objective import CodecObjective, frozen


def test_reused_real_feature_maps_give_the_same_generator_loss_and_gradient():
    torch.manual_seed(0)
    codec = SimVQCodec(CodecConfig(sample_rate=16000, seanet=SEANetConfig(n_filters=4, ratios=(4, 4), dimension=8,
                                                                          lstm=0),
                                   quantizer=QuantizerConfig(codebook_size=32, dim=4))).train()
    disc = build_discriminator(DiscriminatorConfig(periods=(2, 3), mpd_channels=2, use_stft=False, use_mrd=True,
                                                   mrd_channels=2, mrd_n_ffts=(128,), mrd_hop_lengths=(32,)))
    objective = CodecObjective(LossConfig(), 16000)
    real = torch.randn(2, 1, 800) * 0.1
    out = codec(real)
    _, _, real_fmaps = objective.discriminator_loss(disc, out.audio, real)
    assert all(not f.requires_grad for fm in real_fmaps for f in fm)
    results = []
    for reuse in (None, real_fmaps):
        codec.zero_grad()
        out = codec(real)
        with frozen(disc):
            loss, logs = objective.generator_loss(out, out.audio, real, disc, real_fmaps=reuse)
        loss.backward()
        results.append((loss.detach(), logs["loss/feature_matching"],
                        torch.cat([p.grad.flatten() for p in codec.decoder.parameters()])))
    (l0, fm0, g0), (l1, fm1, g1) = results
    torch.testing.assert_close(l1, l0, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fm1, fm0, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g1, g0, rtol=1e-4, atol=1e-6)
    assert fm0 > 0
