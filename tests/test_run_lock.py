"""One training run per run folder: a second run is refused with the holder's pid; a dead holder's lock
is taken over; the lock goes with the run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from simvq_audio.cli import main
from simvq_audio.training.lock import LOCK_NAME, RunFolderLockedError, run_lock

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "recipes" / "tiny" / "config.yaml"

pytest.importorskip("fcntl")


def no_data(tmp_path: Path) -> list[str]:
    (tmp_path / "empty.jsonl").write_text("")
    return [f"data.train_manifest={tmp_path / 'empty.jsonl'}", "validation.every=0"]


def test_second_lock_on_a_folder_is_refused_with_the_holders_pid(tmp_path):
    with run_lock([tmp_path / "run"]) as stale:
        assert stale == [] and (tmp_path / "run" / LOCK_NAME).is_file()
        with pytest.raises(RunFolderLockedError) as info:
            with run_lock([tmp_path / "other", tmp_path / "run"]):
                pass
        message = str(info.value)
        assert message.startswith(f"{(tmp_path / 'run').resolve()}: run folder in use by another training run")
        assert f"pid {os.getpid()}" in message and "\n" not in message
        assert not (tmp_path / "other" / LOCK_NAME).exists()  # nothing stays locked after a refusal
    assert not (tmp_path / "run" / LOCK_NAME).exists()
    with run_lock([tmp_path / "run"]):  # released: a later run goes ahead
        pass


def test_lock_of_a_killed_run_is_detected_as_stale(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": pid, "host": "h", "started": 0}))  # kill -9 left it
    with run_lock([tmp_path]) as stale:
        assert [h["pid"] for h in stale] == [pid]
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()


def test_train_command_refuses_a_folder_in_use(tmp_path, capsys):
    run_dir = tmp_path / "run"
    with run_lock([run_dir]):  # (an empty manifest: without the lock the run fails fast, differently)
        code = main(["train", "--config", str(TINY), f"logging.dir={run_dir}", *no_data(tmp_path)])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 1 and len(err) == 1, err
    assert "run folder in use by another training run" in err[0] and f"pid {os.getpid()}" in err[0]
    assert not (run_dir / "checkpoints").exists() and not (run_dir / "config.yaml").exists()


def test_other_ranks_of_a_multi_process_run_do_not_lock(tmp_path, monkeypatch):
    from simvq_audio.commands import train as train_command

    seen = []
    monkeypatch.setattr(train_command, "_train", lambda cfg: seen.append(cfg) or 0)
    run_dir = tmp_path / "run"
    with run_lock([run_dir]):
        monkeypatch.setenv("RANK", "1")
        assert main(["train", "--config", str(TINY), f"logging.dir={run_dir}", *no_data(tmp_path)]) == 0
    assert len(seen) == 1


def test_a_separate_checkpoint_folder_is_locked_too(tmp_path, capsys):
    shared = tmp_path / "shared_checkpoints"
    with run_lock([shared]):
        code = main(["train", "--config", str(TINY), f"logging.dir={tmp_path / 'run'}", f"checkpoint.dir={shared}",
                     *no_data(tmp_path)])
    assert code == 1 and "run folder in use" in capsys.readouterr().err
