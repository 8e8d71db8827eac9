"""Exact influence: ``score = ∇ℓ(q)ᵀ (H + λI)⁻¹ ∇ℓ(z)`` with the dense Hessian, for small models."""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import torch
from torch import Tensor

from ..core.errors import NumericalError
from .base import CurvatureEstimator, GradientTrainEmbedding


class Exact(GradientTrainEmbedding, CurvatureEstimator):
    name = "exact"
    inverts_spectrum = True

    def fit(self) -> None:
        op = self.ctx.curvature_operator()
        h = op.dense()
        vals, vecs = torch.linalg.eigh(h.double())
        top = float(vals.abs().max())
        if top == 0 or float(vals.abs().min()) <= top * 1e3 * torch.finfo(h.dtype).eps:
            raise NumericalError(f"the Hessian is singular (smallest |eigenvalue| {float(vals.abs().min()):.3g}, "
                                 f"largest {top:.3g}); add damping=... or weight_decay=..., or use method='arnoldi'")
        if float(vals.min()) < 0:
            warnings.warn(f"the Hessian has {(vals < 0).sum()} negative eigenvalues (down to {float(vals.min()):.3g}): "
                          "the checkpoint is not at a minimum and exact inverse-Hessian scores follow those directions "
                          "with flipped sign; consider damping or method='arnoldi'", stacklevel=2)
        self.h_inv = ((vecs / vals) @ vecs.T).to(h.dtype)

    def apply(self, g: Tensor) -> Tensor:
        return g @ self.h_inv

    def state_dict(self) -> dict[str, Tensor]:
        return {"h_inv": self.h_inv}

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        self.h_inv = state["h_inv"]
