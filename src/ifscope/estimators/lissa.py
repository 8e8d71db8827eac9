"""LiSSA: ``(H + λI)⁻¹ g ≈ (1/s) Σ_{t<depth} (I − (H + λI)/s)^t g``, a truncated Neumann series."""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import ConfigError, NumericalError
from .base import GradientTrainEmbedding


def power_iteration(matvec, dim: int, dtype: torch.dtype, iterations: int = 30, seed: int = 0,
                    device: torch.device | str = "cpu") -> float:
    """The largest |eigenvalue| of a symmetric operator, by power iteration."""
    v = torch.randn(dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(device, dtype)
    v = v / v.norm()
    lam = 0.0
    for _ in range(iterations):
        w = matvec(v)
        lam = float(w.norm())
        if lam == 0:
            return 0.0
        v = w / lam
    return lam


class LiSSA(GradientTrainEmbedding):
    name = "lissa"
    OPTIONS = {"depth": 500, "scale": None}

    def fit(self) -> None:
        self.op = self.ctx.curvature_operator()
        scale = self.options["scale"]
        if scale is None:  # just above the top eigenvalue: the series then converges on every positive direction
            scale = 1.1 * power_iteration(self.op.matvec, self.op.dim, self.ctx.dtype, seed=self.ctx.seed,
                                           device=self.ctx.device)
        if self.options["scale"] is None and not scale > 0:
            raise NumericalError("LiSSA: power iteration found zero curvature on the Hessian sample (the loss is flat "
                                 "in the selected parameters there); check the parameter selection, or give scale=...")
        if not scale or scale <= 0:
            raise ConfigError(f"LiSSA scale must be positive, got {scale}")
        self.scale = float(scale)

    def apply(self, g: Tensor) -> Tensor:
        x = g.clone()
        start = float(g.norm())
        for t in range(int(self.options["depth"])):
            x = g + x - self.op.matmat(x) / self.scale
            if not torch.isfinite(x).all() or float(x.norm()) > 1e8 * max(start, 1e-30):
                raise NumericalError(f"LiSSA diverged at step {t}: the Hessian has eigenvalues above scale={self.scale:.3g} "
                                     "or below zero; raise scale=... or add damping=...")
        return x / self.scale
