"""Exact nearest-neighbour search over a codebook, with bounded memory.

The bulk of the search is one float32 matmul per block (fast). Float32 rounding alone would make the
code of a near-tie depend on how the rows were blocked, i.e. on the batch (1 token in ~30,000 on real
speech). So the matmul computes, for every code, a *lower bound* of its exact distance (the expanded
distance minus a bound on its rounding error); a row whose best code's upper bound lies below every
other code's lower bound has its exact nearest code already, and the few others (near-ties, ~3% of
rows) are settled by float64 distances. Each row's code is therefore the exact nearest code (the lowest
index on a tie), whatever the blocking, the other rows searched with it, or the BLAS.
"""

from __future__ import annotations

import torch

# Distance blocks hold at most this many float32 values (64 MiB), and so does each codebook
# chunk; with the matmul workspace the search stays well under 256 MB for any K or N.
DEFAULT_MAX_BLOCK_ELEMENTS = 2**24
MAX_CODEBOOK_CHUNK = 2**16
_UNIT_ROUNDOFF = 2.0**-24  # float32
# Margin on the textbook bound gamma_n = n u / (1 - n u) of an n-term dot product, which holds for any
# summation order (blocked or FMA kernels included).
_SAFETY = 2.0


def _error_scale(d: int) -> float:
    """``e(x, c) = scale * (||c||^2 + 2 |x| ||c||)`` bounds the float32 error of one expanded distance
    over ``d`` dimensions (d + 2 products, plus the rounding of ``||c||^2`` itself)."""
    n = d + 3
    return _SAFETY * n * _UNIT_ROUNDOFF / (1 - n * _UNIT_ROUNDOFF)


