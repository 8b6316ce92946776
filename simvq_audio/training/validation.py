"""Validation on a fixed list of whole files with the EMA generator.

Each file is encoded and decoded alone (batch 1, no padding), so the figures are those
a user of the released model would get. Files are split across processes and the
per-file metrics gathered with ``gather_for_metrics``; code counts are summed across
processes so utilisation covers the whole list.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader

from ..audio.io import load_audio
from ..data.manifest import read_manifest
from ..metrics import compute_metrics
from ..models.codec import SimVQCodec
from ..quantization.tracker import CodeUsageTracker
from .config import TrainConfig
from .tracking import RunLogger

METRIC_KEYS = ("mel_distance", "stoi", "pesq_wb", "si_sdr")


def validation_files(cfg: TrainConfig) -> list[Path]:
    """The fixed validation list: ``validation.files`` then the manifest's files, first ``max_files``."""
    files = [Path(f) for f in cfg.validation.files]
    manifest = cfg.validation.manifest or (None if cfg.validation.files else cfg.data.valid_manifest)
    if manifest:
        files += [entry.path for entry in read_manifest(manifest)]
    return files[: cfg.validation.max_files]


class Validator:
    """Runs whole-file validation of a codec on ``files`` (paths of audio files)."""

    def __init__(self, files: list[os.PathLike], max_seconds: float | None = None, audio_examples: int = 0):
        self.files = [Path(f) for f in files]
        self.max_seconds = max_seconds
        self.audio_examples = audio_examples
        self._loader: DataLoader | None = None

    def _load(self, path: Path, model: SimVQCodec) -> torch.Tensor:
        audio = load_audio(path, sample_rate=model.sample_rate, channels=model.channels).samples
        if self.max_seconds is not None:
            audio = audio[:, : int(self.max_seconds * model.sample_rate)]
        return torch.from_numpy(np.ascontiguousarray(audio))

    @torch.no_grad()
    def reconstruct(self, model: SimVQCodec, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``wav [C, N]`` -> (codes ``[n_q, T]``, reconstruction ``[C, N]``), both on the CPU."""
        x = wav[None].to(model.device)
        codes = model.encode(x)
        rec = model.decode(codes, length=x.shape[-1])
        return codes[0].cpu(), rec[0].float().cpu()

    def run(self, accelerator: Accelerator, model: SimVQCodec, step: int, logger: RunLogger | None = None,
            log_audio: bool = False) -> dict[str, float]:
        """Metrics averaged over the files (``val/...`` keys); all processes must call it."""
        if not self.files:
            return {}
        if self._loader is None:
            self._loader = accelerator.prepare_data_loader(DataLoader(list(range(len(self.files))), batch_size=1))
        was_training = model.training
        model.eval()
        sr = model.sample_rate
        trackers = [CodeUsageTracker(model.codebook_size, reduce_fn=lambda t: accelerator.reduce(t, reduction="sum"))
                    for _ in range(model.n_codebooks)]
        rows = []
        for batch in self._loader:
            index = int(batch[0])
            wav = self._load(self.files[index], model)
            codes, rec = self.reconstruct(model, wav)
            for q, tracker in enumerate(trackers):  # collective: every process runs as many files
                tracker.update(codes[q].to(accelerator.device))
            # Metrics on the first channel: the codec is trained on mono speech.
            m = compute_metrics(wav[0].numpy(), rec[0].numpy(), sr)
            row = torch.tensor([[float(m[key]) for key in METRIC_KEYS]], dtype=torch.float64,
                               device=accelerator.device)
            rows.append(accelerator.gather_for_metrics(row))
        table = torch.cat(rows).cpu().numpy()
        out = {f"val/{key}": _nanmean(table[:, i]) for i, key in enumerate(METRIC_KEYS)}
        out["val/codebook_utilization"] = float(np.mean([t.utilization() for t in trackers]))
        out["val/codebook_perplexity"] = float(np.mean([t.perplexity() for t in trackers]))
        if log_audio and logger is not None and accelerator.is_main_process:
            for i, path in enumerate(self.files[: self.audio_examples]):
                wav = self._load(path, model)
                _, rec = self.reconstruct(model, wav)
                logger.log_audio_pair(f"val_audio/{i}_{path.stem}", wav[0].numpy(), rec[0].numpy(), sr, step)
        model.train(was_training)
        return out


def _nanmean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else math.nan
