"""Gradient dot product: ``score = ∇ℓ(q)·∇ℓ(z)`` (no curvature)."""

from __future__ import annotations

from torch import Tensor

from .base import GradientTrainEmbedding


class GradDot(GradientTrainEmbedding):
    name = "graddot"

    def apply(self, g: Tensor) -> Tensor:
        return g