def _exact_codes(x: torch.Tensor, codebook: torch.Tensor, max_block_elements: int) -> torch.Tensor:
    """Nearest code by float64 distances ``sum (x - c)^2`` (first index on ties), for a few rows."""
    x64, codebook64 = x.double(), codebook.double()
    n, (k, d) = x.shape[0], codebook.shape
    k_chunk = max(1, min(k, max_block_elements // d))
    n_chunk = max(1, max_block_elements // (k_chunk * d))
    best = torch.full((n,), float("inf"), dtype=torch.float64, device=x.device)
    codes = torch.zeros(n, dtype=torch.long, device=x.device)
    for k0 in range(0, k, k_chunk):
        chunk = codebook64[k0 : k0 + k_chunk]
        for n0 in range(0, n, n_chunk):
            dist = (x64[n0 : n0 + n_chunk, None, :] - chunk[None]).square_().sum(dim=2)
            val, idx = dist.min(dim=1)
            better = val < best[n0 : n0 + n_chunk]  # strict: the earlier chunk keeps a tie
            best[n0 : n0 + n_chunk] = torch.where(better, val, best[n0 : n0 + n_chunk])
            codes[n0 : n0 + n_chunk] = torch.where(better, idx + k0, codes[n0 : n0 + n_chunk])
    return codes


def nearest_codes(
    x: torch.Tensor,
    codebook: torch.Tensor,
    max_block_elements: int = DEFAULT_MAX_BLOCK_ELEMENTS,
) -> torch.Tensor:
    """Index of the nearest codebook row (L2) for every row of ``x``.

    Exact: the argmin of the distances from each row (as float32) to the float32 codebook, computed
    in float64 where float32 could be wrong; the lowest index on a tie. A row's code does not depend
    on the other rows or on the blocking.

    Args:
        x: ``[N, d]`` vectors (any float dtype; the search runs in float32, near-ties in float64).
        codebook: ``[K, d]`` code vectors.
        max_block_elements: largest distance block computed at once (N_chunk * K_chunk); codebook
            chunks hold at most as many values.

    Returns:
        ``[N]`` int64 codes in ``[0, K)``.
    """
    if x.dim() != 2 or codebook.dim() != 2 or x.shape[1] != codebook.shape[1]:
        raise ValueError(f"expected x [N, d] and codebook [K, d], got {tuple(x.shape)} and {tuple(codebook.shape)}")
    if codebook.shape[0] < 1:
        raise ValueError("the codebook is empty")
    if max_block_elements < 1:
        raise ValueError(f"max_block_elements must be >= 1, got {max_block_elements}")
    with torch.autocast(device_type=x.device.type, enabled=False), torch.no_grad():
        x = x.detach().float()
        codebook = codebook.detach().float()
        (n, d), k = x.shape, codebook.shape[0]
        codes = torch.empty(n, dtype=torch.long, device=x.device)
        if n == 0:
            return codes
        scale = _error_scale(d)
        x_norm = torch.linalg.vector_norm(x, dim=1)
        c_norm = torch.linalg.vector_norm(codebook, dim=1)
        # With e = scale (||c||^2 + 2 |x| ||c||), one matmul of [x, 1, |x|] by [-2c, (1 - 2 scale) ||c||^2,
        # -4 scale ||c||] gives L = ||c||^2 - 2 x.c - 2e: computed in float32 (error <= e), it is a lower
        # bound of the exact ||c||^2 - 2 x.c (= ||x - c||^2 - ||x||^2), and L + 3e an upper bound.
        k_chunk = max(1, min(k, MAX_CODEBOOK_CHUNK, max_block_elements // (d + 2), max_block_elements))
        n_chunk = max(1, min(n, max_block_elements // k_chunk))
        rows = x.new_empty(n_chunk, d + 2)
        rows[:, d] = 1.0
        block = x.new_empty(n_chunk * k_chunk)  # reused: no page faults for a fresh block each time
        best = x.new_empty(n)  # smallest lower bound, at `codes`
        second = x.new_full((n,), float("inf"))  # smallest lower bound of any other code
        for k0 in range(0, k, k_chunk):
            chunk, norm = codebook[k0 : k0 + k_chunk], c_norm[k0 : k0 + k_chunk]
            kc = chunk.shape[0]
            chunk_aug = x.new_empty(kc, d + 2)  # filled in place: no chunk-sized temporaries
            torch.mul(chunk, -2.0, out=chunk_aug[:, :d])
            torch.mul(norm.square(), 1.0 - 2.0 * scale, out=chunk_aug[:, d])
            torch.mul(norm, -4.0 * scale, out=chunk_aug[:, d + 1])
            for n0 in range(0, n, n_chunk):
                r = min(n_chunk, n - n0)
                rows[:r, :d].copy_(x[n0 : n0 + r])
                rows[:r, d + 1].copy_(x_norm[n0 : n0 + r])
                dist = block[: r * kc].view(r, kc)
                torch.mm(rows[:r], chunk_aug.t(), out=dist)
                val, idx = dist.min(dim=1)
                if kc > 1:
                    dist.scatter_(1, idx[:, None], float("inf"))
                    val2 = dist.min(dim=1).values
                else:
                    val2 = torch.full_like(val, float("inf"))
                rows_best, rows_second = best[n0 : n0 + r], second[n0 : n0 + r]
                if k0 == 0:
                    rows_best.copy_(val)
                    rows_second.copy_(val2)
                    codes[n0 : n0 + r] = idx
                else:  # strict: on a tie the earlier chunk keeps it (a tie goes to float64 anyway)
                    better = val < rows_best
                    rows_second.copy_(torch.minimum(torch.minimum(rows_second, val2),
                                                    torch.maximum(rows_best, val)))
                    rows_best.copy_(torch.where(better, val, rows_best))
                    codes[n0 : n0 + r] = torch.where(better, idx + k0, codes[n0 : n0 + r])
        chosen = c_norm[codes]
        upper = best + 3.0 * scale * (chosen.square() + 2.0 * x_norm * chosen)
        near = (upper >= second).nonzero().flatten()  # not certain: settle in float64
        if near.numel():
            codes[near] = _exact_codes(x[near], codebook, max_block_elements)
        return codes
