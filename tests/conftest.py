"""Suite-wide test settings.

Tiny models gain nothing from intra-op threads, and on a loaded 2-core CI machine
OpenMP spin-waiting makes them many times slower; one thread keeps the suite fast
and its timings stable.

Real-speech tests read the project's data from ``../shared/data`` beside the clone (a symlink works)
and skip without it; the run says so at the top and in the summary, so a green run without the data
is never mistaken for a full one.
"""

from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
_DATA_SKIP_WORDS = ("shared", "real speech", str(SHARED_DATA))


def pytest_report_header(config):
    if (SHARED_DATA / "dev.jsonl").is_file():
        return f"real-speech data: {SHARED_DATA}"
    return (f"real-speech data: NOT FOUND at {SHARED_DATA}: the tests that need it will be skipped "
            f"(put the project's data there, or a symlink to it)")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    skipped = [r for r in terminalreporter.stats.get("skipped", [])
               if any(word in str(getattr(r, "longrepr", "")) for word in _DATA_SKIP_WORDS)]
    if skipped:
        terminalreporter.write_line(
            f"{len(skipped)} real-speech tests SKIPPED: no data at {SHARED_DATA} "
            f"(put the project's data there, or a symlink to it)", yellow=True, bold=True)


@pytest.fixture(autouse=True, scope="session")
def _single_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def tiny_codec_forward(seed: int):
    """``(codec, real, out)``: a tiny training-mode codec (8-d latent, 4-d lookup, 32 codes, 100 frames) seeded
    with ``seed``, 0.1 s of noise and its forward output, for tests of losses on the latents."""
    import torch

    from simvq_audio.models import CodecConfig, SimVQCodec
    from simvq_audio.modules import SEANetConfig
    from simvq_audio.quantization import QuantizerConfig

    torch.manual_seed(seed)
    codec = SimVQCodec(CodecConfig(sample_rate=16000, seanet=SEANetConfig(n_filters=4, ratios=(4, 4), dimension=8,
                                                                          lstm=0),
                                   quantizer=QuantizerConfig(codebook_size=32, dim=4))).train()
    real = torch.randn(2, 1, 1600) * 0.1
    return codec, real, codec(real)
