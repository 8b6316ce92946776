"""Training config (YAML + overrides -> TrainConfig), the LR schedule, EMA and the guard: no training here."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from simvq_audio.dataclass_dicts import ConfigError
from simvq_audio.training.checkpoint import TrainState, find_checkpoint, latest_checkpoint, list_checkpoints
from simvq_audio.training.config import (
    TrainConfig,
    apply_overrides,
    config_to_yaml,
    load_config,
    parse_override,
)
from simvq_audio.training.ema import EMA
from simvq_audio.training.guard import NonFiniteError, NonFiniteGuard
from simvq_audio.training.schedule import ScheduleConfig, lr_at, make_scheduler

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# -- config -------------------------------------------------------------------------------
def test_recipes_parse():
    for name in ("tiny", "libritts"):
        cfg = load_config(RECIPES / name / "config.yaml")
        assert isinstance(cfg, TrainConfig)
        assert Path(cfg.data.train_manifest).is_absolute()
    tiny = load_config(RECIPES / "tiny" / "config.yaml")
    assert tiny.data.train_manifest == str((REPO.parent / "shared" / "data" / "train.jsonl").resolve())
    libritts = load_config(RECIPES / "libritts" / "config.yaml")
    assert libritts.model.sample_rate == 24000
    assert libritts.model.seanet.ratios == (8, 5, 4, 2)
    assert libritts.model.quantizer.codebook_size == 65536


def test_unknown_key_is_named(tmp_path):
    cfg = write(tmp_path / "c.yaml", "data: {train_manifest: t.jsonl}\ntraining: {max_stepz: 3}\n")
    with pytest.raises(ConfigError, match=r"training\.max_stepz"):
        load_config(cfg)
    with pytest.raises(ConfigError, match=r"'bogus'"):
        load_config(write(tmp_path / "d.yaml", "bogus: 1\ndata: {train_manifest: t.jsonl}\n"))
    with pytest.raises(ConfigError, match=r"'bogus'"):
        load_config(tmp_path / "d.yaml", ["bogus=null"])  # an override cannot delete a key
    ok = write(tmp_path / "ok.yaml", "data: {train_manifest: t.jsonl}\n")
    with pytest.raises(ConfigError, match=r"model\.seanet\.n_filterz"):
        load_config(ok, ["model.seanet.n_filterz=3"])


def test_type_and_value_errors(tmp_path):
    cfg = write(tmp_path / "c.yaml", "data: {train_manifest: t.jsonl}\n")
    with pytest.raises(ConfigError, match=r"training\.max_steps: expected an integer"):
        load_config(cfg, ["training.max_steps=lots"])
    with pytest.raises(ConfigError, match="mixed_precision"):
        load_config(cfg, ["training.mixed_precision=fp8"])
    with pytest.raises(ConfigError, match=r"optimizer\.generator\.betas: expected 2 items"):
        load_config(cfg, ["optimizer.generator.betas=[0.5]"])
    with pytest.raises(ConfigError, match="train_manifest is required"):
        load_config(write(tmp_path / "e.yaml", "training: {max_steps: 3}\n"))
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(write(tmp_path / "f.yaml", "- 1\n- 2\n"))


def test_overrides(tmp_path):
    cfg = write(tmp_path / "c.yaml", "data: {train_manifest: t.jsonl}\ntraining: {max_steps: 3}\n")
    out = load_config(cfg, ["training.max_steps=7", "optimizer.generator.betas=[0.5, 0.9]",
                            "model.seanet.ratios=[4,4]", "loss.mel=15", "training.cpu=true",
                            "data.gain_db=[-6, 3]", "optimizer.discriminator.grad_clip=null"])
    assert out.training.max_steps == 7
    assert out.optimizer.generator.betas == (0.5, 0.9)
    assert out.model.seanet.ratios == (4, 4)
    assert out.loss.mel == 15.0 and isinstance(out.loss.mel, float)
    assert out.training.cpu is True
    assert out.data.gain_db == (-6.0, 3.0)
    assert out.optimizer.discriminator.grad_clip is None
    assert parse_override("a.b=[1, 2]") == ("a.b", [1, 2])
    assert parse_override("a=") == ("a", "")
    for bad in ("novalue", "=3", "a..b=1"):
        with pytest.raises(ConfigError, match="override"):
            parse_override(bad)
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides({"training": {"max_steps": 3}}, ["training.max_steps.x=1"])


def test_paths_relative_to_config_and_cwd(tmp_path, monkeypatch):
    sub = tmp_path / "recipe"
    sub.mkdir()
    cfg = write(sub / "c.yaml", "data: {train_manifest: ../data/t.jsonl}\nlogging: {dir: runs/x}\n"
                                "validation: {files: [a.wav, /abs/b.wav]}\ncheckpoint: {resume: auto}\n")
    out = load_config(cfg)
    assert out.data.train_manifest == str(tmp_path / "data" / "t.jsonl")
    assert out.logging.dir == str(sub / "runs" / "x")
    assert out.validation.files == (str(sub / "a.wav"), "/abs/b.wav")
    assert out.checkpoint.resume == "auto"
    assert out.checkpoint_dir == sub / "runs" / "x" / "checkpoints"
    monkeypatch.chdir(tmp_path)
    out = load_config(cfg, ["logging.dir=elsewhere", "checkpoint.resume=runs/ck", "checkpoint.dir=/tmp/ck"])
    assert out.logging.dir == str(tmp_path / "elsewhere")
    assert out.checkpoint.resume == str(tmp_path / "runs" / "ck")
    assert out.checkpoint_dir == Path("/tmp/ck")
    assert load_config(cfg, ["checkpoint.resume=none"]).checkpoint.resume == "none"
    # A model to start from: a path like the others, a built-in name kept as it is.
    assert load_config(cfg, ["training.init_from=models/m"]).training.init_from == str(tmp_path / "models" / "m")
    assert load_config(cfg, ["training.init_from=default"]).training.init_from == "default"


def test_yaml_round_trip(tmp_path):
    cfg = load_config(RECIPES / "tiny" / "config.yaml", ["training.max_steps=11"])
    again = load_config(write(tmp_path / "again.yaml", config_to_yaml(cfg)))
    assert again == cfg


# -- schedule -----------------------------------------------------------------------------
def test_schedule_warmup_and_cosine():
    cfg = ScheduleConfig(kind="cosine", warmup_steps=10, total_steps=110, min_factor=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1)
    assert lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(10, cfg) == pytest.approx(1.0)
    assert lr_at(60, cfg) == pytest.approx(0.55)  # half way down the cosine
    assert lr_at(110, cfg) == pytest.approx(0.1)
    assert lr_at(10_000, cfg) == pytest.approx(0.1)
    values = [lr_at(s, cfg) for s in range(10, 120)]
    assert all(a >= b for a, b in zip(values[:-1], values[1:], strict=True))
    assert lr_at(60, cfg, peak_lr=3e-4) == pytest.approx(0.55 * 3e-4)
    with pytest.raises(ValueError):
        lr_at(-1, cfg)


def test_schedule_exponential_constant_and_errors():
    exp = ScheduleConfig(kind="exponential", warmup_steps=0, gamma=0.5, min_factor=0.01)
    assert [lr_at(s, exp) for s in range(3)] == [1.0, 0.5, 0.25]
    assert lr_at(100, exp) == 0.01
    const = ScheduleConfig(kind="constant", warmup_steps=4)
    assert [lr_at(s, const) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    for bad in ({"kind": "linear"}, {"warmup_steps": -1}, {"min_factor": 2.0}, {"gamma": 0.0}):
        with pytest.raises(ValueError):
            ScheduleConfig(**bad)


def test_scheduler_follows_lr_at():
    cfg = ScheduleConfig(kind="cosine", warmup_steps=3, total_steps=10)
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=2e-3)
    sched = make_scheduler(opt, cfg)
    for step in range(12):
        assert opt.param_groups[0]["lr"] == pytest.approx(lr_at(step, cfg, 2e-3))
        opt.step()
        sched.step()
    state = sched.state_dict()
    opt2 = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=2e-3)
    sched2 = make_scheduler(opt2, cfg)
    sched2.load_state_dict(state)
    assert sched2.last_epoch == 12


# -- EMA, guard, checkpoint folders --------------------------------------------------------
def test_ema():
    model = torch.nn.Linear(3, 2)
    ema = EMA(model, decay=0.9)
    assert not any(p.requires_grad for p in ema.model.parameters())
    with torch.no_grad():
        model.weight.add_(1.0)
    before = ema.model.weight.clone()
    d = ema.current_decay()
    assert d == pytest.approx(0.1)  # warm-up: min(decay, 1/10)
    ema.update(model)
    assert torch.allclose(ema.model.weight, d * before + (1 - d) * model.weight)
    copy = EMA(torch.nn.Linear(3, 2), decay=0.0)
    copy.load_state_dict(ema.state_dict())
    assert copy.num_updates == 1 and torch.equal(copy.model.weight, ema.model.weight)
    exact = EMA(model, decay=0.0)
    with torch.no_grad():
        model.weight.mul_(3.0)
    exact.update(model)
    assert torch.equal(exact.model.weight, model.weight)
    with pytest.raises(ValueError):
        EMA(model, decay=1.0)


def test_guard():
    guard = NonFiniteGuard(patience=3)
    assert guard.is_finite(1.0, None, 2) and not guard.is_finite(1.0, math.nan) and not guard.is_finite(math.inf)
    guard.observe(False, 1)
    guard.observe(False, 2)
    guard.observe(True, 3)
    assert guard.consecutive == 0 and guard.total_skipped == 2
    guard.observe(False, 4)
    guard.observe(False, 5)
    with pytest.raises(NonFiniteError, match="3 consecutive steps.*step 6"):
        guard.observe(False, 6)
    other = NonFiniteGuard(patience=3)
    other.load_state_dict(guard.state_dict())
    assert other.total_skipped == 5


def test_checkpoint_listing(tmp_path):
    for name in ("step-00000002", "step-00000010", ".step-00000020.tmp", "notes"):
        (tmp_path / name).mkdir()
    (tmp_path / "step-00000010" / "trainer_state.json").write_text("{}")
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000002", "step-00000010"]
    assert latest_checkpoint(tmp_path).name == "step-00000010"
    assert find_checkpoint(tmp_path).name == "step-00000010"
    assert latest_checkpoint(tmp_path / "none") is None
    state = TrainState(step=5, epoch=1, batch_in_epoch=7)
    again = TrainState()
    again.load_state_dict(state.state_dict())
    assert again == state


# -- levels -------------------------------------------------------------------------------
def test_levels():
    from simvq_audio.training.config import DataConfig
    from simvq_audio.training.levels import draw_levels, rms_db, set_levels

    torch.manual_seed(0)
    audio = torch.randn(3, 1, 1000) * torch.tensor([1e-2, 1e-1, 1e-6])[:, None, None]
    audio[0, :, 500:] = 0.0  # padding after 500 valid samples
    lengths = torch.tensor([500, 1000, 1000])
    out = set_levels(audio, lengths, torch.tensor([-20.0, -20.0, -20.0]), max_boost_db=40.0)
    levels = rms_db(out, lengths)
    assert levels[:2].tolist() == pytest.approx([-20.0, -20.0], abs=1e-3)
    assert levels[2].item() == pytest.approx(rms_db(audio, lengths)[2].item() + 40.0, abs=1e-3)  # capped boost
    assert torch.all(out[0, :, 500:] == 0)
    cfg = DataConfig(train_manifest="x", loudness_db=(-30.0, -16.0), gain_db=(-6.0, 0.0))
    a = draw_levels(cfg, 64, seed=1, epoch=2, index=3, rank=0)
    assert torch.equal(a, draw_levels(cfg, 64, seed=1, epoch=2, index=3, rank=0))
    assert not torch.equal(a, draw_levels(cfg, 64, seed=1, epoch=2, index=4, rank=0))
    assert not torch.equal(a, draw_levels(cfg, 64, seed=1, epoch=2, index=3, rank=1))
    assert a.min() >= -36.0 and a.max() <= -16.0
    assert draw_levels(DataConfig(train_manifest="x", loudness_db=None), 4, 0, 0, 0, 0) is None
    with pytest.raises(ValueError, match="loudness_db"):
        DataConfig(train_manifest="x", loudness_db=(-10.0, -20.0))


def test_pitch_loss_needs_a_pitch_head(tmp_path):
    from simvq_audio.dataclass_dicts import ConfigError
    from simvq_audio.training.config import load_config

    base = ["data.train_manifest=train.jsonl"]
    with pytest.raises(ConfigError, match="loss.pitch > 0 needs model.pitch_head"):
        load_config(None, [*base, "loss.pitch=1.0"])
    cfg = load_config(None, [*base, "loss.pitch=1.0", "model.pitch_head=true", "training.freeze=[pitch_head]"])
    assert cfg.loss.pitch == 1.0 and cfg.model.pitch_head and cfg.training.freeze == ("pitch_head",)
