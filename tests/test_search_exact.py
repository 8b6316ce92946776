"""The nearest-code search is exact: near-ties that float32 rounding would settle by the blocking (and so
by the batch) are settled in float64, so a row's code never depends on the rows searched with it."""

from __future__ import annotations

import pytest
import torch

from simvq_audio.quantization import search as search_module
from simvq_audio.quantization.search import nearest_codes


def float64_nearest(x: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    return ((x.double()[:, None, :] - codebook.double()[None]) ** 2).sum(-1).argmin(1)


def near_ties(n: int = 2000, k: int = 512, d: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes around a large common offset (as a codebook with a bias has), and rows almost exactly
    between two codes: the float32 expanded distance ||c||^2 - 2 x.c cannot tell them apart."""
    gen = torch.Generator().manual_seed(seed)
    offset = torch.randn(d, generator=gen) * 2.0
    codebook = offset + torch.randn(k, d, generator=gen) * 0.05
    a = torch.randint(0, k, (n,), generator=gen)
    b = torch.randint(0, k, (n,), generator=gen)
    t = 0.5 + (torch.rand(n, generator=gen) - 0.5) * 1e-5
    x = codebook[a] * t[:, None] + codebook[b] * (1 - t[:, None])
    x = x + torch.randn(n, d, generator=gen) * 1e-3
    return x.float(), codebook.float()


def test_near_ties_are_settled_exactly():
    x, codebook = near_ties()
    assert torch.equal(nearest_codes(x, codebook), float64_nearest(x, codebook))


@pytest.mark.parametrize("block", [64, 2**24])
def test_a_rows_code_does_not_depend_on_its_companions(block):
    x, codebook = near_ties(n=100, k=256, seed=1)
    together = nearest_codes(x, codebook, max_block_elements=block)
    alone = torch.cat([nearest_codes(x[i : i + 1], codebook) for i in range(x.shape[0])])
    assert torch.equal(together, alone)
    shuffled = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(2))
    assert torch.equal(nearest_codes(x[shuffled], codebook, max_block_elements=block), alone[shuffled])


def test_across_codebook_chunks_and_on_exact_duplicates(monkeypatch):
    monkeypatch.setattr(search_module, "MAX_CODEBOOK_CHUNK", 100)
    x, codebook = near_ties(n=500, k=450, seed=3)
    codebook[300] = codebook[20]  # an exact tie across chunks goes to the lower index, as argmin does
    x[0] = codebook[20]
    codes = nearest_codes(x, codebook)
    assert torch.equal(codes, float64_nearest(x, codebook)) and int(codes[0]) == 20


def test_only_near_ties_pay_for_float64(monkeypatch):
    calls = []
    real = search_module._exact_codes
    monkeypatch.setattr(search_module, "_exact_codes", lambda x, c, m: calls.append(x.shape[0]) or real(x, c, m))
    gen = torch.Generator().manual_seed(4)
    codebook = torch.randn(512, 8, generator=gen) * 8**-0.5
    x = torch.randn(2000, 8, generator=gen) * 8**-0.5
    assert torch.equal(nearest_codes(x, codebook), float64_nearest(x, codebook))
    assert sum(calls) < 0.05 * x.shape[0]
