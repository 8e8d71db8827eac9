"""The options every estimator shares (curvature, batches, precision, speed settings)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..core.errors import ConfigError
from .fields import (
    CURVATURES,
    PROJECTION_DTYPES,
    PROJECTIONS,
    as_dtype,
    choice,
    non_negative,
    positive_int,
    positive_number,
)


@dataclass
class FitOptions:
    """Options every method shares: curvature ``H + damping·I`` (with ``weight_decay`` in ``H``; ``damping=None``: the
    method's default, 0 except for kfac/ekfac, which take 0.1 × each layer's mean eigenvalue) on ``hessian_samples``
    training examples, batches of ``batch_size``, precision ``dtype``; ``projection_dtype`` (bfloat16/float16) for
    gradient projections with float32 accumulation; ``time_budget_s`` for the fit (arnoldi sizes its iterations and
    Hessian sample to it and says what it chose)."""

    damping: float | None = None
    weight_decay: float = 0.0
    batch_size: int = 128
    seed: int = 0
    dtype: Any = torch.float32
    hessian_samples: int | None = None
    curvature: str = "hessian"
    projection: str = "auto"
    projection_dtype: str | None = None
    time_budget_s: float | None = None

    def validate(self) -> None:
        if self.damping is not None:
            non_negative("damping", self.damping)
            self.damping = float(self.damping)
        non_negative("weight_decay", self.weight_decay)
        self.weight_decay = float(self.weight_decay)
        positive_int("batch_size", self.batch_size)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"seed must be an integer, got {self.seed!r}")
        self.dtype = as_dtype(self.dtype)
        positive_int("hessian_samples", self.hessian_samples, allow_none=True)
        choice("curvature", self.curvature, CURVATURES)
        choice("projection", self.projection, PROJECTIONS)
        if self.projection_dtype is not None:
            choice("projection_dtype", self.projection_dtype, tuple(PROJECTION_DTYPES))
        positive_number("time_budget_s", self.time_budget_s, allow_none=True)
