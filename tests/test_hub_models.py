"""Models by Hugging Face Hub repo id, read offline from a cache laid out exactly as the Hub's."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from simvq_audio import Tokenizer
from simvq_audio.cli import main
from simvq_audio.models import ModelLoadError, SimVQCodec
from simvq_audio.models.codec import CodecConfig
from simvq_audio.models.pretrained import is_hub_repo_id, resolve_model_dir
from simvq_audio.modules.seanet import SEANetConfig
from simvq_audio.quantization.builder import QuantizerConfig

hub_constants = pytest.importorskip("huggingface_hub.constants")

REPO_ID = "someorg/tiny-codec"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def tiny(seed: int = 0) -> SimVQCodec:
    torch.manual_seed(seed)
    cfg = CodecConfig(
        sample_rate=16000,
        seanet=SEANetConfig(n_filters=4, ratios=(4, 4), dimension=8, lstm=1),
        quantizer=QuantizerConfig(codebook_size=32, dim=4, n_q=2),
    )
    return SimVQCodec(cfg).eval()


def lay_out_hub_cache(cache: Path, repo_id: str, saved: Path) -> Path:
    """``models--org--name/{blobs,refs/main,snapshots/COMMIT}``, snapshot files linked to their blobs."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / COMMIT
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    for name in ("config.json", "model.safetensors"):
        data = (saved / name).read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        os.symlink(os.path.relpath(blob, snapshot), snapshot / name)
    return snapshot


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("saved")
    return path, tiny().save_pretrained(path)


@pytest.fixture
def offline_cache(tmp_path, monkeypatch, saved) -> Path:
    """An offline Hub cache holding ``REPO_ID``; the Hub reads its settings at import, so patch both."""
    home, cache = tmp_path / "hf", tmp_path / "hf" / "hub"
    snapshot = lay_out_hub_cache(cache, REPO_ID, saved[0])
    for key, value in {"HF_HUB_OFFLINE": "1", "HF_HOME": str(home), "HF_HUB_CACHE": str(cache)}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.chdir(tmp_path)  # so that "someorg/tiny-codec" is not a folder here
    return snapshot


def test_repo_id_form():
    assert is_hub_repo_id("org/name") and is_hub_repo_id("Org-1/model_v1.5")
    for text in ("name", "default", "/abs/path", "./org/name", "a/b/c", "org/../x", "org--x/y", "org/", "org/name.git"):
        assert not is_hub_repo_id(text), text


def test_loads_by_name_offline(offline_cache, saved):
    assert resolve_model_dir(REPO_ID) == offline_cache
    model = SimVQCodec.from_pretrained(REPO_ID)
    assert model.model_id == saved[1]
    tok = Tokenizer.from_pretrained(REPO_ID, device="cpu")
    assert tok.model.model_id == saved[1]


def test_existing_folder_wins_over_hub(offline_cache, saved, tmp_path):
    local = tmp_path / REPO_ID
    tiny(seed=1).save_pretrained(local)
    assert resolve_model_dir(REPO_ID) == Path(REPO_ID)
    assert SimVQCodec.from_pretrained(REPO_ID).model_id != saved[1]


def test_missing_repo_is_one_line_error(offline_cache):
    with pytest.raises(ModelLoadError) as info:
        SimVQCodec.from_pretrained("someorg/not-there")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("someorg/not-there: ")
    assert "HF_HUB_OFFLINE" in message


def test_cli_info_and_missing_repo(offline_cache, saved, capsys):
    assert main(["info", REPO_ID, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model_id"] == saved[1]
    assert main(["info", "someorg/not-there"]) != 0
    err = capsys.readouterr().err.strip()
    assert "someorg/not-there" in err and len(err.splitlines()) == 1


def test_subprocess_honours_hub_environment(tmp_path, saved):
    """The real path: the Hub's own settings from the environment of a fresh process."""
    cache = tmp_path / "hf" / "hub"
    lay_out_hub_cache(cache, REPO_ID, saved[0])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "HF_HUB_CACHE": str(cache),
           "OMP_NUM_THREADS": "1"}
    code = f"from simvq_audio.models import SimVQCodec; print(SimVQCodec.from_pretrained({REPO_ID!r}).model_id)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == saved[1]
