"""EK-FAC: K-FAC's eigenbasis with corrected eigenvalues ``λ = E[(Q_Sᵀ G Q_A)²]``, the exact curvature diagonal there.

With ``horizon=T`` (and ``lr=η``) the train embedding is scaled by ``f_T(λ) = (1 − (1 − ηλ)^T)/λ`` instead of ``1/λ``:
the response after T steps of gradient descent on this curvature (``ifscope.estimators.horizon``), tending to EK-FAC
as ``T → ∞`` and equal to ``η ∇ℓ(q)·∇ℓ(z)`` at ``T = 1``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..core.data import Batch, row_blocks
from ..core.errors import ConfigError
from ..options import choice
from .horizon import check_horizon, horizon_filter
from .kfac import KFAC
from .kronecker import FISHERS


@dataclass
class EKFACOptions:
    """``fisher``: ``true`` (labels drawn from the model's softmax) or ``empirical`` (the observed labels); with
    ``horizon=T`` (and ``lr=η``, None = 1 / the largest damped eigenvalue) the horizon-aware variant."""

    fisher: str = "true"
    horizon: float | None = None
    lr: float | None = None

    def validate(self) -> None:
        choice("fisher", self.fisher, FISHERS)
        if self.horizon is not None or self.lr is not None:
            check_horizon(self.horizon, self.lr, "ekfac")


class EKFAC(KFAC):
    """K-FAC's rotation with each eigenvalue replaced by the mean squared rotated gradient (one more pass over the
    Hessian sample); train embedding ``R / (λ + wd + δ)`` (or ``R f_T(λ + wd + δ)``), query embedding ``R``."""

    name = "ekfac"
    Options = EKFACOptions
    refit_free = frozenset({"damping", "weight_decay", "horizon", "lr"})  # filters of the fitted eigenvalues

    def basis_eigenvalues(self, factor_values: list[Tensor]) -> list[Tensor]:
        sums = [torch.zeros_like(v, dtype=torch.float64) for v in factor_values]
        n = 0
        for signals in self.signals():
            for total, (a, g), qs, qa in zip(sums, signals, self.qs, self.qa):
                r = qs.T @ torch.einsum("bpo,bpi->boi", g, a) @ qa
                total += (r.double() ** 2).sum(0)
            n += len(signals[0][0])
        return [s / n for s in sums]

    def set_eigenvalues(self, values: list[Tensor], damping: Sequence[float] | None = None) -> None:
        self.horizon: float | None = None
        if self.options["horizon"] is not None:
            self.horizon, self.lr = check_horizon(self.options["horizon"], self.options["lr"], self.name)
        super().set_eigenvalues(values, damping)

    def weight(self, lam: Tensor) -> Tensor:
        if self.horizon is None:
            return 1.0 / lam
        return horizon_filter(lam, self.horizon, self.step)

    @property
    def step(self) -> float:
        """The step η: ``lr``, or 1 / the largest damped eigenvalue over all layers."""
        if self.lr is not None:
            return self.lr
        return 1.0 / max(float(v.max()) + self.ctx.weight_decay + d for v, d in zip(self.values, self.damping))

    @property
    def horizon_aware(self) -> bool:  # type: ignore[override]
        return getattr(self, "horizon", None) is not None

    def scores_over_horizons(self, queries: Batch, train: Batch, horizons: Sequence[float]) -> Tensor:
        """``[len(horizons), n_queries, n_train]`` horizon-aware scores for each ``T``."""
        if self.horizon is None:
            raise ConfigError("scores over horizons need the horizon-aware variant: pass horizon=T to method='ekfac'")
        rq = self.rotated(queries)
        damped = [v + self.ctx.weight_decay + d for v, d in zip(self.values, self.damping)]
        blocks = []
        for block in row_blocks(train, self.ctx.batch_size):
            rz = self.rotated(block)
            blocks.append(torch.stack([self.flat(rq) @ self.flat([r * horizon_filter(lam, float(t), self.step)
                                                                  for r, lam in zip(rz, damped)]).T
                                       for t in horizons]))
        return torch.cat(blocks, dim=-1)
