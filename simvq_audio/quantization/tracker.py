"""Codebook usage across training steps (and processes): utilisation, perplexity, dead codes.

A batch's ``usage`` metric says little for a 65,536-code book: one batch holds far fewer
frames than codes. ``CodeUsageTracker`` sums code counts over many steps, and over all
processes, so "how much of the codebook is alive" can be logged during training.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable

import torch

ReduceFn = Callable[[torch.Tensor], torch.Tensor]


def _distributed_sum(counts: torch.Tensor) -> torch.Tensor:
    """Sum ``counts`` over processes when torch.distributed runs with several of them."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(counts, op=dist.ReduceOp.SUM)
    return counts


def uniform_ceiling(frames: int, codebook_size: int) -> float:
    """The expected share of ``codebook_size`` codes that ``frames`` uniform draws use: ``1 - (1 - 1/K) ** frames``."""
    return 1.0 - math.exp(frames * math.log1p(-1.0 / codebook_size)) if frames else 0.0


class CodeUsageTracker:
    """Counts of each code over the last ``window`` updates (or since ``reset`` when ``None``).

    Args:
        codebook_size: number of codes ``K``; codes must lie in ``[0, K)``.
        window: number of recent ``update`` calls kept; ``None`` keeps everything since ``reset``.
        reduce_fn: sums a ``[K]`` int64 count tensor over processes and returns the result
            (e.g. ``accelerator.reduce``, whose default reduction is a sum). By default
            ``torch.distributed.all_reduce`` is used when a process group with more than one
            process is initialised, and nothing otherwise.

    ``update`` is collective when counts are reduced: call it on every process, every step.
    The queries (``utilization``, ``perplexity``, ``counts``, ``dead_codes``) are local and may
    be called on the main process alone. Track one codebook per tracker (one per residual stage).
    Memory: two ``[K]`` int64 vectors (the window's counts, each code's last update) plus, with a
    window, the distinct codes of each kept step.
    """

    def __init__(self, codebook_size: int, window: int | None = None, reduce_fn: ReduceFn | None = None):
        if codebook_size < 1:
            raise ValueError(f"codebook_size must be >= 1, got {codebook_size}")
        if window is not None and window < 1:
            raise ValueError(f"window must be >= 1 or None, got {window}")
        self.codebook_size = int(codebook_size)
        self.window = window
        self.reduce_fn = reduce_fn
        self._total: torch.Tensor | None = None
        # Per step: (codes present, their counts); a dense [K] vector per step would cost
        # window * K * 8 bytes (50 MB for K = 65536, window = 100).
        self._steps: deque[tuple[torch.Tensor, torch.Tensor]] = deque()
        self.n_updates = 0
        self._last_seen: torch.Tensor | None = None  # [K]: the update (1-based) that last used each code; 0 = never

    def reset(self) -> None:
        """Forget all counts."""
        self._total = None
        self._steps.clear()
        self._last_seen = None
        self.n_updates = 0

    @torch.no_grad()
    def update(self, codes: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """Add one step's ``codes`` (any shape, integers in ``[0, K)``).

        ``mask`` (same shape as ``codes``, or ``[B, T]`` for codes ``[B, n, T]``; true = real
        frame) leaves padded frames out.
        """
        codes = self._check_codes(codes)
        if mask is not None:
            mask = torch.as_tensor(mask, device=codes.device).bool()
            if mask.dim() == codes.dim() - 1 and codes.dim() == 3:
                mask = mask.unsqueeze(1).expand_as(codes)
            if mask.shape != codes.shape:
                raise ValueError(f"mask shape {tuple(mask.shape)} does not match codes {tuple(codes.shape)}")
            codes = codes[mask]
        step = torch.bincount(codes.reshape(-1), minlength=self.codebook_size)
        step = self.reduce_fn(step) if self.reduce_fn is not None else _distributed_sum(step)
        step = step.reshape(-1).long()
        if step.numel() != self.codebook_size:
            raise ValueError(f"reduce_fn returned {step.numel()} counts, expected {self.codebook_size}")
        if self._total is None:
            self._total = torch.zeros(self.codebook_size, dtype=torch.long, device=step.device)
        elif self._total.device != step.device:
            self._total = self._total.to(step.device)
        self._total += step
        self.n_updates += 1
        present = step.nonzero().squeeze(1)
        if self._last_seen is None:
            self._last_seen = torch.zeros(self.codebook_size, dtype=torch.long, device=step.device)
        self._last_seen[present.to(self._last_seen.device)] = self.n_updates
        if self.window is not None:
            self._steps.append((present, step[present]))
            if len(self._steps) > self.window:
                old_codes, old_counts = self._steps.popleft()
                self._total.index_add_(0, old_codes.to(self._total.device), -old_counts.to(self._total.device))

    def _check_codes(self, codes: torch.Tensor) -> torch.Tensor:
        codes = torch.as_tensor(codes)
        if codes.is_floating_point() or codes.is_complex() or codes.dtype == torch.bool:
            raise ValueError(f"codes must be integers, got {codes.dtype}")
        codes = codes.long()
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise ValueError(f"codes must lie in [0, {self.codebook_size}), got [{int(codes.min())}, {int(codes.max())}]")
        return codes

    def counts(self) -> torch.Tensor:
        """``[K]`` int64 counts of each code in the window (on the CPU, a copy)."""
        if self._total is None:
            return torch.zeros(self.codebook_size, dtype=torch.long)
        return self._total.detach().to("cpu", copy=True)

    def total(self) -> int:
        """Number of codes counted in the window."""
        return 0 if self._total is None else int(self._total.sum())

    def utilization(self) -> float:
        """Fraction of the ``K`` codes used at least once in the window (0.0 when empty)."""
        if self._total is None:
            return 0.0
        return float((self._total > 0).sum()) / self.codebook_size

    def uniform_ceiling(self) -> float:
        """The utilisation a perfectly uniform code distribution would reach over the window's frames.

        ``N`` frames drawn uniformly from ``K`` codes use ``1 - (1 - 1/K) ** N`` of them on average:
        a window of ``K`` frames can show at most 63%, one of ``3 K`` frames 95%.
        """
        return uniform_ceiling(self.total(), self.codebook_size)

    def dead_codes(self, steps: int) -> int:
        """Codes not used in any of the last ``steps`` updates (all updates so far, when fewer)."""
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if self._last_seen is None:
            return self.codebook_size
        return int((self._last_seen <= max(self.n_updates - steps, 0)).sum())

    def perplexity(self) -> float:
        """``exp`` of the entropy of the code distribution in the window, in ``[1, K]`` (1.0 when empty)."""
        if self._total is None or int(self._total.sum()) == 0:
            return 1.0
        probs = self._total.double() / self._total.sum()
        probs = probs[probs > 0]
        return math.exp(float(-(probs * probs.log()).sum()))

    def state_dict(self) -> dict:
        """Everything needed to resume (e.g. with ``accelerator.register_for_checkpointing``)."""
        return {
            "codebook_size": self.codebook_size,
            "window": self.window,
            "n_updates": self.n_updates,
            "total": self.counts(),
            "steps": [(c.cpu(), n.cpu()) for c, n in self._steps],
            "last_seen": None if self._last_seen is None else self._last_seen.cpu().clone(),
        }

    def load_state_dict(self, state: dict) -> None:
        if int(state["codebook_size"]) != self.codebook_size or state["window"] != self.window:
            raise ValueError(
                f"tracker state is for K={state['codebook_size']}, window={state['window']}; "
                f"this tracker has K={self.codebook_size}, window={self.window}"
            )
        device = self._total.device if self._total is not None else torch.device("cpu")
        self._total = torch.as_tensor(state["total"], dtype=torch.long).to(device).clone()
        self._steps = deque((c.to(device), n.to(device)) for c, n in state["steps"])
        self.n_updates = int(state["n_updates"])
        last = state.get("last_seen")
        self._last_seen = None if last is None else torch.as_tensor(last, dtype=torch.long).to(device).clone()

    def to_tensors(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """``state_dict`` as flat int64 tensors (for safetensors: nothing pickled), keys under ``prefix``.

        The window's steps go in as their codes and counts concatenated, with each step's length.
        """
        state = self.state_dict()
        steps, empty = state["steps"], [torch.zeros(0, dtype=torch.long)]
        window = -1 if state["window"] is None else state["window"]
        t = {
            "meta": torch.tensor([state["codebook_size"], window, state["n_updates"]]),
            "total": state["total"],
            "step_lengths": torch.tensor([len(c) for c, _ in steps], dtype=torch.long),
            "step_codes": torch.cat([c for c, _ in steps] or empty),
            "step_counts": torch.cat([n for _, n in steps] or empty),
        }
        if state["last_seen"] is not None:
            t["last_seen"] = state["last_seen"]
        return {prefix + k: v.long().contiguous() for k, v in t.items()}

    def load_tensors(self, tensors: dict[str, torch.Tensor], prefix: str = "") -> None:
        """Restore what ``to_tensors`` wrote (same ``prefix``)."""
        k, window, n_updates = (int(v) for v in tensors[prefix + "meta"])
        lengths = tensors[prefix + "step_lengths"].tolist()
        codes = torch.split(tensors[prefix + "step_codes"], lengths)
        counts = torch.split(tensors[prefix + "step_counts"], lengths)
        self.load_state_dict({
            "codebook_size": k, "window": None if window < 0 else window, "n_updates": n_updates,
            "total": tensors[prefix + "total"], "steps": list(zip(codes, counts, strict=True)),
            "last_seen": tensors.get(prefix + "last_seen"),
        })
