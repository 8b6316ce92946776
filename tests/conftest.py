"""Suite-wide test settings.

Tiny models gain nothing from intra-op threads, and on a loaded 2-core CI machine
OpenMP spin-waiting makes them many times slower; one thread keeps the suite fast
and its timings stable.
"""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _single_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
