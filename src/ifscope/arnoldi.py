"""The Arnoldi iteration and eigen-distillation: the top of a symmetric operator's spectrum from n products."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .errors import ConfigError, NumericalError

SELECT_RULES = ("positive", "value", "magnitude")


@dataclass
class ArnoldiResult:
    """``A Q[:m] ≈ Q[:m+1] H`` with orthonormal rows ``Q`` ([m+1, dim]) and upper Hessenberg ``H`` ([m+1, m])."""

    Q: Tensor
    H: Tensor
    breakdown: bool  # the Krylov space became invariant before n iterations (exact for that space)

    @property
    def steps(self) -> int:
        return self.H.shape[1]


@dataclass
class Eigenpairs:
    """Ritz pairs: ``values`` [k], ``vectors`` [k, dim] (orthonormal rows), ``residuals`` [k] = ``‖A u − λ u‖``."""

    values: Tensor
    vectors: Tensor
    residuals: Tensor
    ritz: Tensor | None = None  # every Ritz value of the run, descending (for spectra), when known


def arnoldi(matvec: Callable[[Tensor], Tensor], dim: int, iterations: int, seed: int = 0,
            dtype: torch.dtype = torch.float32, start: Tensor | None = None, tol: float | None = None,
            progress: Callable[[int], None] | None = None, device: torch.device | str = "cpu") -> ArnoldiResult:
    """Run ``iterations`` Arnoldi steps on ``matvec`` from a seeded random start, re-orthogonalising fully (twice).
    The basis lives on ``device``; the start is drawn on CPU, so it is the same vector on every device."""
    if iterations < 1:
        raise ConfigError(f"iterations must be at least 1, got {iterations}")
    iterations = min(iterations, dim)
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(dim, generator=gen, dtype=torch.float64) if start is None else start
    q = q.to(device, dtype)
    Q = torch.zeros(iterations + 1, dim, dtype=dtype, device=device)
    H = torch.zeros(iterations + 1, iterations, dtype=dtype)  # small: on CPU, filled from scalars
    Q[0] = q / q.norm()
    tol = tol if tol is not None else (1e-10 if dtype == torch.float64 else 1e-5)
    scale = 0.0
    for j in range(iterations):
        w = matvec(Q[j])
        if not torch.isfinite(w).all():
            raise NumericalError(f"Arnoldi step {j}: the operator returned NaN or inf")
        scale = max(scale, float(w.norm()))
        for _ in range(2):  # classical Gram-Schmidt twice: orthogonal to working precision
            coef = Q[: j + 1] @ w
            w = w - coef @ Q[: j + 1]
            H[: j + 1, j] += coef.cpu()
        beta = w.norm()
        H[j + 1, j] = float(beta)
        if progress is not None:
            progress(j + 1)
        if float(beta) <= tol * max(scale, 1e-30):
            return ArnoldiResult(Q[: j + 2], H[: j + 2, : j + 1], breakdown=True)
        Q[j + 1] = w / beta
    return ArnoldiResult(Q, H, breakdown=False)


def distill(result: ArnoldiResult, k: int, select: str = "positive") -> Eigenpairs:
    """Eigenpairs of the symmetrised ``H[:m, :m]`` lifted by ``Q``; keep ``k`` by rule (positive/value/magnitude)."""
    if select not in SELECT_RULES:
        raise ConfigError(f"unknown eigenvalue selection {select!r}; use one of {SELECT_RULES}")
    m = result.steps
    h = result.H[:m, :m].double()
    vals, vecs = torch.linalg.eigh((h + h.T) / 2)
    if select == "magnitude":
        order = torch.argsort(vals.abs(), descending=True)
    else:
        order = torch.argsort(vals, descending=True)
        if select == "positive":
            order = order[vals[order] > 0]
    order = order[:k]
    ritz = vals.flip(0)
    if len(order) == 0:
        raise NumericalError("the Hessian sample has no positive eigenvalue in the Krylov space: the checkpoint is "
                             "not near a minimum; use select='magnitude' or train further")
    vals, vecs = vals[order], vecs[:, order]
    beta = float(result.H[m, m - 1]) if result.H.shape[0] > m else 0.0
    residuals = (beta * vecs[m - 1, :]).abs()
    dtype = result.Q.dtype
    device = result.Q.device
    vectors = (vecs.T.to(device, dtype) @ result.Q[:m])
    return Eigenpairs(values=vals.to(device, dtype), vectors=vectors, residuals=residuals.to(device, dtype),
                      ritz=ritz.to(device, dtype))
