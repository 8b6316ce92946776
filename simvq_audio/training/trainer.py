"""The training loop: codec generator + discriminators with Hugging Face Accelerate.

Reads top to bottom: ``Trainer(cfg)`` builds models, optimisers, schedulers and data
and hands them to ``accelerator.prepare``; ``train()`` resumes if asked, then runs
micro-batches under ``accelerator.accumulate`` and, at each optimiser step, clips,
checks for non-finite values, steps both optimisers, updates the EMA and logs,
validates and checkpoints on schedule. The same code runs on a CPU, one GPU, or many
processes under ``accelerate launch`` (DDP).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import time
import warnings
from pathlib import Path

import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from accelerate.utils import set_seed
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from ..data.pitch_targets import PitchTargets
from ..dataclass_dicts import to_dict
from ..discriminators import build_discriminator
from ..errors import SimVQError
from ..fileio import atomic_write_text
from ..models.codec import SimVQCodec
from ..modules.conv import length_mask
from ..quantization.tracker import CodeUsageTracker
from .checkpoint import CONFIG_NAME, EMA_DIR, CheckpointError, TrainState, resolve_resume, save_checkpoint
from .config import AdamWConfig, TrainConfig, config_to_yaml
from .discriminator_state import load_discriminator
from .ema import EMA
from .guard import NonFiniteGuard
from .levels import batch_generator, draw_levels, set_levels
from .loaders import build_train_loader, set_data_epoch
from .objective import CodecObjective, frozen
from .parts import freeze
from .schedule import make_scheduler
from .tracking import MeanWindow, RunLogger, peak_memory_mb
from .validation import Validator, validation_files
from .warm_start import warm_start

# The training loop's own state in a checkpoint folder (plain JSON, no pickle).
LOOP_STATE = "loop_state.json"
USAGE_STATE = "code_usage.safetensors"  # the trackers' windows, so the logged usage goes on across a resume
# Creating this file in a run folder stops the run after the current optimiser step, with a
# checkpoint: how a time-limited session ends training cleanly (``touch RUN/STOP``).
STOP_FILE = "STOP"
QUANTIZER_DROPOUT_STREAM = 1  # batch_generator stream of the quantizer dropout (levels use none)
MATCH_STREAM = 2  # batch_generator stream of loss.match's random directions


def make_accelerator(cfg: TrainConfig) -> Accelerator:
    """The ``Accelerator`` for ``cfg``: precision, accumulation, TensorBoard in ``logging.dir``."""
    # The SimVQ codebook is a buffer rebuilt from its seed: broadcasting it every forward
    # (DDP's default) would copy K x d floats per step for nothing. EMA-VQ buffers do change.
    ddp = DistributedDataParallelKwargs(broadcast_buffers=cfg.model.quantizer.kind == "ema")
    return Accelerator(
        cpu=cfg.training.cpu,
        mixed_precision=cfg.training.mixed_precision,
        gradient_accumulation_steps=cfg.training.gradient_accumulation_steps,
        log_with="tensorboard",
        project_dir=cfg.logging.dir,
        kwargs_handlers=[ddp],
        step_scheduler_with_optimizer=False,
    )


def usage_window(cfg: TrainConfig, num_processes: int = 1) -> int:
    """Steps over which code usage is counted: ``logging.codebook_window``, or by default enough
    steps for 3 K training frames (at least ``logging.every``)."""
    if cfg.logging.codebook_window is not None:
        return cfg.logging.codebook_window
    segment = max(1, round(cfg.data.segment_seconds * cfg.model.sample_rate))
    frames = cfg.data.batch_size * num_processes * math.ceil(segment / cfg.model.seanet.hop_length)
    return max(cfg.logging.every, math.ceil(3 * cfg.model.quantizer.codebook_size / frames))


def make_optimizer(params, cfg: AdamWConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay, eps=cfg.eps)


def _norm(parameters, max_norm: float | None) -> torch.Tensor:
    """Clip to ``max_norm`` (``None``: measure only); the total norm before clipping."""
    return torch.nn.utils.clip_grad_norm_(list(parameters), math.inf if max_norm is None else max_norm)


class Trainer:
    """Trains a ``SimVQCodec`` as configured by ``cfg``; see docs/training.md."""

    def __init__(self, cfg: TrainConfig, accelerator: Accelerator | None = None):
        if cfg.schedule.total_steps is None:
            cfg = dataclasses.replace(cfg, schedule=dataclasses.replace(cfg.schedule,
                                                                        total_steps=cfg.training.max_steps))
        self.cfg = cfg
        self.accelerator = acc = accelerator or make_accelerator(cfg)
        set_seed(cfg.training.seed)
        generator = SimVQCodec(cfg.model)
        # A run with a checkpoint of its own resumes it (the weights it started from are in there).
        self.init_model_id = None
        new_run = resolve_resume(cfg.checkpoint.resume, cfg.checkpoint_dir) is None
        if cfg.training.init_from and new_run:
            self.init_model_id = warm_start(generator, cfg.training.init_from, cfg.training.init_parts)
            acc.print(f"starting from model {self.init_model_id} ({cfg.training.init_from})")
        if cfg.training.freeze:
            n = freeze(generator, cfg.training.freeze)
            acc.print(f"frozen: {', '.join(cfg.training.freeze)} ({n:,} parameters)")
        discriminator = build_discriminator(cfg.discriminator)
        if cfg.training.init_discriminator_from and new_run:
            load_discriminator(discriminator, cfg.discriminator, cfg.training.init_discriminator_from)
            acc.print(f"starting the discriminators from {cfg.training.init_discriminator_from}")
        self.ema = EMA(generator, cfg.training.ema_decay)
        g_opt = make_optimizer([p for p in generator.parameters() if p.requires_grad], cfg.optimizer.generator)
        d_opt = make_optimizer(discriminator.parameters(), cfg.optimizer.discriminator)
        pitch_targets = None
        if cfg.loss.pitch > 0 and cfg.loss.pitch_targets == "pyin":
            pitch_targets = PitchTargets(cfg.data.pitch_cache, cfg.model.sample_rate, cfg.model.seanet.hop_length)
        self._loader = build_train_loader(cfg.data, cfg.model.sample_rate, cfg.model.seanet.channels,
                                          cfg.training.seed, pitch_targets)
        if pitch_targets is not None:  # pYIN once per file (cached): the main process first, the others read
            started = time.perf_counter()
            with acc.main_process_first():
                pitch_targets.prepare(self._loader.dataset.paths, workers=max(1, cfg.data.num_workers))
            acc.print(f"pYIN pitch targets of {len(self._loader.dataset.paths)} files in {pitch_targets.cache_dir} "
                      f"({time.perf_counter() - started:.0f} s)")
        self.generator, self.discriminator, self.g_opt, self.d_opt, self.train_loader = acc.prepare(
            generator, discriminator, g_opt, d_opt, self._loader)
        self.ema.to(acc.device)
        # Schedulers drive the inner optimisers and are stepped once per optimiser step by
        # us (Accelerate would step them once per process), so the LR is lr_at(step).
        self.g_sched = make_scheduler(self.g_opt.optimizer, cfg.schedule)
        self.d_sched = make_scheduler(self.d_opt.optimizer, cfg.schedule)
        self.objective = CodecObjective(cfg.loss, cfg.model.sample_rate, cfg.model.seanet.hop_length).to(acc.device)
        self.state = TrainState()
        self.guard = NonFiniteGuard(cfg.training.nonfinite_patience)
        # The loop's own state (step and data position, EMA counters, guard, schedules) is written by
        # save() as JSON, and the EMA weights as the checkpoint's ema/ model: nothing we own is pickled.
        reduce = lambda t: acc.reduce(t, reduction="sum")  # noqa: E731
        self.trackers = [CodeUsageTracker(cfg.model.quantizer.codebook_size, usage_window(cfg, acc.num_processes),
                                          reduce_fn=reduce)
                         for _ in range(cfg.model.quantizer.n_q)]
        files = validation_files(cfg) if cfg.validation.every else []
        self.validator = Validator(files, cfg.validation.max_seconds, cfg.logging.audio_examples)
        self.logger: RunLogger | None = None
        self.resumed_from: Path | None = None
        self.last_checkpoint_step = -1
        self._loss_ok = torch.ones((), dtype=torch.bool, device=acc.device)
        self._window = MeanWindow()

    # -- state -------------------------------------------------------------------------
    @property
    def unwrapped_generator(self) -> SimVQCodec:
        return self.accelerator.unwrap_model(self.generator)

    def resume(self) -> Path | None:
        """Load the checkpoint that ``checkpoint.resume`` names (``auto``: latest, if any)."""
        path = resolve_resume(self.cfg.checkpoint.resume, self.cfg.checkpoint_dir)
        if path is not None:
            try:
                self.accelerator.load_state(str(path))
            except (RuntimeError, ValueError, KeyError, OSError) as exc:
                raise CheckpointError(
                    f"{path}: cannot resume from this checkpoint ({exc}); its train_config.yaml shows the "
                    f"settings it was made with, or start afresh with checkpoint.resume=none") from exc
            self._load_loop_state(path)
            self.last_checkpoint_step = self.state.step
            self.accelerator.print(f"resumed from {path} at step {self.state.step}")
        self.resumed_from = path
        return path

    def _load_loop_state(self, path: Path) -> None:
        """Restore what ``save`` wrote beside Accelerate's state: JSON and the ema/ model's safetensors."""
        try:
            loop = json.loads((path / LOOP_STATE).read_text())
            self.state.load_state_dict(loop["state"])
            self.guard.load_state_dict(loop["guard"])
            self.g_sched.load_state_dict(loop["generator_schedule"])
            self.d_sched.load_state_dict(loop["discriminator_schedule"])
            ema = {k: v.to(self.accelerator.device) for k, v in load_file(str(path / EMA_DIR / "model.safetensors")).items()}
            self.ema.load_state_dict({"num_updates": loop["ema"]["num_updates"], "model": ema})
            if (path / USAGE_STATE).exists():  # checkpoints from before 2026-12-08 start the usage counts afresh
                usage = load_file(str(path / USAGE_STATE))
                for q, tracker in enumerate(self.trackers):
                    tracker.load_tensors(usage, f"{q}.")
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise CheckpointError(f"{path}: cannot read its loop state ({LOOP_STATE}, {EMA_DIR}/, {USAGE_STATE}): {exc}; a "
                                  f"checkpoint from before this format cannot be resumed, start from its ema/ "
                                  f"model with training.init_from") from exc

    def save(self) -> Path:
        """Checkpoint now (all processes must call it)."""
        def write_extra(folder: Path) -> None:
            self.ema.model.save_pretrained(folder / EMA_DIR)
            (folder / CONFIG_NAME).write_text(config_to_yaml(self.cfg))
            loop = {"state": self.state.state_dict(), "guard": self.guard.state_dict(),
                    "ema": {"num_updates": self.ema.num_updates},
                    "generator_schedule": self.g_sched.state_dict(),
                    "discriminator_schedule": self.d_sched.state_dict()}
            (folder / LOOP_STATE).write_text(json.dumps(loop, indent=1))
            usage = {}
            for q, tracker in enumerate(self.trackers):
                usage.update(tracker.to_tensors(f"{q}."))
            save_file(usage, str(folder / USAGE_STATE))

        path = save_checkpoint(self.accelerator, self.cfg.checkpoint_dir, self.state, self.cfg.checkpoint.keep_last,
                               write_extra)
        self.last_checkpoint_step = self.state.step
        return path

    def validate(self, log_audio: bool = False) -> dict[str, float]:
        """Validation metrics of the EMA model (logged when a logger is open)."""
        metrics = self.validator.run(self.accelerator, self.ema.model, self.state.step, self.logger, log_audio)
        if metrics and self.logger is not None:
            self.logger.log(metrics, self.state.step)
        return metrics

    # -- loop --------------------------------------------------------------------------
    def train(self, until_step: int | None = None) -> TrainState:
        """Train to ``training.max_steps``; ``until_step`` stops earlier as if interrupted (tests, time limits).

        A file named ``STOP`` in ``logging.dir`` ends the run after the current optimiser step
        with a checkpoint, and is then removed.
        """
        acc, cfg, st = self.accelerator, self.cfg, self.state
        if self.logger is None:
            self.logger = RunLogger(acc, Path(cfg.logging.dir), to_dict(cfg))
            if acc.is_main_process:
                atomic_write_text(Path(cfg.logging.dir) / "config.yaml", config_to_yaml(cfg))
        if self.resumed_from is None:
            self.resume()
        if len(self.train_loader) == 0:
            raise SimVQError(f"{cfg.data.train_manifest}: no full batch per process; lower data.batch_size")
        stop = min(cfg.training.max_steps, until_step if until_step is not None else cfg.training.max_steps)
        bar = tqdm(total=cfg.training.max_steps, initial=st.step, desc="train", dynamic_ncols=True,
                   disable=not (acc.is_main_process and cfg.logging.progress_bar))
        try:
            while st.step < stop:
                set_data_epoch(self._loader, st.epoch)
                loader = self.train_loader
                if st.batch_in_epoch:
                    loader = acc.skip_first_batches(self.train_loader, st.batch_in_epoch)
                for batch in loader:
                    self._micro_step(batch)
                    st.batch_in_epoch += 1
                    if acc.sync_gradients:
                        self._optimizer_step()
                        bar.update(1)
                        self._after_step(bar)
                        if st.step >= stop or self._stop_requested():
                            stop = st.step
                            break
                else:
                    st.epoch, st.batch_in_epoch = st.epoch + 1, 0
            if self.last_checkpoint_step != st.step:
                self.save()
            stop_file = Path(cfg.logging.dir) / STOP_FILE
            if acc.is_main_process and stop_file.exists():
                stop_file.unlink(missing_ok=True)
                acc.print(f"stopped at step {st.step} as {stop_file} asked")
        finally:
            bar.close()
        return st

    def _stop_requested(self) -> bool:
        """True on every process once ``<logging.dir>/STOP`` exists on any of them."""
        flag = torch.tensor(float((Path(self.cfg.logging.dir) / STOP_FILE).exists()), device=self.accelerator.device)
        return bool(self.accelerator.reduce(flag, reduction="sum") > 0)

    def _micro_step(self, batch: dict) -> None:
        """Forward and backward of one micro-batch (both networks); no optimiser step."""
        acc, cfg = self.accelerator, self.cfg
        use_d = self.state.step >= cfg.training.discriminator_start_step
        with acc.accumulate(self.generator, self.discriminator):
            real, lengths = batch["audio"].float(), batch["lengths"]
            levels = draw_levels(cfg.data, real.shape[0], cfg.training.seed, self.state.epoch,
                                 self.state.batch_in_epoch, acc.process_index)
            if levels is not None:
                real = set_levels(real, lengths, levels, cfg.data.max_boost_db)
            # Quantizer dropout draws its stages from a generator of this batch, so a resumed run
            # draws what the uninterrupted one would have.
            dropout = batch_generator(cfg.training.seed, self.state.epoch, self.state.batch_in_epoch,
                                      acc.process_index, QUANTIZER_DROPOUT_STREAM)
            out = self.generator(real, lengths, generator=dropout)
            mask = length_mask(lengths, real.shape[-1], real.device)[:, None, :]
            fake = out.audio.float() * mask  # the loss ignores the zero padding of short files
            logs: dict = {}
            ok = self._loss_ok
            real_fmaps = None
            if use_d:
                d_loss, d_logs, real_fmaps = self.objective.discriminator_loss(self.discriminator, fake, real,
                                                                               acc.autocast)
                acc.backward(d_loss)
                logs.update(d_logs)
                ok = ok & torch.isfinite(d_loss)
            # The generator's pass goes through the unwrapped D with frozen parameters: its
            # gradient reaches the generator only, and DDP's hooks on D are not triggered.
            plain_d = acc.unwrap_model(self.discriminator)
            directions = None
            if cfg.loss.match > 0:  # the codebook is out.codebook: W C as the quantizer's search projected it
                directions = batch_generator(cfg.training.seed, self.state.epoch, self.state.batch_in_epoch,
                                             acc.process_index, MATCH_STREAM)
            with frozen(plain_d) if use_d else contextlib.nullcontext():
                pitch = (batch["pitch_f0"], batch["pitch_voiced"]) if "pitch_f0" in batch else None
                g_loss, g_logs = self.objective.generator_loss(out, fake, real, plain_d if use_d else None,
                                                               acc.autocast, real_fmaps, directions, pitch)
                acc.backward(g_loss)
            self._loss_ok = ok & torch.isfinite(g_loss)
            logs.update(g_logs)
            for q, tracker in enumerate(self.trackers):
                tracker.update(out.codes[:, q], mask=out.frame_mask)
            logs["data/skipped_files"] = float(batch.get("skipped", 0))
            self._window.add(logs)

    def _optimizer_step(self) -> None:
        """Clip, check for NaN/Inf, step both optimisers (or skip), update EMA and schedules."""
        acc, cfg, st = self.accelerator, self.cfg, self.state
        use_d = st.step >= cfg.training.discriminator_start_step
        scaler = acc.scaler
        if scaler is not None:
            acc.unscale_gradients()  # once for both optimisers, before measuring norms
        g_norm = _norm(self.generator.parameters(), cfg.optimizer.generator.grad_clip)
        d_norm = _norm(self.discriminator.parameters(), cfg.optimizer.discriminator.grad_clip) if use_d else None
        grads_ok = torch.isfinite(g_norm) & (torch.isfinite(d_norm) if d_norm is not None else True)
        flags = torch.stack([~self._loss_ok, ~grads_ok.to(self._loss_ok.device)]).float()
        bad_loss, bad_grad = (acc.reduce(flags, reduction="sum") > 0).tolist()  # same decision on every rank
        if scaler is not None:
            # fp16: overflowing gradients are the scaler's business (it skips the step and
            # lowers the scale); only a non-finite loss counts against the guard.
            ok = not bad_loss
            if ok:
                if use_d:
                    scaler.step(self.d_opt.optimizer)
                scaler.step(self.g_opt.optimizer)
            scaler.update()
        else:
            ok = not (bad_loss or bad_grad)
            if ok:
                if use_d:
                    self.d_opt.step()
                self.g_opt.step()
        self.g_opt.zero_grad(set_to_none=True)
        self.d_opt.zero_grad(set_to_none=True)
        with warnings.catch_warnings():  # a skipped first step makes torch warn about the order
            warnings.simplefilter("ignore", UserWarning)
            self.g_sched.step()
            self.d_sched.step()
        if ok:
            self.ema.update(self.unwrapped_generator)
        st.step += 1
        self._loss_ok = torch.ones((), dtype=torch.bool, device=acc.device)
        self._window.steps += 1
        norms = {"grad_norm/generator": g_norm, "train/skipped_step": float(not ok)}
        if d_norm is not None:
            norms["grad_norm/discriminator"] = d_norm
        self._window.add(norms)
        detail = "loss" if bad_loss else "gradient"
        self.guard.observe(ok, st.step, detail)

    def _after_step(self, bar) -> None:
        """Logging, checkpointing and validation on their schedules (checkpoint first: RNG untouched)."""
        cfg, step = self.cfg, self.state.step
        if step % cfg.checkpoint.every == 0:
            self.save()
        if step % cfg.logging.every == 0:
            values = self._window.means()
            values["lr/generator"] = self.g_sched.get_last_lr()[0]
            values["lr/discriminator"] = self.d_sched.get_last_lr()[0]
            values["train/skipped_total"] = float(self.guard.total_skipped)
            values["train/epoch"] = float(self.state.epoch)
            values.update(peak_memory_mb(self.accelerator.device))
            n = len(self.trackers)
            values["codebook/utilization"] = sum(t.utilization() for t in self.trackers) / n
            values["codebook/perplexity"] = sum(t.perplexity() for t in self.trackers) / n
            values["codebook/uniform_ceiling"] = sum(t.uniform_ceiling() for t in self.trackers) / n
            values["codebook/dead"] = sum(t.dead_codes(cfg.logging.dead_code_steps) for t in self.trackers) / n
            self.logger.log(values, step)
            bar.set_postfix(loss=f"{values.get('loss/generator', math.nan):.3g}",
                            mel=f"{values.get('loss/mel', math.nan):.3g}",
                            usage=f"{values['codebook/utilization']:.2f}")
        if cfg.validation.every and step % cfg.validation.every == 0:
            self.validate(log_audio=step % cfg.logging.audio_every == 0)

    def close(self) -> None:
        if self.logger is not None:
            self.logger.close()
            self.logger = None
