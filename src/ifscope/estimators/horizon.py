"""Horizon-aware influence: ``score_T(q, z) = ∇ℓ(q)ᵀ f_T(H) ∇ℓ(z)`` with ``f_T(λ) = (1 − (1 − ηλ)^T)/λ``.

``f_T(H) g = η Σ_{s<T} (I − ηH)^s g`` is the first-order change of the parameters after T steps of gradient descent
with step η when the training loss gains ``−g·θ`` (SCIENCE.md §2); T → ∞ (with 0 < ηλ < 2) gives ``H⁻¹g``, the
classic influence function, and dropping the propagation ``(I − ηH)^s`` gives TracIn's ``ηT g``. It is exact to
first order for full-batch gradient descent with a constant step; see docs/fade.md for SGD, momentum and Adam.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from ..data import Batch
from ..errors import ConfigError, NumericalError
from .base import GradientTrainEmbedding
from .lissa import power_iteration

SOLVERS = ("auto", "recursion", "lanczos")
KRYLOV_BUDGET = 512 * 2**20  # bytes of Krylov bases held at once; queries are processed in blocks that fit


def horizon_filter(lam: Tensor, horizon: float, lr: float) -> Tensor:
    """``f_T(λ) = (1 − (1 − ηλ)^T)/λ = η Σ_{s<T} (1 − ηλ)^s`` elementwise, stable near λ = 0; ``T = inf`` gives ``1/λ``."""
    lam64 = lam.double()
    if math.isinf(horizon):
        return (1.0 / lam64).to(lam.dtype)
    x = lr * lam64
    safe = x < 1  # log1p(-x) is defined; accurate for tiny |x| where the naive formula cancels
    x_safe = torch.where(safe, x, torch.zeros_like(x))
    stable = -torch.expm1(horizon * torch.log1p(-x_safe))
    naive = 1 - (1 - x) ** horizon
    num = torch.where(safe, stable, naive)
    out = torch.where(lam64 == 0, torch.full_like(lam64, lr * horizon), num / torch.where(lam64 == 0, 1.0, lam64))
    return out.to(lam.dtype)


def check_horizon(horizon, lr, method: str) -> tuple[float, float | None]:
    """Validate ``horizon`` (positive integer or ``inf``) and ``lr`` (positive or ``None`` = 1/λ_max)."""
    if horizon is None:
        raise ConfigError(f"method={method!r} with horizon-aware scores needs horizon=T (training steps, e.g. 100) "
                          "and lr=η (the step size; default 1/λ_max)")
    try:
        h = float(horizon)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"horizon must be a positive integer number of steps or inf, got {horizon!r}") from exc
    if not (math.isinf(h) or (h >= 1 and h == int(h))):
        raise ConfigError(f"horizon must be a positive integer number of steps or inf, got {horizon!r}")
    if lr is not None and (not isinstance(lr, (int, float)) or not lr > 0 or math.isinf(lr)):
        raise ConfigError(f"lr must be a positive step size (or None for 1/λ_max), got {lr!r}")
    return h, (None if lr is None else float(lr))


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


class Horizon(GradientTrainEmbedding):
    """Train embedding ``g``; query embedding ``f_T(H) ∇ℓ(q)``, by the T-step recursion ``x ← x + η(g − Hx)`` when
    ``T ≤ krylov`` (exact, T Hessian-vector products per block of queries) or else ``krylov`` Lanczos steps on the
    query gradient (the matrix function read off the Krylov space). ``lr=None`` takes η = 1/λ_max."""

    name = "horizon"
    OPTIONS = {"horizon": None, "lr": None, "krylov": 100, "solver": "auto", "batch_order": "average"}

    horizon_aware = True

    def fit(self) -> None:
        self.horizon, lr = check_horizon(self.options["horizon"], self.options["lr"], self.name)
        if self.options["solver"] not in SOLVERS:
            raise ConfigError(f"solver must be one of {SOLVERS}, got {self.options['solver']!r}")
        if self.options["batch_order"] not in ("average", "schedule"):
            raise ConfigError(f"batch_order must be 'average' or 'schedule', got {self.options['batch_order']!r}")
        if int(self.options["krylov"]) < 1:
            raise ConfigError(f"krylov must be a positive number of Lanczos steps, got {self.options['krylov']!r}")
        self.op = self.ctx.curvature_operator()
        if lr is None:
            top = power_iteration(self.op.matvec, self.op.dim, self.ctx.dtype, iterations=50, seed=self.ctx.seed,
                                  device=self.ctx.device)
            if top <= 0:
                raise NumericalError("the curvature is zero at this checkpoint; give lr=... explicitly")
            lr = 1.0 / top
        self.lr = lr

    def solver_for(self, horizons: Sequence[float]) -> str:
        solver = str(self.options["solver"])
        if solver == "auto":
            return "recursion" if max(horizons) <= int(self.options["krylov"]) else "lanczos"
        if solver == "recursion" and any(math.isinf(h) for h in horizons):
            raise ConfigError("the recursion cannot run an infinite horizon; use solver='lanczos'")
        return solver

    def apply_horizons(self, g: Tensor, horizons: Sequence[float]) -> Tensor:
        """``[len(horizons), B, dim]``: ``f_T(H) g`` for each ``T``, sharing one recursion or Lanczos basis."""
        horizons = [float(h) for h in horizons]
        if self.solver_for(horizons) == "recursion":
            wanted = {int(h): i for i, h in enumerate(horizons)}
            out = torch.empty(len(horizons), *g.shape, dtype=g.dtype, device=g.device)
            x = torch.zeros_like(g)
            for t in range(1, int(max(horizons)) + 1):
                x = x + self.lr * (g - self.op.matmat(x))
                for h, i in wanted.items():
                    if h == t:
                        out[i] = x
            return out
        fns = [lambda lam, h=h: horizon_filter(lam, h, self.lr) for h in horizons]
        parts = []
        for block in g.split(self._block(g)):
            Q, T, sizes = block_lanczos(self.op.matmat, block, int(self.options["krylov"]))
            parts.append(lanczos_apply(Q, T, sizes, block.norm(dim=1), fns))
        return torch.cat(parts, dim=1)

    def _block(self, g: Tensor) -> int:
        """Queries per Lanczos block, so that the bases ([block, krylov, dim]) fit ``KRYLOV_BUDGET``."""
        per_query = min(int(self.options["krylov"]), g.shape[1]) * g.shape[1] * g.element_size()
        return max(1, KRYLOV_BUDGET // max(1, per_query))

    def apply(self, g: Tensor) -> Tensor:
        if self.options["batch_order"] == "schedule":
            raise ConfigError("batch_order='schedule' scores depend on the batch order of the continued training, "
                              "which only fade_curve knows; use batch_order='average' for scores, top and "
                              "self-influence")
        return self.apply_horizons(g, [self.horizon])[0]

    def scores_for_schedule(self, queries: Batch, train: Batch, ids: Tensor, schedule, n_train: int,
                            horizons: Sequence[int]) -> Tensor:
        """``[len(horizons), n_queries, n_ids]``: ``η Σ_{s<T, z∈b_s} (N/|b_s|) g_qᵀ(I − ηH)^{T−1−s} g_z``, the
        linearised response to re-weighting z under this SGD batch order (equal to the average formula for full
        batches); ``(I − ηH)^k g_q`` is read off one Lanczos basis per query."""
        if schedule.optimizer != "sgd":
            raise ConfigError(f"batch_order='schedule' is derived for plain SGD, not {schedule.optimizer!r}")
        horizons = [int(h) for h in horizons]
        t_max = max(horizons)
        lr = float(schedule.lr)
        gq, gz = self.ctx.grads(queries), self.ctx.grads(train)
        weights = torch.zeros(len(ids), t_max, dtype=torch.float64)  # (N/|b_s|) at the steps whose batch holds z
        for s in range(t_max):
            batch = schedule.batches[s]
            weights[:, s] = torch.isin(ids, batch).double() * (n_train / len(batch))
        out = torch.zeros(len(horizons), len(gq), len(ids), dtype=torch.float64)
        for start in range(0, len(gq), self._block(gq)):
            block = gq[start:start + self._block(gq)]
            Q, T, sizes = block_lanczos(self.op.matmat, block, int(self.options["krylov"]))
            self._schedule_block(out[:, start:start + len(block)], block, gz, Q, T, sizes, weights, horizons, lr)
        return out.to(gq.dtype)

    @staticmethod
    def _schedule_block(out: Tensor, gq: Tensor, gz: Tensor, Q: Tensor, T: Tensor, sizes: Sequence[int],
                        weights: Tensor, horizons: Sequence[int], lr: float) -> None:
        t_max = max(horizons)
        for b, m in enumerate(sizes):
            if m == 0:
                continue
            vals, vecs = torch.linalg.eigh(T[b, :m, :m].double())
            a = float(gq[b].norm()) * vecs[0]                             # [m]: ‖g_q‖ Vᵀ e₁
            coef = vecs.T @ (Q[b, :m].double() @ gz.double().T)           # [m, n]: Vᵀ Qᵀ g_z
            powers = (1 - lr * vals)[None, :] ** torch.arange(t_max, dtype=torch.float64)[:, None]  # [t_max, m]
            for k, t in enumerate(horizons):
                w = weights[:, :t].flip(1) @ powers[:t]                    # [n, m]: Σ_s w_s (1 − ηθ)^{T−1−s}
                out[k, b] = lr * ((a[:, None] * coef) * w.T).sum(0)

    def scores_over_horizons(self, queries: Batch, train: Batch, horizons: Sequence[float]) -> Tensor:
        """``[len(horizons), n_queries, n_train]`` horizon-aware scores for each ``T``."""
        return self.apply_horizons(self.ctx.grads(queries), horizons) @ self.ctx.grads(train).T
