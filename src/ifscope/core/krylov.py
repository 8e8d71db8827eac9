"""Arnoldi, the Krylov loop of the fitted estimators: plain and block Arnoldi, eigen-distillation of the Ritz pairs,
matrix functions of the operator on one Arnoldi space, and the spectrum of a fitted curvature (``λ_max``, ``λ_min``,
every Ritz value). Lanczos on each vector's own Krylov space is :mod:`.lanczos`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
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


CHECK_EVERY = 10  # Arnoldi steps between two calls of a stopping rule


def arnoldi(matvec: Callable[[Tensor], Tensor], dim: int, iterations: int, seed: int = 0,
            dtype: torch.dtype = torch.float32, start: Tensor | None = None, tol: float | None = None,
            progress: Callable[[int], None] | None = None, device: torch.device | str = "cpu",
            stop: Callable[[ArnoldiResult], bool] | None = None) -> ArnoldiResult:
    """Run ``iterations`` Arnoldi steps on ``matvec`` from a seeded random start, re-orthogonalising fully (twice).
    The basis lives on ``device``; the start is drawn on CPU, so it is the same vector on every device. ``stop``,
    asked every ``CHECK_EVERY`` steps with the run so far, ends it early when it returns True (e.g. converged)."""
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
        if stop is not None and (j + 1) % CHECK_EVERY == 0 and j + 1 < iterations:
            so_far = ArnoldiResult(Q[: j + 2], H[: j + 2, : j + 1], breakdown=False)
            if stop(so_far):
                return so_far
    return ArnoldiResult(Q, H, breakdown=False)


def block_arnoldi(matmat: Callable[[Tensor], Tensor], dim: int, iterations: int, block: int, seed: int = 0,
                  dtype: torch.dtype = torch.float32, tol: float | None = None,
                  progress: Callable[[int], None] | None = None, device: torch.device | str = "cpu",
                  start: Tensor | None = None, stop: Callable[[ArnoldiResult], bool] | None = None) -> ArnoldiResult:
    """Block Arnoldi: ``A Q[:m]ᵀ = Q[:m+b]ᵀ H`` from a seeded random block of ``block`` orthonormal rows, one ``matmat``
    per block (``iterations`` products in all, the last block possibly smaller), re-orthogonalised fully (twice, one
    matrix product per block instead of a pass over ``Q`` per vector). A direction that becomes dependent inside a
    block is dropped (the block shrinks); ``H[:m, :m]`` is the projected operator ``Q A Qᵀ``, ``H[m:, :m]`` the
    residual block. ``block=1`` spans :func:`arnoldi`'s Krylov space. ``start`` [block, dim]: the start block instead
    of a random one (e.g. the gradients of a block of queries). ``stop``: as in :func:`arnoldi`, asked after the block
    that crosses each multiple of ``CHECK_EVERY`` products."""
    if iterations < 1 or block < 1:
        raise ConfigError(f"iterations and block must be at least 1, got {iterations} and {block}")
    iterations = min(iterations, dim)
    b = min(block, iterations)
    gen = torch.Generator().manual_seed(seed)
    Q = torch.zeros(iterations + b, dim, dtype=dtype, device=device)
    H = torch.zeros(iterations + b, iterations, dtype=dtype)  # small: on CPU
    tol = tol if tol is not None else (1e-10 if dtype == torch.float64 else 1e-5)
    start_block = (torch.randn(b, dim, generator=gen, dtype=torch.float64) if start is None else start[:b]).to(
        device, dtype)
    k = _extend(Q, 0, start_block, None, float(start_block.norm(dim=1).max()), tol)
    done, scale = 0, 0.0  # products made (= rows of Q multiplied); largest ‖A q‖ seen
    while done < iterations and done < k:
        rows = slice(done, min(k, iterations))
        W = matmat(Q[rows])
        if not torch.isfinite(W).all():
            raise NumericalError(f"block Arnoldi, products {done}-{rows.stop}: the operator returned NaN or inf")
        scale = max(scale, float(W.norm(dim=1).max()))
        for _ in range(2):  # block classical Gram-Schmidt twice
            coef = Q[:k] @ W.T
            W = W - coef.T @ Q[:k]
            H[:k, rows] += coef.cpu()
        k = _extend(Q, k, W, H[:, rows], scale, tol)
        crossed, done = done // CHECK_EVERY < rows.stop // CHECK_EVERY, rows.stop
        if progress is not None:
            progress(done)
        if stop is not None and crossed and done < min(iterations, k) and stop(ArnoldiResult(Q[:k], H[:k, :done], False)):
            break
    return ArnoldiResult(Q[:k], H[:k, :done], breakdown=k <= done)


def _extend(Q: Tensor, k: int, W: Tensor, R: Tensor | None, scale: float, tol: float) -> int:
    """Orthonormalise the rows of ``W`` (already orthogonal to ``Q[:k]``) among themselves into ``Q[k:]`` (Gram-Schmidt
    twice), the coefficients into ``R`` (rows from ``k``); a row left below ``tol·scale`` is dropped. Returns the new
    number of rows of ``Q``."""
    k0, stop = k, min(Q.shape[1], len(Q))
    for i in range(len(W)):
        w = W[i]
        for _ in range(2):
            c = Q[k0:k] @ w
            w = w - c @ Q[k0:k]
            if R is not None:
                R[k0:k, i] += c.cpu()
        norm = float(w.norm())
        if norm > tol * max(scale, 1e-30) and k < stop:  # past ``stop`` the rows only get their coefficients
            if R is not None:
                R[k, i] = norm
            Q[k] = w / norm
            k += 1
    return k


def _kept(result: ArnoldiResult, k: int, select: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Eigen-decomposition of the symmetrised ``H[:m, :m]``: the kept values and vectors (small), their residuals
    ``‖A u − λ u‖`` read off the tail of ``H``, and every Ritz value, descending."""
    if select not in SELECT_RULES:
        raise ConfigError(f"unknown eigenvalue selection {select!r}; use one of {SELECT_RULES}")
    m = result.steps
    h = result.H[:m, :m].double()
    vals, vecs = torch.linalg.eigh((h + h.T) / 2)  # ascending
    if select == "magnitude":
        order = torch.argsort(vals.abs(), descending=True)
    else:
        order = torch.argsort(vals, descending=True)
        if select == "positive":
            order = order[vals[order] > 0]
    order = order[:k]
    tail = result.H[m:, :m].double()  # one row (β at the last column) for Arnoldi, a block for block Arnoldi
    residuals = (tail @ vecs[:, order]).norm(dim=0) if len(tail) else torch.zeros(len(order), dtype=torch.float64)
    return vals[order], vecs[:, order], residuals, vals.flip(0)


