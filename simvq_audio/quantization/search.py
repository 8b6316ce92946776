"""Exact nearest-neighbour search over a codebook, in float32, with bounded memory."""

from __future__ import annotations

import torch

# Distance blocks hold at most this many float32 values (64 MiB); with the matmul
# workspace and the running minimum the search stays well under 256 MB for any K or N.
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
        max_block_elements: largest distance block computed at once (N_chunk * K_chunk).

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
        n, k = x.shape[0], codebook.shape[0]
        codes = torch.empty(n, dtype=torch.long, device=x.device)
        if n == 0:
            return codes
        # Bound K chunks by the block size too, so a block never exceeds max_block_elements.
        k_chunk = max(1, min(k, MAX_CODEBOOK_CHUNK, max_block_elements))
        n_chunk = max(1, max_block_elements // k_chunk)
        cb_sq = codebook.pow(2).sum(dim=1)
        for n0 in range(0, n, n_chunk):
            rows = x[n0 : n0 + n_chunk]
            best_val = None
            best_idx = None
            for k0 in range(0, k, k_chunk):
                block = codebook[k0 : k0 + k_chunk]
                # ||x||^2 is constant per row, so argmin over ||c||^2 - 2 x.c suffices.
                dist = torch.addmm(cb_sq[k0 : k0 + k_chunk], rows, block.t(), beta=1.0, alpha=-2.0)
                val, idx = dist.min(dim=1)
                del dist
                idx = idx + k0
                if best_val is None:
                    best_val, best_idx = val, idx
                else:
                    better = val < best_val
                    best_val = torch.where(better, val, best_val)
                    best_idx = torch.where(better, idx, best_idx)
            codes[n0 : n0 + rows.shape[0]] = best_idx
        return codes
