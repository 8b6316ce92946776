"""Exact nearest-neighbour search over a codebook, in float32, with bounded memory."""

from __future__ import annotations

import torch

# Distance blocks hold at most this many float32 values (64 MiB), and so does each codebook
# chunk; with the matmul workspace the search stays well under 256 MB for any K or N.
DEFAULT_MAX_BLOCK_ELEMENTS = 2**24
MAX_CODEBOOK_CHUNK = 2**16


def nearest_codes(
    x: torch.Tensor,
    codebook: torch.Tensor,
    max_block_elements: int = DEFAULT_MAX_BLOCK_ELEMENTS,
) -> torch.Tensor:
    """Index of the nearest codebook row (L2) for every row of ``x``.

    Args:
        x: ``[N, d]`` vectors (any float dtype; the search runs in float32).
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
        # ||x||^2 is constant per row, so argmin over ||c||^2 - 2 x.c suffices. Both terms come
        # out of one matmul of [x, 1] by [-2c, ||c||^2]: no separate pass adding ||c||^2 to every
        # block. K chunks (the outer loop, built once each) and blocks both respect the bound.
        k_chunk = max(1, min(k, MAX_CODEBOOK_CHUNK, max_block_elements // (d + 1), max_block_elements))
        n_chunk = max(1, min(n, max_block_elements // k_chunk))
        rows = x.new_empty(n_chunk, d + 1)
        rows[:, d] = 1.0
        block = x.new_empty(n_chunk * k_chunk)  # reused: no page faults for a fresh block each time
        best = x.new_empty(n)
        for k0 in range(0, k, k_chunk):
            chunk = codebook[k0 : k0 + k_chunk]
            kc = chunk.shape[0]
            chunk_aug = x.new_empty(kc, d + 1)  # filled in place: no chunk-sized temporaries
            torch.mul(chunk, -2.0, out=chunk_aug[:, :d])
            chunk_aug[:, d] = torch.linalg.vector_norm(chunk, dim=1).square_()
            for n0 in range(0, n, n_chunk):
                r = min(n_chunk, n - n0)
                rows[:r, :d].copy_(x[n0 : n0 + r])
                dist = block[: r * kc].view(r, kc)
                torch.mm(rows[:r], chunk_aug.t(), out=dist)
                val, idx = dist.min(dim=1)
                if k0 == 0:
                    best[n0 : n0 + r] = val
                    codes[n0 : n0 + r] = idx
                else:  # strict: on a tie the earlier chunk keeps it, as argmin keeps the first index
                    better = val < best[n0 : n0 + r]
                    best[n0 : n0 + r] = torch.where(better, val, best[n0 : n0 + r])
                    codes[n0 : n0 + r] = torch.where(better, idx + k0, codes[n0 : n0 + r])
        return codes
