"""A failed write (full disk, file size limit) is one line naming the file and the system's reason, the
run goes on with the next file, and nothing is half-written."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from simvq_audio.models.codec import CodecConfig, SimVQCodec
from simvq_audio.modules.seanet import SEANetConfig
from simvq_audio.quantization.builder import QuantizerConfig
from simvq_audio.tokens.format import TokenHeader, write_tokens

resource = pytest.importorskip("resource")  # POSIX only

LIMIT = 200_000  # bytes: RLIMIT_FSIZE makes the kernel fail larger writes with EFBIG, like a full disk


def token_file(path: Path, seconds: float, model: SimVQCodec) -> Path:
    n_frames = int(seconds * 1000)  # hop 16 at 16 kHz
    header = TokenHeader(model_id=model.model_id, model_name="tiny", sample_rate=16000, frame_rate=1000.0,
                         hop_length=16, codebook_size=64, n_codebooks=1, n_frames=n_frames,
                         n_samples=n_frames * 16, original_sample_rate=16000, original_n_samples=n_frames * 16,
                         channels=1, original_channels=1, source=path.name)
    codes = np.random.default_rng(0).integers(0, 64, (1, n_frames))
    write_tokens(path, codes, header)
    return path


@pytest.mark.parametrize("chunk_seconds", ["2", "30"], ids=["streamed", "in-memory"])
def test_failed_write_is_one_line_and_the_next_file_goes_on(tmp_path, chunk_seconds):
    torch.manual_seed(0)
    model = SimVQCodec(CodecConfig(sample_rate=16000,
                                   seanet=SEANetConfig(n_filters=8, ratios=(4, 4), dimension=16, lstm=0),
                                   quantizer=QuantizerConfig(codebook_size=64, dim=8)))
    model.save_pretrained(tmp_path / "model")
    inputs = tmp_path / "tokens"
    inputs.mkdir()
    token_file(inputs / "a_big.svqt", 8.0, model)  # 256 kB of PCM_16: over the limit
    token_file(inputs / "b_small.svqt", 1.0, model)
    out = tmp_path / "out"
    script = textwrap.dedent(f"""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, ({LIMIT}, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
        from simvq_audio.cli import main
        sys.exit(main(["decode", {str(inputs)!r}, "-o", {str(out)!r}, "--model", {str(tmp_path / "model")!r},
                       "--device", "cpu", "--chunk-seconds", {chunk_seconds!r}, "--batch-size", "1"]))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                            env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1, result.stderr
    assert len(errors) == 1, errors
    assert str(out / "a_big.wav") in errors[0] and "cannot write (File too large)" in errors[0], errors
    assert "Traceback" not in result.stderr and "failed 1" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == ["b_small.wav"]  # no partial or temporary file
