"""TracIn: ``score = Σ_t η_t ∇ℓ_t(q)·∇ℓ_t(z)`` over saved checkpoints; embedding ``[√η_t g_t]`` concatenated over t."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..core.data import Batch
from ..core.errors import ConfigError
from .base import Estimator


@dataclass
class TracInOptions:
    """``checkpoints``: ``[(state_dict, learning_rate), ...]`` (recorded by content hash); ``per_step``: checkpoint
    t holds the parameters before step t + 1 of the continued training, so sums over the first T are horizons."""

    checkpoints: Any = None
    per_step: bool = False


class TracIn(Estimator):
    name = "tracin"
    Options = TracInOptions

    @property
    def horizon_aware(self) -> bool:
        """``per_step=True``: checkpoint t is the parameters before step t + 1 of the continued training."""
        return bool(self.options["per_step"])

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
                t = t.detach().to(self.ctx.device)
                return t.to(self.ctx.dtype) if t.is_floating_point() else t
            params = {n: cast(state[n]) for n in self.ctx.params}
            rest = {n: cast(state[n]) if n in state else t for n, t in self.ctx.rest.items()}
            self.points.append((params, rest, float(lr)))

    def state_dict(self) -> dict[str, Tensor]:
        """The checkpoints themselves, so that a run directory rebuilds the estimator without the caller's list."""
        out = {f"lr.{i}": torch.tensor(lr, dtype=torch.float64) for i, (_, _, lr) in enumerate(self.points)}
        for i, (p, r, _) in enumerate(self.points):
            out.update({f"params.{i}.{k}": v for k, v in p.items()})
            out.update({f"rest.{i}.{k}": v for k, v in r.items()})
        return out

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        count = len([k for k in state if k.startswith("lr.")])
        self.points = []
        for i in range(count):
            params = {k: state[f"params.{i}.{k}"] for k in self.ctx.params}
            rest = {k: state.get(f"rest.{i}.{k}", t) for k, t in self.ctx.rest.items()}
            self.points.append((params, rest, float(state[f"lr.{i}"])))

    def _embed(self, batch: Batch) -> Tensor:
        return torch.cat([lr ** 0.5 * self.ctx.grads(batch, p, r) for p, r, lr in self.points], dim=1)

    def train_embed(self, batch: Batch) -> Tensor:
        return self._embed(batch)

    def query_embed(self, batch: Batch) -> Tensor:
        return self._embed(batch)

    def self_embed(self, batch: Batch) -> tuple[Tensor, Tensor]:
        e = self._embed(batch)
        return e, e

    def scores_over_horizons(self, queries: Batch, train: Batch, horizons: Sequence[float]) -> Tensor:
        """``[len(horizons), n_queries, n_train]``: the sum over the first ``T`` checkpoints, for each ``T``.

        Read as a horizon when checkpoint ``t`` holds the parameters before step ``t + 1`` of the continued
        training (one checkpoint per step), so that ``T`` checkpoints cover ``T`` steps."""
        horizons = [int(h) for h in horizons]
        if not self.horizon_aware:
            raise ConfigError("tracin scores over horizons need per_step=True and one checkpoint per step of the "
                              "continued training (ifscope.experiments.fade.trajectory_checkpoints)")
        if max(horizons) > len(self.points):
            raise ConfigError(f"horizon {max(horizons)} exceeds the {len(self.points)} tracin checkpoints; give one "
                              "checkpoint per step of the continued training")
        total = None
        out: dict[int, Tensor] = {}
        for t, (p, r, lr) in enumerate(self.points[: max(horizons)], start=1):
            s = lr * self.ctx.grads(queries, p, r) @ self.ctx.grads(train, p, r).T
            total = s if total is None else total + s
            out[t] = total
        return torch.stack([out[h] for h in horizons])
