"""Training end to end on real speech with a tiny model: learning, resume, non-finite guard, export."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from simvq_audio.models.codec import SimVQCodec
from simvq_audio.training.checkpoint import EMA_DIR, CheckpointError, latest_checkpoint, list_checkpoints
from simvq_audio.training.config import load_config
from simvq_audio.training.export import export_checkpoint
from simvq_audio.training.guard import NonFiniteError
from simvq_audio.training.levels import set_levels
from simvq_audio.training.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
CONFIG = REPO / "recipes" / "tiny" / "config.yaml"

pytestmark = pytest.mark.skipif(not (DATA / "train.jsonl").is_file(), reason=f"speech data not found at {DATA}")

# The preamble's tiny model and very small discriminators: a step takes well under a second on a CPU.
TINY = [
    "model.seanet.n_filters=8", "model.seanet.ratios=[4,4]", "model.seanet.dimension=16", "model.seanet.lstm=1",
    "model.quantizer.codebook_size=64", "model.quantizer.dim=8",
    "discriminator.periods=[2,3]", "discriminator.mpd_channels=4", "discriminator.stft_filters=4",
    "discriminator.stft_n_ffts=[256,128]", "discriminator.stft_hop_lengths=[64,32]",
    "discriminator.stft_win_lengths=[256,128]",
    "data.segment_seconds=0.25", "data.batch_size=4", "data.num_workers=0",
    "logging.every=1", "logging.progress_bar=false", "validation.every=0", "checkpoint.every=1000",
    "schedule.kind=constant", "schedule.warmup_steps=0", "checkpoint.resume=auto",
]


def fresh_accelerate() -> None:
    """Forget Accelerate's process-wide state so each run can pick its own precision/accumulation."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def make_trainer(run_dir: Path, *overrides: str) -> Trainer:
    fresh_accelerate()
    cfg = load_config(CONFIG, [*TINY, f"logging.dir={run_dir}", *overrides])
    return Trainer(cfg)


