"""ABIF: ``score = Σⱼ Pⱼ(q) Pⱼ(z) / λⱼ`` with ``Pⱼ(z) = ∇ℓ(z)·uⱼ`` on the top Arnoldi eigenpairs ``(λⱼ, uⱼ)``."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from ..arnoldi import Eigenpairs, arnoldi, distill
from ..checks import arnoldi_health, check_sizes
from ..data import Batch
from ..projection import project
from .base import Estimator


class Arnoldi(Estimator):
    """Train embedding ``P Λ⁻¹``, query embedding ``P`` (``k`` columns); no per-example gradient is stored."""

    name = "arnoldi"
    OPTIONS = {"rank": 50, "iterations": 200, "select": "positive"}

    def fit(self) -> None:
        rank, iterations = self.options["rank"], self.options["iterations"]
        dim = self.ctx.space.dim
        check_sizes(rank, iterations, dim)
        # damping is applied to the kept eigenvalues, not inside the operator, so that the basis is undamped
        op = self.ctx.curvature_operator(damping=0.0)
        bar = self.ctx.progress("Arnoldi iterations", min(iterations, dim))
        result = arnoldi(op.matvec, dim, iterations, seed=self.ctx.seed, dtype=self.ctx.dtype,
                         progress=(lambda j: bar.update(1)) if bar is not None else None)
        if bar is not None:
            bar.close()
        self.hvp_calls = op.calls
        self.breakdown = result.breakdown
        self.set_eigenpairs(distill(result, rank, str(self.options["select"])))
        self.warnings = arnoldi_health(result.breakdown, result.steps, iterations, dim, rank, self.pairs.values,
                                       self.ctx.damping)
        h = result.H[:result.steps, :result.steps].double()
        self.ritz_values = torch.linalg.eigvalsh((h + h.T) / 2).flip(0).to(self.ctx.dtype)  # all of them, for the spectrum

    def set_eigenpairs(self, pairs: Eigenpairs) -> None:
        self.pairs = pairs
        self.inv = 1.0 / (pairs.values + self.ctx.damping)

    def projections(self, batch: Batch) -> Tensor:
        """``[B, k]``: each example's gradient projected on the kept eigenvectors."""
        return project(self.ctx.task, self.ctx.params, self.ctx.rest, batch, self.pairs.vectors,
                       path=self.ctx.projection)

    def train_embed(self, batch: Batch) -> Tensor:
        return self.projections(batch) * self.inv

    def query_embed(self, batch: Batch) -> Tensor:
        return self.projections(batch)

    def self_embed(self, batch: Batch) -> tuple[Tensor, Tensor]:
        p = self.projections(batch)
        return p, p * self.inv

    def state_dict(self) -> dict[str, Tensor]:
        return {"eigenvalues": self.pairs.values, "eigenvectors": self.pairs.vectors,
                "residuals": self.pairs.residuals, "ritz_values": self.ritz_values}

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        self.set_eigenpairs(Eigenpairs(state["eigenvalues"], state["eigenvectors"], state["residuals"]))
        self.ritz_values = state.get("ritz_values", state["eigenvalues"])
        self.hvp_calls, self.breakdown, self.warnings = 0, False, []

    @property
    def eigenvalues(self) -> Tensor:
        return self.pairs.values

    def __repr__(self) -> str:
        return f"Arnoldi(rank={len(self.pairs.values) if hasattr(self, 'pairs') else '?'})"
