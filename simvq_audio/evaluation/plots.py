"""Evaluation figures: stacked mel spectrograms and the code-usage histogram.

Figures are drawn on matplotlib's Agg canvas created inside each function (no pyplot,
no global backend switch, nothing at import time) and saved atomically as PNG.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..audio.mel import log_mel
from ..fileio import atomic_path

DB_RANGE = 80.0


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    return path


def plot_mel_comparison(path: str | os.PathLike, reference: np.ndarray, systems: Mapping[str, np.ndarray],
                        sample_rate: int, title: str = "") -> Path:
    """One PNG: the reference's mel spectrogram on top, each system's reconstruction below it.

    ``reference [N]`` and each ``systems[name] [N]`` are mono at ``sample_rate``; all panels share
    one dB colour scale (reference peak down to ``DB_RANGE`` dB below) so they compare by eye.
    """
    panels = [("reference", reference), *systems.items()]
    mels = [log_mel(x, sample_rate) for _, x in panels]
    top = float(mels[0].max())
    seconds = len(reference) / sample_rate
    fig = _figure(10, 1.9 * len(panels) + 0.4)
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    image = None
    for ax, (name, _), mel in zip(axes, panels, mels, strict=True):
        image = ax.imshow(mel, origin="lower", aspect="auto", cmap="magma", vmin=top - DB_RANGE, vmax=top,
                          extent=(0, seconds, 0, mel.shape[0]))
        ax.set_ylabel("mel bin")
        ax.set_title(name, fontsize=9, loc="left")
    axes[-1].set_xlabel("time (s)")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.colorbar(image, ax=list(axes), label="dB", fraction=0.02, pad=0.01)
    return _save(fig, path)


def plot_code_usage(path: str | os.PathLike, counts: np.ndarray, utilisation: float, perplexity: float,
                    title: str = "") -> Path:
    """One PNG: each codebook's code counts ``counts [n_q, K]`` sorted high to low, log scale.

    Unused codes have no bar (log scale); the title gives utilisation and perplexity.
    """
    counts = np.atleast_2d(np.asarray(counts))
    n_q, k = counts.shape
    fig = _figure(8, 4)
    ax = fig.subplots()
    ranks = np.arange(1, k + 1)
    for q in range(n_q):
        ordered = np.sort(counts[q])[::-1].astype(np.float64)
        ordered[ordered == 0] = np.nan  # nothing to draw for unused codes on a log axis
        ax.bar(ranks, ordered, width=1.0, alpha=1.0 if n_q == 1 else 0.5, label=f"codebook {q}" if n_q > 1 else None)
    ax.set_yscale("log")
    ax.set_ylim(bottom=0.7)  # a code used once still shows
    ax.set_xlim(0.5, k + 0.5)
    ax.set_xlabel(f"code rank (of {k})")
    ax.set_ylabel("count")
    used = int((counts > 0).sum())
    head = f"{title}: " if title else ""
    ax.set_title(f"{head}code usage, utilisation {utilisation:.1%} ({used}/{n_q * k} codes), perplexity {perplexity:.1f}",
                 fontsize=10)
    if n_q > 1:
        ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    return _save(fig, path)
