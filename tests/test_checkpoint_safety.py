"""Resuming never runs code from a checkpoint: states that need the full unpickler are refused."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from simvq_audio.training.checkpoint import CheckpointError, TrainState, check_pickles, resolve_resume


class Payload:
    """What a crafted checkpoint could hold: unpickling it would create a file (or do anything else)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def checkpoint(root: Path, state) -> Path:
    path = root / "checkpoints" / "step-00000001"
    path.mkdir(parents=True)
    (path / "trainer_state.json").write_text(json.dumps({"step": 1, "epoch": 0, "batch_in_epoch": 1}))
    torch.save(state, path / "custom_checkpoint_0.pkl")  # as Accelerate writes them
    return path


def test_plain_states_are_resumed(tmp_path):
    ours = {"state": TrainState(3, 1, 2).state_dict(), "ema": {"w": torch.ones(2)}, "lrs": [0.1], "name": "x"}
    path = checkpoint(tmp_path, ours)
    assert resolve_resume("auto", tmp_path / "checkpoints") == path
    check_pickles(path)


def test_a_state_that_would_run_code_is_refused_unopened(tmp_path):
    marker = tmp_path / "pwned"
    path = checkpoint(tmp_path, {"step": 1})
    with open(path / "custom_checkpoint_1.pkl", "wb") as f:
        pickle.dump({"step": Payload(marker)}, f, protocol=2)
    for resume in ("auto", str(path), str(tmp_path)):
        with pytest.raises(CheckpointError, match=r"custom_checkpoint_1\.pkl: not resumed") as info:
            resolve_resume(resume, tmp_path / "checkpoints")
        assert "\n" not in str(info.value)
    assert not marker.exists()
