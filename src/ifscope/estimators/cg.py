"""Conjugate gradients: query embedding ``(H + λI)⁻¹ ∇ℓ(q)`` solved iteratively with Hessian-vector products."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..core.errors import NumericalError
from ..options import positive_int, positive_number
from .base import InverseCurvature


def conjugate_gradient(matmat, b: Tensor, iterations: int, tol: float) -> Tensor:
    """Solve ``A x = b`` row-wise for ``b`` [m, dim], ``A`` symmetric positive definite, by batched CG."""
    x = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rs = (r * r).sum(1)
    stop = tol**2 * rs.clamp_min(torch.finfo(b.dtype).tiny)
    for _ in range(iterations):
        active = rs > stop
        if not active.any():
            break
        ap = matmat(p)
        curv = (p * ap).sum(1)
        if (curv[active] <= 0).any():
            raise NumericalError("CG met non-positive curvature: the Hessian is not positive definite here; add "
                                 "damping=... (e.g. 1e-3 × the top eigenvalue) or use method='arnoldi'")
        alpha = torch.where(active, rs / curv.where(active, torch.ones_like(curv)), torch.zeros_like(rs))
        x = x + alpha[:, None] * p
        r = r - alpha[:, None] * ap
        rs_new = (r * r).sum(1)
        beta = torch.where(active, rs_new / rs.where(active, torch.ones_like(rs)), torch.zeros_like(rs))
        p = r + beta[:, None] * p
        rs = rs_new
    return x


@dataclass
class CGOptions:
    """``cg_iterations`` CG steps per block of queries, stopping at relative residual ``tol``."""

    cg_iterations: int = 100
    tol: float = 1e-6

    def validate(self) -> None:
        positive_int("cg_iterations", self.cg_iterations)
        positive_number("tol", self.tol)


class CG(InverseCurvature):
    name = "cg"
    Options = CGOptions

    def apply(self, g: Tensor) -> Tensor:
        return conjugate_gradient(self.op.matmat, g, int(self.options["cg_iterations"]), float(self.options["tol"]))
