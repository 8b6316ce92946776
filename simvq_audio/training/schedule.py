"""Learning-rate schedule as a pure function of the optimiser step.

A pure function (no state besides the step) means a resumed run, a run on eight GPUs
and a run on one CPU all see the same learning rate at the same step. ``lr_at`` is
used through ``torch.optim.lr_scheduler.LambdaLR`` (see ``make_scheduler``).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

KINDS = ("cosine", "exponential", "constant")


@dataclass(frozen=True)
class ScheduleConfig:
    """Linear warm-up for ``warmup_steps`` (default none, as HiFi-GAN, DAC and SimVQ), then a decay.

    ``kind``: ``cosine`` (from 1 down to ``min_factor`` at ``total_steps``), ``exponential``
    (``gamma ** (step - warmup_steps)``, floored at ``min_factor``) or ``constant``.
    ``total_steps``: end of the cosine; ``None`` means ``training.max_steps``.
    """

    kind: str = "cosine"
    warmup_steps: int = 0
    total_steps: int | None = None
    min_factor: float = 0.1
    gamma: float = 0.99999

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"schedule kind must be one of {KINDS}, got {self.kind!r}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.total_steps is not None and self.total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {self.total_steps}")
        if not 0.0 <= self.min_factor <= 1.0:
            raise ValueError(f"min_factor must be in [0, 1], got {self.min_factor}")
        if not 0.0 < self.gamma <= 1.0:
            raise ValueError(f"gamma must be in (0, 1], got {self.gamma}")


def lr_at(step: int, cfg: ScheduleConfig, peak_lr: float = 1.0) -> float:
    """Learning rate at optimiser step ``step`` (0-based); ``peak_lr=1`` gives the factor.

    Warm-up is linear from ``peak_lr / warmup_steps`` at step 0 to ``peak_lr`` at step
    ``warmup_steps - 1``, so the very first update is never taken with a zero rate.
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if step < cfg.warmup_steps:
        return peak_lr * (step + 1) / cfg.warmup_steps
    if cfg.kind == "constant":
        return peak_lr
    after = step - cfg.warmup_steps
    if cfg.kind == "exponential":
        return peak_lr * max(cfg.min_factor, cfg.gamma**after)
    total = cfg.total_steps if cfg.total_steps is not None else cfg.warmup_steps + 1
    span = max(1, total - cfg.warmup_steps)
    progress = min(1.0, after / span)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return peak_lr * (cfg.min_factor + (1.0 - cfg.min_factor) * cosine)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: ScheduleConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` whose factor at step ``s`` is ``lr_at(s, cfg)``; step it once per optimiser step."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, functools.partial(lr_at, cfg=cfg))
