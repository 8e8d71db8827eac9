"""Lanczos on each row of a block of vectors at once, each on its own Krylov space: ``f(A) g`` for functions ``f`` of
the eigenvalues, ``‖g‖ Q f(T) e₁`` (the per-query solver of the horizon response; one shared space is
:func:`ifscope.core.krylov.block_krylov_apply`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor


def block_lanczos(matmat: Callable[[Tensor], Tensor], g: Tensor, iterations: int
                  ) -> tuple[Tensor, Tensor, list[int]]:
    """Lanczos on each row of ``g`` [B, dim] at once, re-orthogonalised fully (twice): ``Q`` [B, m, dim]
    orthonormal Krylov bases with ``Q[:, 0] = g/‖g‖``, ``T`` [B, m, m] the projected operator, and each row's
    Krylov dimension (smaller than m where the space became invariant; later rows of ``Q`` are zero)."""
    b, dim = g.shape
    m = min(iterations, dim)
    Q = torch.zeros(b, m, dim, dtype=g.dtype, device=g.device)
    T = torch.zeros(b, m + 1, m, dtype=g.dtype, device=g.device)
    norm = g.norm(dim=1, keepdim=True)
    Q[:, 0] = torch.where(norm > 0, g / norm.clamp_min(torch.finfo(g.dtype).tiny), torch.zeros_like(g))
    sizes = [m if float(n) > 0 else 0 for n in norm[:, 0]]
    tol = 1e-10 if g.dtype == torch.float64 else 1e-5
    scale = torch.zeros(b, dtype=g.dtype, device=g.device)
    for j in range(m):
        w = matmat(Q[:, j])
        scale = torch.maximum(scale, w.norm(dim=1))
        for _ in range(2):
            coef = torch.einsum("bkd,bd->bk", Q[:, : j + 1], w)
            w = w - torch.einsum("bk,bkd->bd", coef, Q[:, : j + 1])
            T[:, : j + 1, j] += coef
        beta = w.norm(dim=1)
        alive = beta > tol * scale.clamp_min(1e-30)
        for i in range(b):
            if not bool(alive[i]) and sizes[i] > j + 1:
                sizes[i] = j + 1
        T[:, j + 1, j] = torch.where(alive, beta, torch.zeros_like(beta))
        if j + 1 < m:
            Q[:, j + 1] = torch.where(alive[:, None], w / beta.clamp_min(1e-300)[:, None], torch.zeros_like(w))
    T = T[:, :m, :m]
    return Q, (T + T.transpose(1, 2)) / 2, sizes


def lanczos_apply(Q: Tensor, T: Tensor, sizes: Sequence[int], norms: Tensor,
                  fns: Sequence[Callable[[Tensor], Tensor]]) -> Tensor:
    """``[len(fns), B, dim]``: ``‖g‖ Q f(T) e₁`` for each function ``f`` of the eigenvalues, row by row on its own
    Krylov dimension."""
    out = torch.zeros(len(fns), Q.shape[0], Q.shape[2], dtype=Q.dtype, device=Q.device)
    for b, m in enumerate(sizes):
        if m == 0:
            continue
        vals, vecs = torch.linalg.eigh(T[b, :m, :m].double())
        for k, fn in enumerate(fns):
            coeff = vecs @ (fn(vals) * vecs[0])  # V f(Λ) Vᵀ e₁
            out[k, b] = float(norms[b]) * (coeff.to(Q.dtype) @ Q[b, :m])
    return out


__all__: Sequence[str] = ["block_lanczos", "lanczos_apply"]
