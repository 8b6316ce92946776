"""Non-finite guard: skip optimiser steps whose loss or gradients are NaN/Inf.

One bad batch (a clipped file, a rare fp16 overflow in a loss) should not poison the
weights; a run that keeps producing them is broken and should stop with a clear message
while its last good checkpoint is still intact.
"""

from __future__ import annotations

import math

from ..errors import SimVQError


class NonFiniteError(SimVQError, RuntimeError):
    """Training produced non-finite losses or gradients too many steps in a row."""


class NonFiniteGuard:
    """Counts skipped steps; ``observe(ok)`` raises ``NonFiniteError`` after ``patience`` bad steps in a row.

    ``state_dict``/``load_state_dict`` make the counters part of a checkpoint.
    """

    def __init__(self, patience: int):
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        self.patience = patience
        self.consecutive = 0
        self.total_skipped = 0

    @staticmethod
    def is_finite(*values: float | None) -> bool:
        """True when every value that is not ``None`` is a finite number."""
        return all(v is None or math.isfinite(float(v)) for v in values)

    def observe(self, ok: bool, step: int, detail: str = "") -> None:
        """Record the outcome of the update at ``step`` (``ok=False``: it was skipped)."""
        if ok:
            self.consecutive = 0
            return
        self.consecutive += 1
        self.total_skipped += 1
        if self.consecutive >= self.patience:
            raise NonFiniteError(
                f"non-finite loss or gradient in {self.consecutive} consecutive steps (last at step {step}"
                f"{': ' + detail if detail else ''}); stopping. The last checkpoint is intact; try a lower "
                f"learning rate, mixed_precision=bf16 instead of fp16, or check the data"
            )

    def state_dict(self) -> dict:
        return {"consecutive": self.consecutive, "total_skipped": self.total_skipped}

    def load_state_dict(self, state: dict) -> None:
        self.consecutive = int(state["consecutive"])
        self.total_skipped = int(state["total_skipped"])
