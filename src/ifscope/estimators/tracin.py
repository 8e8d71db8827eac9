"""TracIn: ``score = Σ_t η_t ∇ℓ_t(q)·∇ℓ_t(z)`` over saved checkpoints; embedding ``[√η_t g_t]`` concatenated over t."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from ..data import Batch
from ..errors import ConfigError
from .base import Estimator


class TracIn(Estimator):
    name = "tracin"
    OPTIONS = {"checkpoints": None}

    def fit(self) -> None:
        checkpoints = self.options["checkpoints"]
        if not checkpoints:
            raise ConfigError("tracin needs checkpoints=[(state_dict, learning_rate), ...] from training")
        names = set(self.ctx.params)
        self.points: list[tuple[dict[str, Tensor], dict[str, Tensor], float]] = []
        for i, item in enumerate(checkpoints):
            if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], Mapping)):
                raise ConfigError(f"tracin checkpoint {i} must be a pair (state_dict, learning_rate)")
            state, lr = item
            if float(lr) <= 0:
                raise ConfigError(f"tracin checkpoint {i} has learning rate {lr}; it must be positive")
            missing = sorted(names - set(state))
            if missing:
                raise ConfigError(f"tracin checkpoint {i} lacks parameters {missing[:3]}; save model.state_dict()")

            def cast(t: Tensor) -> Tensor:
                return t.detach().to(self.ctx.dtype) if t.is_floating_point() else t.detach()
            params = {n: cast(state[n]) for n in self.ctx.params}
            rest = {n: cast(state[n]) if n in state else t for n, t in self.ctx.rest.items()}
            self.points.append((params, rest, float(lr)))

    def _embed(self, batch: Batch) -> Tensor:
        return torch.cat([lr ** 0.5 * self.ctx.grads(batch, p, r) for p, r, lr in self.points], dim=1)

    def train_embed(self, batch: Batch) -> Tensor:
        return self._embed(batch)

    def query_embed(self, batch: Batch) -> Tensor:
        return self._embed(batch)

    def self_embed(self, batch: Batch) -> tuple[Tensor, Tensor]:
        e = self._embed(batch)
        return e, e
