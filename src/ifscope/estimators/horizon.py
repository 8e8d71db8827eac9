"""Horizon-aware influence: ``score_T(q, z) = ∇ℓ(q)ᵀ f_T(H) ∇ℓ(z)`` with ``f_T(λ) = (1 − (1 − ηλ)^T)/λ``.

``f_T(H) g = η Σ_{s<T} (I − ηH)^s g`` is the first-order change of the parameters after T steps of gradient descent
with step η when the training loss gains ``−g·θ`` (docs/science.md, 'The horizon response'); T → ∞ (with 0 < ηλ < 2) gives ``H⁻¹g``, the
classic influence function, and dropping the propagation ``(I − ηH)^s`` gives TracIn's ``ηT g``. It is exact to
first order for full-batch gradient descent with a constant step; see docs/fade.md for SGD, momentum and Adam.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..core.data import Batch, row_blocks
from ..core.errors import ConfigError
from ..core.fingerprint import tree_fingerprint
from ..core.krylov import ArnoldiResult, block_arnoldi, block_krylov_apply, default_step
from ..core.lanczos import block_lanczos, lanczos_apply
from ..options import choice, positive_int, positive_number
from .base import CurvatureEstimator, GradientTrainEmbedding

SOLVERS = ("auto", "recursion", "lanczos", "block")
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


@dataclass
class HorizonOptions:
    """Horizon ``T`` (steps) and step ``lr`` (None: 1/λ_max); ``krylov`` Lanczos steps (curvature products per query);
    ``solver`` (``block``: one block Krylov space from all the queries of a block, ``krylov`` × queries products
    shared by all of them); ``batch_order`` ``average`` (scores) or ``schedule`` (the fade's SGD batch order);
    ``krylov_tol`` (block solver): stop growing the space before ``krylov`` products per query once the query side
    ``f_T(H) g`` read off it moves by at most that (relative) between two checks, so its size follows the spectrum."""

    horizon: float | None = None
    lr: float | None = None
    krylov: int = 100
    solver: str = "auto"
    batch_order: str = "average"
    krylov_tol: float | None = None

    def validate(self) -> None:
        if self.horizon is not None or self.lr is not None:
            check_horizon(self.horizon, self.lr, "horizon")
        choice("solver", self.solver, SOLVERS)
        choice("batch_order", self.batch_order, ("average", "schedule"))
        positive_int("krylov", self.krylov)
        positive_number("krylov_tol", self.krylov_tol, allow_none=True)


class Horizon(GradientTrainEmbedding, CurvatureEstimator):
    """Train embedding ``g``; query embedding ``f_T(H) ∇ℓ(q)``, by the T-step recursion ``x ← x + η(g − Hx)`` when
    ``T ≤ krylov`` (exact, T Hessian-vector products per block of queries) or else ``krylov`` Lanczos steps on the
    query gradient (the matrix function read off the Krylov space). ``lr=None`` takes η = 1/λ_max."""

    name = "horizon"
    Options = HorizonOptions
    horizon_aware = True

    def fit(self) -> None:
        self.horizon, lr = check_horizon(self.options["horizon"], self.options["lr"], self.name)
        self.op = self.ctx.curvature_operator()
        self.lr = lr if lr is not None else default_step(self.ctx.lambda_max() + self.ctx.damping)

    def solver_for(self, horizons: Sequence[float]) -> str:
        solver = str(self.options["solver"])
        if solver == "auto":
            return "recursion" if max(horizons) <= int(self.options["krylov"]) else "lanczos"
        if solver == "recursion" and any(math.isinf(h) for h in horizons):
            raise ConfigError("the recursion cannot run an infinite horizon; use solver='lanczos'")
        return solver

    def apply_horizons(self, g: Tensor, horizons: Sequence[float]) -> Tensor:
        """``[len(horizons), B, dim]``: ``f_T(H) g`` for each ``T``, sharing one recursion or Lanczos basis; the cost is
        added to ``query_cost`` (queries, curvature products, seconds). The latest result is kept: the fade scores
        the same queries over the same horizons twice (its curve, then the horizon of validity)."""
        key = tree_fingerprint((g, [float(h) for h in horizons], self.lr, self.options["krylov"],
                                self.options["solver"], id(self.op), self.ctx.damping))
        memo = getattr(self, "_horizons_memo", None)
        if memo is not None and memo[0] == key:
            return memo[1]
        calls, t0 = self.op.calls, time.perf_counter()
        out = self._apply_horizons(g, horizons)
        self._horizons_memo = (key, out)
        cost = self.query_cost
        cost["queries"] += len(g)
        cost["products"] += self.op.calls - calls
        cost["seconds"] += time.perf_counter() - t0
        return out

    @property
    def query_cost(self) -> dict[str, float]:
        """Running totals of the query side: queries, curvature-vector products and seconds (per query: divide)."""
        if not hasattr(self, "_query_cost"):
            self._query_cost = {"queries": 0, "products": 0, "seconds": 0.0}
        return self._query_cost

    def _apply_horizons(self, g: Tensor, horizons: Sequence[float]) -> Tensor:
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
        if self.solver_for(horizons) == "block":  # one Krylov space from the whole block of query gradients
            for block in g.split(self._block(g)):
                res = block_arnoldi(self.op.matmat, g.shape[1], int(self.options["krylov"]) * len(block), len(block),
                                    dtype=g.dtype, device=g.device, start=block, stop=self._settled(block, fns))
                parts.append(block_krylov_apply(res, block, fns))
            return torch.cat(parts, dim=1)
        for block in g.split(self._block(g)):
            Q, T, sizes = block_lanczos(self.op.matmat, block, int(self.options["krylov"]))
            parts.append(lanczos_apply(Q, T, sizes, block.norm(dim=1), fns))
        return torch.cat(parts, dim=1)

    def _settled(self, block: Tensor, fns: Sequence) -> Callable[[ArnoldiResult], bool] | None:
        """With ``krylov_tol``, the block Krylov space's stop rule: ``f_T(H) g`` read off the space so far moved by at
        most ``krylov_tol`` relative to the previous check (None without it: all ``krylov`` products)."""
        tol, last = self.options["krylov_tol"], []
        if tol is None:
            return None

        def stop(so_far: ArnoldiResult) -> bool:
            now = block_krylov_apply(so_far, block, fns)
            moved = float((now - last[0]).norm() / now.norm().clamp_min(1e-300)) if last else math.inf
            last[:] = [now]
            return moved <= tol
        return stop

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
        gq = self.ctx.grads(queries)
        weights = torch.zeros(len(ids), t_max, dtype=torch.float64)  # (N/|b_s|) at the steps whose batch holds z
        for s in range(t_max):
            batch = schedule.batches[s]
            weights[:, s] = torch.isin(ids, batch).double() * (n_train / len(batch))
        out = torch.zeros(len(horizons), len(gq), len(ids), dtype=torch.float64)
        for start in range(0, len(gq), self._block(gq)):
            block = gq[start:start + self._block(gq)]
            Q, T, sizes = block_lanczos(self.op.matmat, block, int(self.options["krylov"]))
            qz = torch.cat([torch.einsum("bmd,nd->bmn", Q, gz) for gz in self._train_grads(train)], dim=-1)
            self._schedule_block(out[:, start:start + len(block)], block, qz, T, sizes, weights, horizons, lr)
        return out.to(gq.dtype)

    def _train_grads(self, train: Batch) -> Iterator[Tensor]:
        """Per-example gradients of ``train`` in blocks of ``batch_size`` rows: memory flat in the number of ids."""
        for block in row_blocks(train, self.ctx.batch_size):
            yield self.ctx.grads(block)

    @staticmethod
    def _schedule_block(out: Tensor, gq: Tensor, qz: Tensor, T: Tensor, sizes: Sequence[int],
                        weights: Tensor, horizons: Sequence[int], lr: float) -> None:
        t_max = max(horizons)
        for b, m in enumerate(sizes):
            if m == 0:
                continue
            vals, vecs = torch.linalg.eigh(T[b, :m, :m].double())
            a = float(gq[b].norm()) * vecs[0]                             # [m]: ‖g_q‖ Vᵀ e₁
            coef = vecs.T @ qz[b, :m].double()                             # [m, n]: Vᵀ Qᵀ g_z
            powers = (1 - lr * vals)[None, :] ** torch.arange(t_max, dtype=torch.float64)[:, None]  # [t_max, m]
            for k, t in enumerate(horizons):
                w = weights[:, :t].flip(1) @ powers[:t]                    # [n, m]: Σ_s w_s (1 − ηθ)^{T−1−s}
                out[k, b] = lr * ((a[:, None] * coef) * w.T).sum(0)

    def scores_over_horizons(self, queries: Batch, train: Batch, horizons: Sequence[float]) -> Tensor:
        """``[len(horizons), n_queries, n_train]`` horizon-aware scores for each ``T``."""
        q = self.apply_horizons(self.ctx.grads(queries), horizons)
        return torch.cat([q @ g.T for g in self._train_grads(train)], dim=-1)
