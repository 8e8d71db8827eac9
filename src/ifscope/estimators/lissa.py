"""LiSSA: ``(H + λI)⁻¹ g ≈ (1/s) Σ_{t<depth} (I − (H + λI)/s)^t g``, a truncated Neumann series."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..core.errors import NumericalError
from ..options import positive_int, positive_number
from .base import InverseCurvature


@dataclass
class LiSSAOptions:
    """``depth`` terms of the Neumann series with scale ``s`` (None: 1.1 × the largest |eigenvalue|)."""

    depth: int = 500
    scale: float | None = None

    def validate(self) -> None:
        positive_int("depth", self.depth)
        positive_number("scale", self.scale, allow_none=True)


class LiSSA(InverseCurvature):
    name = "lissa"
    Options = LiSSAOptions

    def fit(self) -> None:
        super().fit()
        scale = self.options["scale"]
        if scale is None:  # just above the top eigenvalue: the series then converges on every positive direction
            self.ctx.lambda_max()
            spec = self.ctx.spectrum()
            scale = 1.1 * (max(abs(spec.lambda_max), abs(spec.lambda_min)) + self.ctx.damping)
            if not scale > 0:
                raise NumericalError("LiSSA: the curvature is zero on the Hessian sample (the loss is flat in the "
                                     "selected parameters there); check the parameter selection, or give scale=...")
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