def run(run_dir: Path, *overrides: str, until: int | None = None) -> Trainer:
    trainer = make_trainer(run_dir, *overrides)
    try:
        trainer.train(until_step=until)
    finally:
        trainer.close()
    return trainer


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def fixed_batch(trainer: Trainer, n: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    ds = trainer._loader.dataset
    ds.set_epoch(1000)  # crops no training batch saw in order
    items = [ds[i] for i in range(n)]
    audio = torch.stack([it["audio"] for it in items])
    return audio, torch.tensor([it["length"] for it in items])


@torch.no_grad()
def mel_on(trainer: Trainer, batch) -> float:
    audio, lengths = batch
    audio = set_levels(audio, lengths, torch.full((audio.shape[0],), -23.0))  # as training sees it
    gen = trainer.unwrapped_generator
    was = gen.training
    gen.eval()
    out = gen(audio, lengths)
    gen.train(was)
    return float(trainer.objective.mel(out.audio, audio))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 24-step run (reconstruction only) with validation and audio logging at the end."""
    run_dir = tmp_path_factory.mktemp("smoke")
    trainer = make_trainer(run_dir, "training.max_steps=24", "training.discriminator_start_step=1000",
                           "optimizer.generator.lr=0.003", "validation.every=24", "validation.max_files=2",
                           "validation.max_seconds=1.0", "logging.audio_every=24", "logging.audio_examples=1",
                           "training.ema_decay=0.5")
    batch = fixed_batch(trainer)
    before = mel_on(trainer, batch)
    try:
        trainer.train()
    finally:
        trainer.close()
    return run_dir, trainer, before, mel_on(trainer, batch)


def test_smoke_mel_falls(trained):
    run_dir, trainer, before, after = trained
    assert trainer.state.step == 24
    assert after < 0.9 * before, (before, after)
    rows = metrics(run_dir)
    train_rows = [r for r in rows if "loss/mel" in r]
    assert [r["step"] for r in train_rows] == list(range(1, 25))
    assert all(math.isfinite(r["loss/generator"]) and r["lr/generator"] == pytest.approx(0.003) for r in train_rows)
    assert "loss/discriminator" not in train_rows[-1]  # discriminators start at step 1000
    mel = [r["loss/mel"] for r in train_rows]
    assert sum(mel[-5:]) < 0.8 * sum(mel[:5]), mel
    # Level-normalised crops keep the codebook from collapsing onto one code at the start.
    assert max(r["codebook/utilization"] for r in train_rows[-5:]) > 4 / 64, [r["codebook/utilization"] for r in train_rows]
    # usage is counted over a sliding window of batches; dead codes are those it never used
    last = train_rows[-1]
    assert 0 < last["codebook/utilization"] <= last["codebook/uniform_ceiling"] <= 1
    assert last["codebook/dead"] == trainer.trackers[0].dead_codes(1000) <= 64 * (1 - last["codebook/utilization"])
    val = [r for r in rows if "val/mel_distance" in r]
    assert len(val) == 1 and val[0]["step"] == 24
    assert 0.0 < val[0]["val/codebook_utilization"] <= 1.0 and math.isfinite(val[0]["val/stoi"])
    assert list((run_dir / "tensorboard").rglob("events.out.tfevents*"))
    ckpts = list_checkpoints(run_dir / "checkpoints")
    assert [c.name for c in ckpts] == ["step-00000024"]
    assert (ckpts[0] / EMA_DIR / "model.safetensors").is_file()
    assert json.loads((ckpts[0] / "trainer_state.json").read_text())["step"] == 24


def test_export(trained, tmp_path):
    run_dir, trainer, _, _ = trained
    out = tmp_path / "release"
    model_id = export_checkpoint(run_dir, out, dtype="float16")
    model = SimVQCodec.from_pretrained(out)
    assert model.model_id == model_id
    assert not any("discriminator" in k for k in model.state_dict())
    assert json.loads((out / "config.json").read_text())["dtype"] == "float16"
    codes = model.encode(torch.randn(1, 1, 3000) * 0.1)
    assert codes.shape == (1, 1, math.ceil(3000 / 16))
    # The export is the EMA weights, not the raw generator's.
    ema = trainer.ema.model.state_dict()
    for key, value in model.state_dict().items():
        if value.is_floating_point():
            assert torch.allclose(value, ema[key].float(), atol=1e-2, rtol=1e-2), key
    with pytest.raises(Exception, match="inside the checkpoint"):
        export_checkpoint(run_dir, latest_checkpoint(run_dir / "checkpoints") / EMA_DIR / "x")


def test_resume_with_another_model_is_a_clear_error(trained, tmp_path):
    run_dir, _, _, _ = trained
    fresh_accelerate()
    cfg = load_config(CONFIG, [*TINY, f"logging.dir={tmp_path}", "model.seanet.n_filters=4",
                               f"checkpoint.resume={run_dir}"])
    with pytest.raises(CheckpointError, match="step-00000024: cannot resume"):
        Trainer(cfg).resume()


def test_warm_start_from_a_released_model(trained, tmp_path):
    run_dir, _, _, _ = trained
    release = tmp_path / "release"
    export_checkpoint(run_dir, release)
    model = SimVQCodec.from_pretrained(release)
    trainer = make_trainer(tmp_path / "warm", f"training.init_from={release}", "training.max_steps=1",
                           "training.discriminator_start_step=1000")
    assert trainer.init_model_id == model.model_id and trainer.state.step == 0
    reference = model.state_dict()
    for state in (trainer.unwrapped_generator.state_dict(), trainer.ema.model.state_dict()):
        assert state.keys() == reference.keys()
        assert all(torch.equal(state[k], reference[k]) for k in reference)
    # The loaded codebook is already placed: the first step must not re-initialise it.
    assert bool(trainer.unwrapped_generator.quantizer.stages[0].initialized)
    before = trainer.unwrapped_generator.quantizer.stages[0].proj.weight.detach().clone()
    try:
        trainer.train()
    finally:
        trainer.close()
    after = trainer.unwrapped_generator.quantizer.stages[0].proj.weight.detach()
    assert trainer.state.step == 1 and (after - before).abs().max() < 0.05
    # Once the run has a checkpoint it resumes that; the model is not read again.
    again = make_trainer(tmp_path / "warm", f"training.init_from={tmp_path / 'missing'}")
    assert again.init_model_id is None and again.resume() is not None and again.state.step == 1

    fresh_accelerate()
    cfg = load_config(CONFIG, [*TINY, f"logging.dir={tmp_path / 'other'}", "model.quantizer.codebook_size=32",
                               f"training.init_from={release}"])
    with pytest.raises(CheckpointError, match=r"release: cannot start from this model.*quantizer\.codebook_size: 64"):
        Trainer(cfg)


def test_staged_training_new_decoder_on_frozen_encoder_and_quantizer(trained, tmp_path):
    """init_parts gives a Vocos decoder the release's encoder and quantizer; freeze keeps them fixed."""
    run_dir, _, _, _ = trained
    release = tmp_path / "release"
    export_checkpoint(run_dir, release)
    model = SimVQCodec.from_pretrained(release)
    vocos = ["model.decoder.kind=vocos", "model.decoder.dim=16", "model.decoder.intermediate_dim=24",
             "model.decoder.n_layers=2", "model.decoder.n_fft=32"]
    trainer = make_trainer(tmp_path / "stage", *vocos, f"training.init_from={release}",
                           "training.init_parts=[encoder,quantizer]", "training.freeze=[encoder,quantizer]",
                           "training.max_steps=2", "training.discriminator_start_step=1", "discriminator.use_stft=false",
                           "discriminator.use_mrd=true", "discriminator.mrd_channels=2",
                           "discriminator.mrd_n_ffts=[256,128]", "discriminator.mrd_hop_lengths=[64,32]")
    gen = trainer.unwrapped_generator
    reference = model.state_dict()
    frozen_keys = [k for k in reference if k.split(".")[0] in ("encoder", "in_proj", "quantizer", "out_proj")]
    assert frozen_keys and all(torch.equal(gen.state_dict()[k], reference[k]) for k in frozen_keys)
    decoder_before = {k: v.clone() for k, v in gen.state_dict().items() if k.startswith("decoder.")}
    optimised = {id(p) for group in trainer.g_opt.optimizer.param_groups for p in group["params"]}
    assert all((id(p) in optimised) == p.requires_grad for p in gen.parameters())
    assert not any(p.requires_grad for p in gen.encoder.parameters())
    try:
        trainer.train()
    finally:
        trainer.close()
    after = gen.state_dict()
    assert trainer.state.step == 2
    assert all(torch.equal(after[k], reference[k]) for k in frozen_keys)  # one step with D, one without
    assert any(not torch.equal(after[k], v) for k, v in decoder_before.items())
    metrics = [json.loads(line) for line in (tmp_path / "stage" / "metrics.jsonl").read_text().splitlines()]
    assert "loss/feature_matching" in metrics[-1] and "loss/discriminator" in metrics[-1]

    fresh_accelerate()
    cfg = load_config(CONFIG, [*TINY, *vocos, f"logging.dir={tmp_path / 'bad'}", f"training.init_from={release}"])
    with pytest.raises(CheckpointError, match=r"architecture differs.*decoder"):
        Trainer(cfg)  # the whole model cannot start from a SEANet-decoder release
    with pytest.raises(Exception, match="unknown part 'encoders'"):
        load_config(CONFIG, [*TINY, "training.freeze=[encoders]"])


def test_discriminators_travel_as_one_file(trained, tmp_path, capsys):
    """export --discriminator writes D (fp16) with its config; a new run starts D from it, strictly."""
    from simvq_audio.cli import main
    from simvq_audio.training.discriminator_state import read_discriminator_config, save_discriminator

    run_dir, trainer, _, _ = trained
    disc_file = tmp_path / "disc.safetensors"
    assert main(["export", str(run_dir), "-o", str(tmp_path / "model"), "--discriminator", str(disc_file)]) == 0
    assert read_discriminator_config(disc_file) == trainer.cfg.discriminator
    source = trainer.accelerator.unwrap_model(trainer.discriminator).state_dict()
    new = make_trainer(tmp_path / "next", f"training.init_discriminator_from={disc_file}")
    loaded = new.accelerator.unwrap_model(new.discriminator).state_dict()
    assert loaded.keys() == source.keys()
    assert all(torch.equal(loaded[k], source[k].half().float()) for k in source)
    new.close()
    fresh_accelerate()
    cfg = load_config(CONFIG, [*TINY, f"logging.dir={tmp_path / 'other'}", "discriminator.mpd_channels=2",
                               f"training.init_discriminator_from={disc_file}"])
    with pytest.raises(CheckpointError, match=r"disc.safetensors: discriminator config differs.*mpd_channels"):
        Trainer(cfg)
    # Settings of a member that is off do not shape anything: a file without the MS-STFT
    # discriminator loads into a config whose (unused) MS-STFT sizes differ.
    no_stft = make_trainer(tmp_path / "a", "discriminator.use_stft=false")
    save_discriminator(no_stft.accelerator.unwrap_model(no_stft.discriminator), no_stft.cfg.discriminator,
                       tmp_path / "mpd.safetensors")
    no_stft.close()
    make_trainer(tmp_path / "b", "discriminator.use_stft=false", "discriminator.stft_filters=9",
                 f"training.init_discriminator_from={tmp_path / 'mpd.safetensors'}").close()
    capsys.readouterr()
    assert main(["train", "--config", str(CONFIG), *TINY, f"logging.dir={tmp_path / 'x'}",
                 f"training.init_discriminator_from={tmp_path / 'missing.safetensors'}"]) == 1
    assert "missing.safetensors: discriminator file not found" in capsys.readouterr().err


def test_stop_file_ends_the_run_with_a_checkpoint(tmp_path):
    from simvq_audio.training.trainer import STOP_FILE

    trainer = make_trainer(tmp_path, "training.max_steps=50", "training.discriminator_start_step=1000")
    original = trainer._after_step

    def after_step(bar):
        original(bar)
        if trainer.state.step == 2:
            (tmp_path / STOP_FILE).touch()

    trainer._after_step = after_step
    try:
        trainer.train()
    finally:
        trainer.close()
    assert trainer.state.step == 2  # checked after each optimiser step
    assert [c.name for c in list_checkpoints(tmp_path / "checkpoints")] == ["step-00000002"]
    assert not (tmp_path / STOP_FILE).exists()
    # the loop's own state is JSON (no pickle of ours): step, guard, schedules, EMA counter
    ckpt = tmp_path / "checkpoints" / "step-00000002"
    loop = json.loads((ckpt / "loop_state.json").read_text())
    assert loop["state"]["step"] == 2 and loop["ema"]["num_updates"] == 2
    assert not list(ckpt.glob("custom_checkpoint_*.pkl"))


def test_cli_train_and_export(tmp_path, capsys):
    from simvq_audio.cli import main

    fresh_accelerate()
    run_dir = tmp_path / "run"
    assert main(["train", "--config", str(CONFIG), *TINY, f"logging.dir={run_dir}", "training.max_steps=1",
                 "training.discriminator_start_step=0", "--resume", "none"]) == 0
    assert [c.name for c in list_checkpoints(run_dir / "checkpoints")] == ["step-00000001"]
    assert main(["export", str(run_dir), "-o", str(tmp_path / "model")]) == 0
    assert SimVQCodec.from_pretrained(tmp_path / "model").sample_rate == 16000
    capsys.readouterr()
    assert main(["train", "--config", str(CONFIG), "training.max_stepz=1"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("simvq-audio train: error:") and "training.max_stepz" in err and "\n" not in err
    assert main(["export", str(tmp_path / "nothing"), "-o", str(tmp_path / "m2")]) == 1
    assert "no such checkpoint" in capsys.readouterr().err


def _state(trainer: Trainer) -> dict[str, torch.Tensor]:
    out = {f"g.{k}": v for k, v in trainer.unwrapped_generator.state_dict().items()}
    out.update({f"d.{k}": v for k, v in trainer.accelerator.unwrap_model(trainer.discriminator).state_dict().items()})
    out.update({f"ema.{k}": v for k, v in trainer.ema.model.state_dict().items()})
    return {k: v.detach().clone() for k, v in out.items()}


@pytest.mark.parametrize("quantizer", [(), ("model.quantizer.n_q=3", "model.quantizer.quantizer_dropout=0.5"),
                                       ("loss.match=1.0",)],
                         ids=["one-codebook", "residual-with-dropout", "match-loss"])
def test_resume_equals_uninterrupted(tmp_path, quantizer):
    """With quantizer dropout too: its stages come from a generator of the batch, not the global one;
    so do loss.match's random directions."""
    common = ("training.max_steps=4", "training.discriminator_start_step=1", "training.gradient_accumulation_steps=2",
              "data.batch_size=2", "checkpoint.every=2", "optimizer.generator.lr=0.001", *quantizer)
    straight = run(tmp_path / "a", *common)
    assert straight.state.step == 4

    first = run(tmp_path / "b", *common, until=2)  # as if killed after step 2's checkpoint
    assert first.state.step == 2 and [c.name for c in list_checkpoints(tmp_path / "b" / "checkpoints")] == [
        "step-00000002"]
    saved_opt = {k: v.clone() for k, v in first.g_opt.optimizer.state_dict()["state"][0].items()}

    resumed = make_trainer(tmp_path / "b", *common)
    assert resumed.resume() == tmp_path / "b" / "checkpoints" / "step-00000002"
    assert resumed.state.step == 2 and resumed.state.batch_in_epoch == 4
    restored = resumed.g_opt.optimizer.state_dict()["state"][0]
    assert int(restored["step"]) == 2
    assert all(torch.equal(restored[k], saved_opt[k]) for k in ("exp_avg", "exp_avg_sq"))
    assert resumed.g_sched.last_epoch == 2 and resumed.ema.num_updates == 2
    try:
        resumed.train()
    finally:
        resumed.close()
    assert resumed.state.step == 4
    # The code-usage windows went on across the resume: the logged usage equals the straight run's.
    assert [t.counts().tolist() for t in resumed.trackers] == [t.counts().tolist() for t in straight.trackers]
    assert [t.n_updates for t in resumed.trackers] == [t.n_updates for t in straight.trackers]
    usage = [(r["codebook/utilization"], r["codebook/perplexity"], r["codebook/dead"])
             for r in metrics(tmp_path / "b") if r["step"] == 4 and "codebook/utilization" in r]
    assert usage == [(r["codebook/utilization"], r["codebook/perplexity"], r["codebook/dead"])
                     for r in metrics(tmp_path / "a") if r["step"] == 4 and "codebook/utilization" in r]
    a, b = _state(straight), _state(resumed)
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, different[:5]
    steps = [r["step"] for r in metrics(tmp_path / "b") if "loss/mel" in r]
    assert steps == [1, 2, 3, 4]
    matched = [r["loss/match"] for r in metrics(tmp_path / "b") if "loss/match" in r]
    assert len(matched) == (4 if "loss.match=1.0" in quantizer else 0) and all(m > 0 for m in matched)


def test_nonfinite_steps_are_skipped_then_stop(tmp_path):
    calls = {"n": 0}

    def poison(module, inputs, output):  # NaN out of the decoder on chosen forward passes
        calls["n"] += 1
        return output * math.nan if calls["n"] in poison.bad else output

    # One bad batch: skipped, counted, training goes on with finite weights.
    poison.bad = {2}
    trainer = make_trainer(tmp_path / "one", "training.max_steps=3", "training.discriminator_start_step=1000",
                           "training.nonfinite_patience=2")
    trainer.unwrapped_generator.decoder.register_forward_hook(poison)
    trainer.train()
    trainer.close()
    assert trainer.state.step == 3 and trainer.guard.total_skipped == 1
    rows = [r for r in metrics(tmp_path / "one") if "train/skipped_step" in r]
    assert [r["train/skipped_step"] for r in rows] == [0.0, 1.0, 0.0]
    assert all(torch.isfinite(p).all() for p in trainer.unwrapped_generator.parameters())

    # Bad from step 3 on: stops after `patience` in a row, the step-2 checkpoint stays intact.
    calls["n"] = 0
    poison.bad = set(range(3, 100))
    trainer = make_trainer(tmp_path / "many", "training.max_steps=10", "training.discriminator_start_step=1000",
                           "training.nonfinite_patience=3", "checkpoint.every=2")
    trainer.unwrapped_generator.decoder.register_forward_hook(poison)
    with pytest.raises(NonFiniteError, match="3 consecutive steps"):
        trainer.train()
    trainer.close()
    ckpts = list_checkpoints(tmp_path / "many" / "checkpoints")
    assert [c.name for c in ckpts] == ["step-00000002", "step-00000004"]
    ema = SimVQCodec.from_pretrained(ckpts[-1] / EMA_DIR)
    assert all(torch.isfinite(p).all() for p in ema.parameters())
    assert not list((tmp_path / "many" / "checkpoints").glob(".*"))  # no half-written checkpoint left


def test_bf16_step_runs(tmp_path):
    trainer = run(tmp_path / "bf16", "training.max_steps=2", "training.discriminator_start_step=1",
                  "training.mixed_precision=bf16", "data.batch_size=2")
    assert trainer.state.step == 2
    rows = [r for r in metrics(tmp_path / "bf16") if "loss/generator" in r]
    assert all(math.isfinite(r["loss/generator"]) for r in rows)
    fresh_accelerate()