def relative_residuals(result: ArnoldiResult, k: int, select: str = "positive") -> Tensor:
    """``‖A u_j − λ_j u_j‖ / |λ_j|`` of the ``k`` Ritz pairs :func:`distill` would keep (fewer when fewer pass the
    rule), without lifting the vectors: cheap enough to ask while the run goes on."""
    vals, _, residuals, _ = _kept(result, k, select)
    return residuals / vals.abs().clamp_min(torch.finfo(torch.float64).tiny)


def distill(result: ArnoldiResult, k: int, select: str = "positive") -> Eigenpairs:
    """Eigenpairs of the symmetrised ``H[:m, :m]`` lifted by ``Q``; keep ``k`` by rule (positive/value/magnitude)."""
    vals, vecs, residuals, ritz = _kept(result, k, select)
    if len(vals) == 0:
        raise NumericalError("the Hessian sample has no positive eigenvalue in the Krylov space: the checkpoint is "
                             "not near a minimum; use select='magnitude' or train further")
    dtype, device = result.Q.dtype, result.Q.device
    vectors = (vecs.T.to(device, dtype) @ result.Q[: result.steps])
    return Eigenpairs(values=vals.to(device, dtype), vectors=vectors, residuals=residuals.to(device, dtype),
                      ritz=ritz.to(device, dtype))


def block_krylov_apply(result: ArnoldiResult, g: Tensor, fns: Sequence[Callable[[Tensor], Tensor]]) -> Tensor:
    """``[len(fns), B, dim]``: ``Qᵀ f(H) Q g`` for each function ``f`` of the eigenvalues, every row of ``g`` on the
    one Krylov space of ``result`` (Rayleigh-Ritz for matrix functions: exact once the space is invariant)."""
    m = result.steps
    h = result.H[:m, :m].double()
    vals, vecs = torch.linalg.eigh((h + h.T) / 2)
    Q = result.Q[:m]
    coef = vecs.T @ (Q @ g.T).double()  # [m, B]: the rows of g in the Ritz basis
    vecs = vecs.to(Q.dtype)
    return torch.stack([((vecs @ (fn(vals)[:, None] * coef).to(Q.dtype)).T @ Q) for fn in fns])


@dataclass
class Spectrum:
    """Ritz values of the curvature, descending (``ritz[0] ≈ λ_max``, ``ritz[-1] ≈ λ_min``): the fitted artifact every
    default step size (``1/λ_max``), the convexity check and the report read."""

    ritz: Tensor
    iterations: int

    @property
    def lambda_max(self) -> float:
        return float(self.ritz[0])

    @property
    def lambda_min(self) -> float:
        return float(self.ritz[-1])

    def state_dict(self) -> dict[str, Tensor]:
        return {"ritz_values": self.ritz, "iterations": torch.tensor(self.iterations)}

    @classmethod
    def from_state(cls, state: dict[str, Tensor]) -> Spectrum:
        return cls(state["ritz_values"], int(state.get("iterations", torch.tensor(len(state["ritz_values"])))))


def ritz_values(result: ArnoldiResult) -> Tensor:
    """Every eigenvalue of the symmetrised Hessenberg matrix, descending."""
    m = result.steps
    h = result.H[:m, :m].double()
    return torch.linalg.eigvalsh((h + h.T) / 2).flip(0).to(result.Q.dtype)  # on CPU: a small artifact


def spectrum(matvec: Callable[[Tensor], Tensor], dim: int, iterations: int, seed: int = 0,
             dtype: torch.dtype = torch.float32, progress: Callable[[int], None] | None = None,
             device: torch.device | str = "cpu") -> Spectrum:
    """The Ritz values of ``iterations`` Arnoldi steps: both ends of the spectrum converge first."""
    return Spectrum(ritz_values(arnoldi(matvec, dim, iterations, seed=seed, dtype=dtype, progress=progress,
                                        device=device)), min(iterations, dim))


def default_step(top: float) -> float:
    """``1/λ_max`` of the operator the steps act on (damped where the method damps, undamped for real training):
    the largest gradient-descent step that is stable and monotone on the top of its spectrum. Every default step
    size (lr=None) is this one."""
    if not top > 0:
        raise NumericalError(f"the top curvature eigenvalue is {top:.3g} (not positive): no stable gradient-descent "
                             "step exists here; give the step size (lr) explicitly")
    return 1.0 / top


def largest_step(spec: Spectrum) -> float:
    """:func:`default_step` of a fitted spectrum (undamped: the continued training's own step)."""
    return default_step(spec.lambda_max)


__all__: Sequence[str] = ["ArnoldiResult", "Eigenpairs", "Spectrum", "arnoldi", "block_arnoldi", "block_krylov_apply",
                          "distill", "default_step", "largest_step", "ritz_values", "spectrum"]
