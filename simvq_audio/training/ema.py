"""Exponential moving average of a model's weights, used for validation and export.

GAN-trained decoders are noisy from step to step; the average of recent weights
reconstructs better and is what a release model ships.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """A frozen copy of ``model`` whose floating tensors track ``model`` after each update.

    ``update(model)``: ``ema = d * ema + (1 - d) * model`` for parameters, where
    ``d = min(decay, (1 + n) / (10 + n))`` after ``n`` updates (a short warm-up so the
    average is not dominated by the random initialisation). Buffers (codebook
    fingerprints, EMA-VQ statistics) are copied as they are. ``decay = 0`` keeps an
    exact copy. ``state_dict``/``load_state_dict`` make it checkpointable with
    ``Accelerator.register_for_checkpointing``.
    """

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.num_updates = 0
        self.model = copy.deepcopy(model).eval()
        self.model.requires_grad_(False)

    def current_decay(self) -> float:
        n = self.num_updates
        return min(self.decay, (1.0 + n) / (10.0 + n))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards ``model`` (the unwrapped generator, same architecture)."""
        d = self.current_decay()
        ema_params = dict(self.model.named_parameters())
        for name, param in model.named_parameters():
            target = ema_params[name]
            target.lerp_(param.detach().to(target.dtype), 1.0 - d)
        ema_buffers = dict(self.model.named_buffers())
        for name, buf in model.named_buffers():
            if name in ema_buffers:
                ema_buffers[name].copy_(buf)
        self.num_updates += 1

    def to(self, device: torch.device | str) -> EMA:
        self.model.to(device)
        return self

    def state_dict(self) -> dict:
        return {
            "decay": self.decay,
            "num_updates": self.num_updates,
            "model": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
        }

    def load_state_dict(self, state: dict) -> None:
        self.num_updates = int(state["num_updates"])
        self.model.load_state_dict(state["model"], strict=True)
