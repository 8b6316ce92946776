"""Run logging: Accelerate's TensorBoard tracker, a JSONL metrics log, audio and mel images.

Everything here writes on the main process only; other ranks call the same methods
and they return at once, so the training loop needs no rank checks.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator

from ..audio.mel import log_mel

METRICS_NAME = "metrics.jsonl"


def flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists and ``None`` become strings (TensorBoard hparams)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, (bool, int, float, str)):
            out[name] = value
        else:
            out[name] = str(value)
    return out


def mel_figure(reference: np.ndarray, reconstruction: np.ndarray, sample_rate: int, title: str = ""):
    """A matplotlib ``Figure`` with the reference and reconstruction log-mels stacked."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    ref_mel, rec_mel = log_mel(reference, sample_rate), log_mel(reconstruction, sample_rate)
    fig = Figure(figsize=(8, 5), tight_layout=True)
    vmax = float(ref_mel.max())
    vmin = max(float(ref_mel.min()), vmax - 80.0)  # log_mel floors silence at -100 dB
    for i, (mel, name) in enumerate(((ref_mel, "reference"), (rec_mel, "reconstruction"))):
        ax = fig.add_subplot(2, 1, i + 1)
        ax.imshow(mel, origin="lower", aspect="auto", interpolation="none", vmin=vmin, vmax=vmax)
        ax.set_title(f"{title} {name}".strip())
        ax.set_ylabel("mel bin")
    return fig


class RunLogger:
    """Scalars to TensorBoard (through ``accelerator.log``) and to ``<log_dir>/metrics.jsonl``.

    The ``Accelerator`` must have been created with ``log_with="tensorboard"`` and
    ``project_dir=log_dir`` when ``tensorboard`` is true.
    """

    def __init__(self, accelerator: Accelerator, log_dir: Path, config: dict, tensorboard: bool = True):
        self.accelerator = accelerator
        self.log_dir = Path(log_dir)
        self.tensorboard = tensorboard
        self._jsonl = None
        self._first = True
        if tensorboard:
            accelerator.init_trackers("tensorboard", config=flatten(config))
        if accelerator.is_main_process:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            self._jsonl = open(self.log_dir / METRICS_NAME, "a", buffering=1)

    def log(self, values: dict[str, float], step: int) -> None:
        """Scalars at ``step``; non-finite values are kept in the JSONL as strings ("nan")."""
        if not self.accelerator.is_main_process:
            return
        if self._first:
            self._first = False
            self._forget_from(step)
        clean = {k: float(v) for k, v in values.items()}
        if self.tensorboard:
            self.accelerator.log(clean, step=step)
        row = {"step": step, "time": round(time.time(), 3)}
        row.update({k: (round(v, 6) if math.isfinite(v) else str(v)) for k, v in clean.items()})
        self._jsonl.write(json.dumps(row) + "\n")

    def _forget_from(self, step: int) -> None:
        """Drop the rows at ``step`` and later: a resumed run logs again the steps that its interrupted
        predecessor logged after the checkpoint, and ``metrics.jsonl`` must hold each step once. A line
        torn by a killed process is dropped too."""
        from ..fileio import atomic_write_text

        path = self.log_dir / METRICS_NAME
        kept, dropped = [], False
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row_step = json.loads(line)["step"]
            except (ValueError, KeyError, TypeError):
                dropped = True
                continue
            if row_step >= step:
                dropped = True
            else:
                kept.append(line + "\n")
        if dropped:
            self._jsonl.close()
            atomic_write_text(path, "".join(kept))
            self._jsonl = open(path, "a", buffering=1)

    def _writer(self):
        if not (self.tensorboard and self.accelerator.is_main_process):
            return None
        return self.accelerator.get_tracker("tensorboard", unwrap=True)

    def log_audio_pair(self, tag: str, reference: np.ndarray, reconstruction: np.ndarray, sample_rate: int,
                       step: int) -> None:
        """Reference and reconstruction (1-D, at ``sample_rate``) as audio and a mel image."""
        writer = self._writer()
        if writer is None:
            return
        for name, wav in (("reference", reference), ("reconstruction", reconstruction)):
            clipped = torch.from_numpy(np.clip(wav, -1.0, 1.0).astype(np.float32))[None]
            writer.add_audio(f"{tag}/{name}", clipped, step, sample_rate=sample_rate)
        writer.add_figure(f"{tag}/mel", mel_figure(reference, reconstruction, sample_rate, tag), step)

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None
        if self.tensorboard:
            self.accelerator.end_training()


def peak_memory_mb(device: torch.device) -> dict[str, float]:
    """Peak memory so far: the process's resident set (CPU) and, on CUDA, allocated tensors, in MiB."""
    out = {}
    try:
        import resource

        out["perf/peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    except (ImportError, OSError):
        pass
    if device.type == "cuda":
        out["perf/peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


class MeanWindow:
    """Running means of detached scalar tensors between two log lines (no device sync until ``means``)."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}
        self.start = time.perf_counter()
        self.steps = 0

    def add(self, values: dict[str, torch.Tensor | float]) -> None:
        for key, value in values.items():
            value = value.detach().double() if isinstance(value, torch.Tensor) else torch.tensor(float(value))
            self.sums[key] = self.sums[key] + value if key in self.sums else value
            self.counts[key] = self.counts.get(key, 0) + 1

    def means(self) -> dict[str, float]:
        """Means since the last call, plus ``perf/steps_per_sec``; then the window restarts."""
        out = {k: float(v) / self.counts[k] for k, v in self.sums.items()}
        elapsed = time.perf_counter() - self.start
        if self.steps and elapsed > 0:
            out["perf/steps_per_sec"] = self.steps / elapsed
        self.sums, self.counts, self.steps = {}, {}, 0
        self.start = time.perf_counter()
        return out
