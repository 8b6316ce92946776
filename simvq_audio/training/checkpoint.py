"""Training checkpoints: atomic folders written with ``Accelerator.save_state``.

Layout of ``<checkpoint dir>/step-00001000/``:

* Accelerate's state: ``model.safetensors`` (generator), ``model_1.safetensors``
  (discriminator), ``optimizer.bin``, ``optimizer_1.bin``, ``random_states_<rank>.pkl``,
  ``scaler.pt`` (fp16);
* ``loop_state.json``: the ``TrainState``, the non-finite guard, the two LR schedules and the
  EMA's update count, as plain JSON (the trainer writes and reads it; no pickle of ours);
* ``ema/``: the EMA generator as a release model (``SimVQCodec.save_pretrained``), which
  ``simvq-audio export`` converts without needing Accelerate, and which resuming reads back;
* ``train_config.yaml`` and ``trainer_state.json`` (human-readable step/epoch).

Each checkpoint is written to a hidden temporary folder and renamed when complete, so
a crash mid-save never leaves a half checkpoint that ``resume: auto`` would pick.

Accelerate reloads ``custom_checkpoint_<i>.pkl`` (objects registered for checkpointing) with a full
unpickler (``weights_only=False``), which runs whatever code a crafted file names. We register nothing,
so our checkpoints have none; a folder that has them (an older checkpoint, or a crafted one) is first
read with the restricted unpickler by ``resolve_resume`` and refused if it needs more than plain values.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from accelerate import Accelerator

from ..errors import SimVQError

CHECKPOINT_RE = re.compile(r"^step-(\d{8,})$")
STATE_NAME = "trainer_state.json"
CONFIG_NAME = "train_config.yaml"
EMA_DIR = "ema"


class CheckpointError(SimVQError):
    """A checkpoint path that does not exist or is not a training checkpoint."""


@dataclass
class TrainState:
    """Where training is: optimiser steps done, data epoch and micro-batches consumed in it."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0

    def state_dict(self) -> dict:
        return {"step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])
        self.epoch = int(state["epoch"])
        self.batch_in_epoch = int(state["batch_in_epoch"])


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}"


def list_checkpoints(root: str | os.PathLike) -> list[Path]:
    """Complete checkpoints under ``root``, oldest first (temporary folders are ignored)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := CHECKPOINT_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(root: str | os.PathLike) -> Path | None:
    checkpoints = list_checkpoints(root)
    return checkpoints[-1] if checkpoints else None


def is_checkpoint(path: Path) -> bool:
    return path.is_dir() and (path / STATE_NAME).is_file()


def find_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint folder from a checkpoint, a folder of checkpoints, or a run folder (latest wins)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint")
    if is_checkpoint(path):
        return path
    for root in (path, path / "checkpoints"):
        latest = latest_checkpoint(root)
        if latest is not None:
            return latest
    raise CheckpointError(f"{path}: not a training checkpoint (no {STATE_NAME}) and holds no step-* checkpoints")


def resolve_resume(resume: str, root: Path) -> Path | None:
    """The checkpoint to resume from: ``none`` -> None, ``auto`` -> latest in ``root`` (or None), else a path.

    A checkpoint whose pickled states need more than plain values and tensors is refused
    (``check_pickles``)."""
    if resume == "none":
        return None
    path = latest_checkpoint(root) if resume == "auto" else find_checkpoint(resume)
    if path is not None:
        check_pickles(path)
    return path


def check_pickles(checkpoint: Path) -> None:
    """Raise ``CheckpointError`` unless every ``custom_checkpoint_*.pkl`` of ``checkpoint`` loads with the
    restricted (``weights_only``) unpickler, i.e. holds only tensors, numbers, strings and containers."""
    from accelerate.utils import load

    for path in sorted(checkpoint.glob("custom_checkpoint_*.pkl")):
        try:
            load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # the restricted unpickler raises UnpicklingError, others for garbage
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(
                f"{path}: not resumed: this state holds more than tensors and plain values ({reason[:160]}); "
                f"a checkpoint of unknown origin could run code when unpickled, so it is never fully unpickled"
            ) from exc


def read_trainer_state(checkpoint: Path) -> dict:
    try:
        return json.loads((checkpoint / STATE_NAME).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{checkpoint / STATE_NAME}: unreadable trainer state ({exc})") from exc


def save_checkpoint(
    accelerator: Accelerator,
    root: Path,
    state: TrainState,
    keep_last: int,
    write_extra: Callable[[Path], None] | None = None,
) -> Path:
    """Save the full training state to ``root/step-XXXXXXXX`` atomically; keep the last ``keep_last``.

    All processes must call this (``save_state`` writes one RNG file per rank); files
    other than Accelerate's are written by the main process only, through ``write_extra(tmp_dir)``.
    """
    name = checkpoint_name(state.step)
    final, tmp = root / name, root / f".{name}.tmp"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    if accelerator.is_main_process:
        if write_extra is not None:
            write_extra(tmp)
        info = dict(state.state_dict(), num_processes=accelerator.num_processes)
        (tmp / STATE_NAME).write_text(json.dumps(info, indent=2) + "\n")
        if final.exists():  # re-saving a step (e.g. a run resumed at a checkpoint step)
            old = root / f".{name}.old"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        for stale in list_checkpoints(root)[:-keep_last]:
            shutil.rmtree(stale, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final
