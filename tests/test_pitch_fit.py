"""Refitting a model's pitch head on pYIN targets: the targets, their cache, the windows, the fit, the command."""

import json
import math
import os

import numpy as np
import pytest
import soundfile as sf
import torch

from simvq_audio.cli import main
from simvq_audio.models import CodecConfig, SimVQCodec
from simvq_audio.modules import SEANetConfig
from simvq_audio.quantization import QuantizerConfig
from simvq_audio.training.pitch_fit import (
    PitchFitConfig,
    PitchItem,
    TargetCache,
    _head_logits,
    _windows,
    compute_targets,
    fit_pitch_head,
    head_metrics,
    pyin_targets,
)

SR, HOP = 16000, 200


def tone(f0: float, seconds: float, harmonics: int = 5) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    return sum(np.sin(2 * math.pi * f0 * k * t) / k for k in range(1, harmonics + 1)).astype(np.float32) * 0.2


def test_pyin_targets_follow_the_codec_frames_and_find_the_tone():
    x = np.concatenate([np.zeros(4000, np.float32), tone(150.0, 0.5), np.zeros(4100, np.float32)])
    f0, voiced = pyin_targets(x, SR, HOP)
    assert f0.shape == voiced.shape == (-(-len(x) // HOP),)  # ceil(N / hop), as the codes
    assert voiced[24:55].all() and not voiced[:15].any() and not voiced[-15:].any()
    assert np.all(np.abs(1200 * np.log2(f0[24:55] / 150.0)) < 20)
    assert np.all(f0[~voiced] == 0)
    f0_short, voiced_short = pyin_targets(np.zeros(50, np.float32), SR, HOP)
    assert f0_short.shape == (1,) and not voiced_short.any()


def test_target_cache_round_trips_and_misses_when_the_file_changes(tmp_path):
    audio = tmp_path / "a.wav"
    sf.write(audio, tone(200.0, 0.4), SR)
    cache = TargetCache(tmp_path / "cache")
    assert cache.get(audio, SR, HOP) is None
    (f0, voiced), = compute_targets([audio], SR, HOP, tmp_path / "cache")
    hit = cache.get(audio, SR, HOP)
    assert hit is not None and np.array_equal(hit[0], f0) and np.array_equal(hit[1], voiced)
    assert cache.get(audio, SR, 160) is None  # another hop is another entry
    copy = tmp_path / "copy" / "b.wav"  # the same audio elsewhere, with another mtime: the content decides
    copy.parent.mkdir()
    copy.write_bytes(audio.read_bytes())
    os.utime(audio, ns=(2, 2))
    memos = tmp_path / "cache" / "digests"
    before = set(memos.glob("*.txt"))
    for same in (audio, copy):
        hit = cache.get(same, SR, HOP)
        assert hit is not None and np.array_equal(hit[0], f0)
    assert len(before) == 1 and len(set(memos.glob("*.txt")) - before) == 2  # one per (path, size, mtime)
    for memo in set(memos.glob("*.txt")) - before:  # unchanged files are not read again: the memo decides
        memo.write_text("f" * 40 + "\n")
    assert cache.get(audio, SR, HOP) is None and cache.get(copy, SR, HOP) is None
    sf.write(audio, tone(200.0, 0.5), SR)  # rewritten: size and mtime change
    os.utime(audio, ns=(1, 1))
    assert cache.get(audio, SR, HOP) is None
    assert TargetCache(None).get(audio, SR, HOP) is None


def synthetic_items(n: int, seed: int, dim: int = 8) -> list[PitchItem]:
    """Latents whose channel 0 says voiced (+1 / -1) and channel 1 holds log2(F0 / 100); the rest is noise."""
    gen = torch.Generator().manual_seed(seed)
    items = []
    for i in range(n):
        t = 60 + 17 * i
        voiced = torch.rand(t, generator=gen) > 0.4
        f0 = torch.where(voiced, 80 + 200 * torch.rand(t, generator=gen), torch.zeros(t))
        latent = torch.randn(dim, t, generator=gen) * 0.3
        latent[0] = voiced.float() * 2 - 1
        latent[1] = torch.where(voiced, torch.log2(f0.clamp(min=1) / 100), torch.zeros(t))
        items.append(PitchItem(f"item{i}", latent, f0, voiced))
    return items


@pytest.mark.parametrize("kernel,layers", [(3, 1), (5, 2)])
def test_windows_give_the_head_the_outputs_it_gives_on_whole_items(kernel, layers):
    from simvq_audio.modules.pitch_head import PitchHead

    torch.manual_seed(0)
    head = PitchHead(8, 16, kernel, layers).eval()
    assert head.context == layers * (kernel // 2)
    items = synthetic_items(3, seed=1)
    picks = [(0, 0), (1, 40), (2, 77), (0, 50), (2, 2)]  # the start, the middle, the end, past the end
    lat, f0, voiced, mask, inside = _windows(items, picks, 20, head.context)
    with torch.no_grad():
        out = _head_logits(head, lat, inside, head.context)
        for b, (i, start) in enumerate(picks):
            full = head(items[i].latent[None])[0]
            n = int(mask[b].sum())
            assert n == min(20, items[i].latent.shape[-1] - start)
            torch.testing.assert_close(out[b, :, :n], full[:, start:start + n], rtol=0, atol=1e-5)
            assert torch.equal(f0[b, :n], items[i].f0[start:start + n])
            assert torch.equal(voiced[b, :n], items[i].voiced[start:start + n])


def test_fit_learns_voicing_and_f0_and_is_reproducible():
    from simvq_audio.modules.pitch_head import PitchHead

    train, held_out = synthetic_items(6, seed=2), synthetic_items(3, seed=3)
    config = PitchFitConfig(steps=300, batch_size=8, window=32, lr=3e-3, seed=0)
    torch.manual_seed(0)
    head = PitchHead(8)
    before = head_metrics(head, held_out)
    rows = fit_pitch_head(head, train, config, log_every=100)
    after = head_metrics(head, held_out)
    assert [r["step"] for r in rows] == [100, 200, 300] and rows[-1]["loss"] < rows[0]["loss"]
    assert after["voicing_f1"] > 0.97 and after["voicing_f1"] > before["voicing_f1"]
    assert after["gross_pitch_error"] < 0.05 and after["pitch_rmse_cents"] < before["pitch_rmse_cents"]
    torch.manual_seed(0)
    again = PitchHead(8)
    fit_pitch_head(again, train, config, log_every=100)
    for a, b in zip(head.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="no files"):
        fit_pitch_head(head, [], config)
    with pytest.raises(ValueError, match="steps"):
        PitchFitConfig(steps=0)


def tiny_model_dir(tmp_path, pitch_head=True):
    torch.manual_seed(0)
    cfg = CodecConfig(sample_rate=SR, seanet=SEANetConfig(n_filters=4, ratios=(8, 5, 5), dimension=8, lstm=0),
                      quantizer=QuantizerConfig(codebook_size=32, dim=4), pitch_head=pitch_head)
    directory = tmp_path / ("model" if pitch_head else "plain")
    SimVQCodec(cfg).eval().save_pretrained(directory)
    return directory


def write_manifest(tmp_path, name, tones):
    rows = []
    for i, f0 in enumerate(tones):
        path = tmp_path / f"{name}{i}.wav"
        x = np.concatenate([np.zeros(1600, np.float32), tone(f0, 0.6), np.zeros(1600, np.float32)])
        sf.write(path, x, SR)
        rows.append({"path": path.name, "duration": len(x) / SR})
    manifest = tmp_path / f"{name}.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def test_command_refits_only_the_head_so_the_tokens_do_not_change(tmp_path, capsys):
    model = tiny_model_dir(tmp_path)
    train = write_manifest(tmp_path, "train", [110.0, 160.0, 230.0])
    valid = write_manifest(tmp_path, "valid", [130.0])
    out = tmp_path / "refit"
    code = main(["fit-pitch-head", str(train), "--model", str(model), "-o", str(out), "--valid", str(valid),
                 "--steps", "30", "--batch-size", "4", "--window", "16", "--cache", str(tmp_path / "cache")])
    assert code == 0
    printed = capsys.readouterr().out
    assert "voicing_f1" in printed and "tokens unchanged" in printed
    old, new = SimVQCodec.from_pretrained(model), SimVQCodec.from_pretrained(out)
    for key, value in old.state_dict().items():
        assert key.startswith("pitch_head.") or torch.equal(value, new.state_dict()[key]), key
    assert any(not torch.equal(v, new.state_dict()[k]) for k, v in old.state_dict().items() if k.startswith("pitch_head."))
    x = torch.from_numpy(tone(140.0, 0.5))[None, None]
    assert torch.equal(old.encode(x), new.encode(x))
    report = json.loads((out / "pitch_head_fit.json").read_text())
    assert report["files"] == 3 and report["valid_after"]["voiced_share"] > 0.5 and len(report["log"]) == 10
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 4

    # The output is never overwritten, a model without a head is refused, and bad settings are named.
    assert main(["fit-pitch-head", str(train), "--model", str(model), "-o", str(out)]) == 1
    assert "never overwritten" in capsys.readouterr().err
    assert main(["fit-pitch-head", str(train), "--model", str(tiny_model_dir(tmp_path, False)),
                 "-o", str(tmp_path / "x")]) == 1
    assert "no pitch head" in capsys.readouterr().err and not (tmp_path / "x").exists()
    assert main(["fit-pitch-head", str(train), "--model", str(model), "-o", str(tmp_path / "y"),
                 "--steps", "0"]) == 1
    assert "--steps" in capsys.readouterr().err
    assert main(["fit-pitch-head", str(tmp_path / "missing.jsonl"), "--model", str(model),
                 "-o", str(tmp_path / "z")]) == 1
    assert "missing.jsonl" in capsys.readouterr().err


def test_command_can_give_the_model_a_wider_head(tmp_path, capsys):
    model = tiny_model_dir(tmp_path)
    train = write_manifest(tmp_path, "train", [120.0, 200.0])
    out = tmp_path / "wide"
    assert main(["fit-pitch-head", str(train), "--model", str(model), "-o", str(out), "--width", "16",
                 "--kernel", "5", "--layers", "2", "--steps", "10", "--batch-size", "2", "--window", "12"]) == 0
    old, new = SimVQCodec.from_pretrained(model), SimVQCodec.from_pretrained(out)
    c = new.config
    assert (c.pitch_head_width, c.pitch_head_kernel, c.pitch_head_layers) == (16, 5, 2)
    assert new.pitch_head.context == 4 and len(new.pitch_head.net) == 5
    x = torch.from_numpy(tone(140.0, 0.5))[None, None]
    codes = old.encode(x)
    assert torch.equal(codes, new.encode(x))
    f0, prob = new.predict_pitch(codes)
    assert f0.shape == prob.shape == (1, codes.shape[-1]) and torch.isfinite(f0).all()
    assert main(["fit-pitch-head", str(train), "--model", str(model), "-o", str(tmp_path / "bad"),
                 "--kernel", "4"]) == 1
    assert "pitch_head_kernel" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_a_refitted_wide_head_warm_starts_a_run_and_a_mismatched_shape_is_named(tmp_path):
    """A later stage (``training.init_parts=[...,pitch_head]``) takes the wide head when the config gives its
    shape, and names the differing field when it does not; freezing the part stops its gradients."""
    import dataclasses

    from simvq_audio.training.checkpoint import CheckpointError
    from simvq_audio.training.parts import freeze
    from simvq_audio.training.warm_start import warm_start

    torch.manual_seed(0)
    cfg = CodecConfig(sample_rate=SR, seanet=SEANetConfig(n_filters=4, ratios=(8, 5, 5), dimension=8, lstm=0),
                      quantizer=QuantizerConfig(codebook_size=32, dim=4), pitch_head=True, pitch_head_width=16,
                      pitch_head_kernel=5, pitch_head_layers=2)
    SimVQCodec(cfg).eval().save_pretrained(tmp_path / "wide")
    torch.manual_seed(1)
    generator = SimVQCodec(cfg)
    warm_start(generator, tmp_path / "wide", ("encoder", "quantizer", "pitch_head"))
    source = SimVQCodec.from_pretrained(tmp_path / "wide")
    for key, value in source.state_dict().items():
        if key.startswith(("pitch_head.", "encoder.", "quantizer.")):
            assert torch.equal(value, generator.state_dict()[key]), key
    assert freeze(generator, ["pitch_head"]) == sum(p.numel() for p in generator.pitch_head.parameters())
    assert not any(p.requires_grad for p in generator.pitch_head.parameters())
    narrow = SimVQCodec(dataclasses.replace(cfg, pitch_head_kernel=3))
    with pytest.raises(CheckpointError, match="pitch_head_kernel"):
        warm_start(narrow, tmp_path / "wide", ("pitch_head",))
