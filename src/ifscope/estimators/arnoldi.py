"""ABIF: ``score = Σⱼ Pⱼ(q) Pⱼ(z) / λⱼ`` with ``Pⱼ(z) = ∇ℓ(z)·uⱼ`` on the top Arnoldi eigenpairs ``(λⱼ, uⱼ)``.

With ``horizon=T`` (and ``lr=η``) it is the cheap horizon-aware variant: ``Σⱼ Pⱼ(q) Pⱼ(z) f_T(λⱼ)`` with
``f_T(λ) = (1 − (1 − ηλ)^T)/λ``, plus ``ηT (g_q·g_z − P(q)·P(z))`` on the complement of the basis
(``complement=True``), which is right only while ``ηλT ≪ 1`` for every eigenvalue left out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..checks import arnoldi_health, check_sizes
from ..data import Batch, batch_len, row_blocks
from ..decisions import decided, path_key
from ..errors import ConfigError
from ..krylov import SELECT_RULES, Eigenpairs, Spectrum, arnoldi, distill
from ..options import choice, positive_int
from ..projection import PathChoice, measure_paths, project
from .base import CurvatureEstimator
from .horizon import check_horizon, horizon_filter


@dataclass
class ArnoldiOptions:
    """``iterations`` Arnoldi steps, ``rank`` eigenpairs kept by ``select`` (positive/value/magnitude); with ``horizon``
    (and ``lr``, None = 1/λ_max) the horizon-aware variant, ``complement`` adding ``ηT`` off the basis."""

    rank: int = 50
    iterations: int = 200
    select: str = "positive"
    horizon: float | None = None
    lr: float | None = None
    complement: bool = True

    def validate(self) -> None:
        positive_int("rank", self.rank)
        positive_int("iterations", self.iterations)
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

    def fit(self) -> None:
        rank, iterations = self.options["rank"], self.options["iterations"]
        dim = self.ctx.space.dim
        check_sizes(rank, iterations, dim)
        # damping is applied to the kept eigenvalues, not inside the operator, so that the basis is undamped
        op = self.ctx.curvature_operator(damping=0.0)
        bar = self.ctx.progress("Arnoldi iterations", min(iterations, dim))
        result = arnoldi(op.matvec, dim, iterations, seed=self.ctx.seed, dtype=self.ctx.dtype, device=self.ctx.device,
                         progress=(lambda j: bar.update(1)) if bar is not None else None)
        if bar is not None:
            bar.close()
        self.hvp_calls = op.calls
        self.breakdown = result.breakdown
        self.set_eigenpairs(distill(result, rank, str(self.options["select"])))
        self.warnings = arnoldi_health(result.breakdown, result.steps, iterations, dim, rank, self.pairs.values,
                                       self.ctx.damping)
        self.ritz_values = self.pairs.ritz  # all of them, for the spectrum
        self.left_out = self._left_out()

    def set_eigenpairs(self, pairs: Eigenpairs) -> None:
        self.pairs = pairs
        self.path_choice: PathChoice | None = None  # set on the first full batch projected after a fit or load
        self.horizon: float | None = None
        if self.options["horizon"] is None:
            self.inv = 1.0 / (pairs.values + self.ctx.damping)
            return
        self.horizon, lr = check_horizon(self.options["horizon"], self.options["lr"], self.name)
        self.lr = lr if lr is not None else 1.0 / float(pairs.values.max() + self.ctx.damping)
        self.inv = self.filters(self.horizon)

    @property
    def horizon_aware(self) -> bool:  # type: ignore[override]
        return getattr(self, "horizon", None) is not None

    @property
    def spectrum(self) -> Spectrum:
        """Every Ritz value of the fit: the run's spectrum, at no extra curvature product."""
        return Spectrum(self.ritz_values, int(self.options["iterations"]))

    def filters(self, horizon: float) -> Tensor:
        """``f_T(λⱼ)`` on the kept eigenvalues, less ``ηT`` when the complement term carries that part."""
        f = horizon_filter(self.pairs.values + self.ctx.damping, horizon, self.lr)
        return f - self.lr * horizon if self.options["complement"] else f

    def projections(self, batch: Batch) -> Tensor:
        """``[B, k]``: each example's gradient projected on the kept eigenvectors, by the path the options name or,
        for ``auto``, the one measured faster on the first full batch and kept for this model on this machine
        (``ifscope.decisions``; smaller batches, e.g. a few queries, take the rank rule of ``choose_path`` meanwhile)."""
        ctx, basis = self.ctx, self.pairs.vectors
        if self.path_choice is None or self.path_choice.asked != ctx.projection:
            if ctx.projection != "auto":
                self.path_choice = PathChoice(ctx.projection, "chosen in the options", asked=ctx.projection)
            elif batch_len(batch) >= min(ctx.batch_size, len(ctx.train)):  # type: ignore[arg-type]
                key = path_key(ctx.params, len(basis), ctx.batch_size, ctx.dtype, ctx.device)
                self.path_choice, out = decided(key, lambda: measure_paths(ctx.task, ctx.params, ctx.rest, batch,
                                                                           basis, ctx.batch_size))
                if out is not None:
                    return out
            else:
                return project(ctx.task, ctx.params, ctx.rest, batch, basis, path="auto")
        return project(ctx.task, ctx.params, ctx.rest, batch, basis, path=self.path_choice.path)

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
        return {"eigenvalues": self.pairs.values, "eigenvectors": self.pairs.vectors,
                "residuals": self.pairs.residuals, "ritz_values": self.ritz_values,
                "breakdown": torch.tensor(bool(self.breakdown))}

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        self.set_eigenpairs(Eigenpairs(state["eigenvalues"], state["eigenvectors"], state["residuals"]))
        self.ritz_values = state.get("ritz_values", state["eigenvalues"])
        self.hvp_calls, self.warnings = 0, []
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
