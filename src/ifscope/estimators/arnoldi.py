"""ABIF: ``score = Σⱼ Pⱼ(q) Pⱼ(z) / λⱼ`` with ``Pⱼ(z) = ∇ℓ(z)·uⱼ`` on the top Arnoldi eigenpairs ``(λⱼ, uⱼ)``.

With ``horizon=T`` (and ``lr=η``) it is the cheap horizon-aware variant: ``Σⱼ Pⱼ(q) Pⱼ(z) f_T(λⱼ)`` with
``f_T(λ) = (1 − (1 − ηλ)^T)/λ``, plus ``ηT (g_q·g_z − P(q)·P(z))`` on the complement of the basis
(``complement=True``), which is right only while ``ηλT ≪ 1`` for every eigenvalue left out.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..core.budget import Plan
from ..core.capabilities import capabilities
from ..core.checks import arnoldi_health, check_sizes
from ..core.data import Batch, batch_len, row_blocks
from ..core.decisions import decided, path_key
from ..core.errors import ConfigError, NumericalWarning
from ..core.krylov import (
    SELECT_RULES,
    Eigenpairs,
    Spectrum,
    default_step,
    distill,
)
from ..core.projection import PathChoice, low_precision_error, measure_paths, project
from ..options import choice, positive_int, positive_number
from .arnoldi_sizing import (
    BLOCK,
    RANK,
    RITZ_TOL,
    SAMPLE_START,
    budget_plan,
    measured_block,
    ritz_warnings,
    run_krylov,
    sample_drift,
    sample_warnings,
)
from .base import CurvatureEstimator
from .horizon import check_horizon, horizon_filter

PROJECTION_TOL = 0.01  # largest relative error of low-precision projections (in the scores' metric) that is kept


@dataclass
class ArnoldiOptions:
    """``iterations`` Arnoldi steps (curvature products), ``rank`` eigenpairs kept by ``select``
    (positive/value/magnitude); with ``horizon`` (and ``lr``, None = 1/λ_max) the horizon-aware variant, ``complement``
    adding ``ηT`` off the basis. ``rank=None``: ``RANK`` (100), at most the selected parameters and ``iterations``.
    ``block`` > 1: block Arnoldi with that many batched products per step (default 16; 1: plain Arnoldi; 0: measured,
    the block when it is faster per vector); ``sample_tol``: grow the Hessian sample from ``hessian_samples`` (default
    128) by doubling until the top Ritz values agree with their Rayleigh quotients on a disjoint sample of the same
    size to that relative tolerance (median of the top 16); ``ritz_tol`` (default 0.1; None: run every iteration):
    stop before ``iterations`` (checked every 10 products) once the ``rank`` kept Ritz pairs all have relative
    residuals ``‖Hu − λu‖/λ`` at most that, so that ``iterations`` is a cap."""

    rank: int | None = None
    iterations: int = 300
    select: str = "positive"
    horizon: float | None = None
    lr: float | None = None
    complement: bool = True
    block: int = BLOCK
    sample_tol: float | None = None
    ritz_tol: float | None = RITZ_TOL

    def validate(self) -> None:
        if self.rank is not None:  # None: the default rank
            positive_int("rank", self.rank)
        positive_int("iterations", self.iterations)
        if isinstance(self.block, bool) or not isinstance(self.block, int) or self.block < 0:
            raise ConfigError(f"block must be a non-negative integer (0: measured, 1: plain Arnoldi), got {self.block!r}")
        positive_number("sample_tol", self.sample_tol, allow_none=True)
        positive_number("ritz_tol", self.ritz_tol, allow_none=True)
        choice("select", self.select, SELECT_RULES)
        if self.horizon is not None or self.lr is not None:
            check_horizon(self.horizon, self.lr, "arnoldi")


class Arnoldi(CurvatureEstimator):
    """Train embedding ``P Λ⁻¹``, query embedding ``P`` (``k`` columns); no per-example gradient is stored.

    With ``horizon=T``: train ``P f_T(Λ)`` and query ``P``; with ``complement=True`` also ``√(ηT) g`` on both
    sides, less ``ηT`` on the basis (this stores per-example gradients). ``lr=None`` takes η = 1/λ_max.
    """

    name = "arnoldi"
    Options = ArnoldiOptions
    keeps_spectrum = True
    reads = frozenset({"time_budget_s", "projection_dtype"})
    refit_free = frozenset({"horizon", "lr", "damping"})  # filters of the fitted eigenpairs

    def fit(self) -> None:
        ctx, iterations = self.ctx, self.options["iterations"]
        dim, n = ctx.space.dim, len(ctx.train)  # type: ignore[arg-type]
        self.rank = rank = self.options["rank"] or min(RANK, dim, iterations)
        check_sizes(rank, iterations, dim)
        self.block = block = self.options["block"] or measured_block(ctx)  # products per Krylov step, as run
        samples, tol = ctx.hessian_samples, self.options["sample_tol"]
        self.plan: Plan | None = None
        self.hvp_calls = 0
        if ctx.time_budget_s is not None:
            self.plan, self.hvp_calls = budget_plan(ctx, block, iterations, rank, samples)
            iterations, samples = self.plan.iterations, self.plan.hessian_samples
        if tol is not None and samples is None:
            samples = min(n, SAMPLE_START)
        self.sample_checks: list[dict[str, float]] = []
        while True:
            # damping is applied to the kept eigenvalues, not inside the operator, so that the basis is undamped
            op = ctx.curvature_operator(damping=0.0, samples=samples)
            result = run_krylov(ctx, op, iterations, block, self.rank, str(self.options["select"]),
                                self.options["ritz_tol"])
            self.hvp_calls += op.calls
            pairs = distill(result, rank, str(self.options["select"]))
            if op.n >= n:
                break
            drift, calls = sample_drift(ctx, pairs, op.n)  # any sample is measured on a disjoint one
            self.hvp_calls += calls
            self.sample_checks.append({"hessian_samples": op.n, "drift": drift})
            if tol is None or drift <= tol:  # without sample_tol, a drift is said (sample_warnings), not grown
                break
            samples = min(n, 2 * op.n)
        self.hessian_samples_used, self.iterations_used = op.n, result.steps
        self.breakdown = result.breakdown
        self.set_eigenpairs(pairs)
        self.warnings = arnoldi_health(result.breakdown, result.steps, iterations, dim, rank, self.pairs.values,
                                       ctx.damping) + sample_warnings(self.sample_checks, tol) \
            + ritz_warnings(pairs, self.options["ritz_tol"], result.steps)
        self.ritz_values = self.pairs.ritz  # all of them, for the spectrum
        self.left_out = self._left_out()

    def chosen(self) -> dict | None:
        """What ``time_budget_s`` chose (the budget's plan, and the Hessian sample and iterations run), or None."""
        fitted = getattr(self, "plan", None)
        if fitted is None:
            return None
        return {**fitted.as_dict(), "text": str(fitted)}

    def rebound(self) -> None:
        self.set_eigenpairs(self.pairs)

    def set_eigenpairs(self, pairs: Eigenpairs) -> None:
        self.pairs, self._low = pairs, None
        self.projection_error: float | None = None  # measured error of projection_dtype's projections, once
        self.path_choice: PathChoice | None = None  # set on the first full batch projected after a fit or load
        self.horizon: float | None = None
        if self.options["horizon"] is None:
            self.inv = 1.0 / (pairs.values + self.ctx.damping)
            return
        self.horizon, lr = check_horizon(self.options["horizon"], self.options["lr"], self.name)
        self.lr = lr if lr is not None else default_step(float(pairs.values.max()) + self.ctx.damping)
        self.inv = self.filters(self.horizon)

    @property
    def horizon_aware(self) -> bool:  # type: ignore[override]
        return getattr(self, "horizon", None) is not None

    @property
    def spectrum(self) -> Spectrum:
        """Every Ritz value of the fit: the run's spectrum, at no extra curvature product."""
        return Spectrum(self.ritz_values, int(getattr(self, "iterations_used", self.options["iterations"])))

    def filters(self, horizon: float) -> Tensor:
        """``f_T(λⱼ)`` on the kept eigenvalues, less ``ηT`` when the complement term carries that part."""
        f = horizon_filter(self.pairs.values + self.ctx.damping, horizon, self.lr)
        return f - self.lr * horizon if self.options["complement"] else f

    def projections(self, batch: Batch) -> Tensor:
        """``[B, k]``: each example's gradient projected on the kept eigenvectors, by the path the options name or,
        for ``auto``, the one measured faster on the first full batch and kept for this model on this machine
        (``ifscope.core.decisions``; smaller batches, e.g. a few queries, take the rank rule of ``choose_path`` meanwhile)."""
        ctx = self.ctx
        if ctx.projection_dtype is not None and self.projection_error is None:
            self._check_low_precision(batch)
        basis = self._basis()
        if self.path_choice is None or self.path_choice.asked != ctx.projection:
            if ctx.projection != "auto":
                self.path_choice = PathChoice(ctx.projection, "chosen in the options", asked=ctx.projection)
            elif batch_len(batch) >= min(ctx.batch_size, len(ctx.train)):  # type: ignore[arg-type]
                key = path_key(ctx.params, len(basis), ctx.batch_size, f"{ctx.dtype}/{basis.dtype}", ctx.device) \
                    + capabilities(ctx.task, ctx.params, ctx.rest, batch).tag
                self.path_choice, out = decided(key, lambda: measure_paths(ctx.task, ctx.params, ctx.rest, batch,
                                                                           basis, ctx.batch_size))
                if out is not None:
                    return out
            else:
                return project(ctx.task, ctx.params, ctx.rest, batch, basis, path="auto")
        return project(ctx.task, ctx.params, ctx.rest, batch, basis, path=self.path_choice.path,
                       fallback=ctx.projection == "auto")

    def _check_low_precision(self, batch: Batch) -> None:
        """Measure ``projection_dtype``'s projections against full precision on (part of) ``batch``, each direction
        weighted by ``√|1/λ|`` as in the scores; above ``PROJECTION_TOL`` warn and project in full precision."""
        ctx = self.ctx
        self.projection_error = low_precision_error(ctx.task, ctx.params, ctx.rest, batch, self.pairs.vectors,
                                                    ctx.projection_dtype, self.inv.abs().sqrt())  # type: ignore[arg-type]
        if self.projection_error > PROJECTION_TOL:
            warnings.warn(f"projection_dtype={str(ctx.projection_dtype).replace('torch.', '')} was refused: its "
                          f"projections differ from full precision by {self.projection_error:.2g} (relative, in the "
                          f"scores' metric) on this model, above the tolerance {PROJECTION_TOL:g}; projecting in "
                          f"{str(ctx.dtype).replace('torch.', '')} instead (drop projection_dtype to silence this)",
                          NumericalWarning, stacklevel=4)

    def _basis(self) -> Tensor:
        """The eigenvectors, rounded once to ``projection_dtype`` when one is set and its measured error is within
        ``PROJECTION_TOL`` (the products accumulate in float32)."""
        refused = self.projection_error is not None and self.projection_error > PROJECTION_TOL
        want = (None if refused else self.ctx.projection_dtype) or self.pairs.vectors.dtype
        if getattr(self, "_low", None) is None or self._low.dtype != want:
            self._low = self.pairs.vectors.to(want)
        return self._low

    def _with_complement(self, p: Tensor, batch: Batch, horizon: float | None = None) -> Tensor:
        if self.horizon is None or not self.options["complement"]:
            return p
        t = self.horizon if horizon is None else horizon
        return torch.cat([p, (self.lr * t) ** 0.5 * self.ctx.grads(batch)], dim=1)

    def train_embed(self, batch: Batch) -> Tensor:
        return self._with_complement(self.projections(batch) * self.inv, batch)

    def query_embed(self, batch: Batch) -> Tensor:
        return self._with_complement(self.projections(batch), batch)

    def self_embed(self, batch: Batch) -> tuple[Tensor, Tensor]:
        p = self.projections(batch)
        return self._with_complement(p, batch), self._with_complement(p * self.inv, batch)

    def scores_over_horizons(self, queries: Batch, train: Batch, horizons: Sequence[float]) -> Tensor:
        """``[len(horizons), n_queries, n_train]`` scores of the horizon-aware variant at each ``T``."""
        if self.horizon is None:
            raise ConfigError("scores over horizons need the horizon-aware variant: pass horizon=T to method='arnoldi'")
        pq = self.projections(queries)
        gq = self.ctx.grads(queries) if self.options["complement"] else None
        blocks = []
        for block in row_blocks(train, self.ctx.batch_size):  # memory flat in the number of training examples
            pz = self.projections(block)
            dot = gq @ self.ctx.grads(block).T if gq is not None else None
            blocks.append(torch.stack([(pq * self.filters(float(t))) @ pz.T
                                       + (0.0 if dot is None else self.lr * float(t) * dot) for t in horizons]))
        return torch.cat(blocks, dim=-1)

    def state_dict(self) -> dict[str, Tensor]:
        state = {"eigenvalues": self.pairs.values, "eigenvectors": self.pairs.vectors,
                 "residuals": self.pairs.residuals, "ritz_values": self.ritz_values,
                 "breakdown": torch.tensor(bool(self.breakdown)),
                 "hessian_samples_used": torch.tensor(self.hessian_samples_used),
                 "iterations_used": torch.tensor(self.iterations_used)}
        if self.sample_checks:  # (examples, drift) of each sample check, so that a reopened run still says a drift
            state["sample_checks"] = torch.tensor([[c["hessian_samples"], c["drift"]] for c in self.sample_checks],
                                                  dtype=torch.float64)
        if self.plan is not None:  # what the time budget chose, so that a reopened run can say it
            state["plan"] = torch.tensor([self.plan.iterations, self.plan.hessian_samples, self.plan.per_product_s,
                                          self.plan.predicted_s, self.plan.budget_s], dtype=torch.float64)
        return state

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        self.set_eigenpairs(Eigenpairs(state["eigenvalues"], state["eigenvectors"], state["residuals"]))
        self.sample_checks, self.plan = [], None
        if "plan" in state:
            it, samples, per, predicted, budget = state["plan"].tolist()
            self.plan = Plan(int(it), int(samples), per, predicted, budget, "as fitted (read from the run directory)")
        if "iterations_used" in state:
            self.hessian_samples_used = int(state["hessian_samples_used"])
            self.iterations_used = int(state["iterations_used"])
        self.ritz_values = state.get("ritz_values", state["eigenvalues"])
        self.sample_checks = [{"hessian_samples": int(n), "drift": float(d)}
                              for n, d in state["sample_checks"].tolist()] if "sample_checks" in state else []
        self.hvp_calls = 0
        self.warnings = sample_warnings(self.sample_checks, self.options["sample_tol"]) + ritz_warnings(
            self.pairs, self.options["ritz_tol"], getattr(self, "iterations_used", None))
        self.breakdown = bool(state["breakdown"]) if "breakdown" in state else False
        self.left_out = self._left_out()

    def _left_out(self) -> float:
        """The largest Ritz value left out of the basis: the horizon variant needs η·λ·T ≪ 1 there."""
        below = self.ritz_values[self.ritz_values < float(self.pairs.values.min())]
        return float(below.max()) if len(below) else 0.0

    @property
    def eigenvalues(self) -> Tensor:
        return self.pairs.values

    def __repr__(self) -> str:
        horizon = f", horizon={self.horizon:g}, lr={self.lr:.3g}" if getattr(self, "horizon", None) else ""
        return f"Arnoldi(rank={len(self.pairs.values) if hasattr(self, 'pairs') else '?'}{horizon})"
