"""Exact unrolled influence: ``score[q, i] = −N · ∂ℓ(q, θ_T)/∂wᵢ`` through T steps of continued training (docs/science.md, 'Unrolled influence').

Continued training from the checkpoint with a fresh optimiser state on ``(1/|B|) Σ_{i∈B} wᵢ ℓ(zᵢ) + (wd/2)‖θ‖²``, the
batches from ``train_batch_size`` and ``seed`` (full batch when None); the derivative at w = 1 is the first-order
limit that every checkpoint score approximates (re-weighting to w changes the query loss by ≈ −(w − 1)·score/N).
It is not a product of two embeddings: the estimator scores directly (``direct = True``), one reverse pass through
the replay per block of queries (:func:`ifscope.truth.adjoint.weight_gradients`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils._pytree import tree_map

from ..core.data import Batch, batch_len
from ..core.errors import ConfigError
from ..core.fingerprint import tree_fingerprint
from ..core.krylov import default_step
from ..truth.adjoint import AdjointResult, weight_gradients
from ..truth.training import OPTIMIZERS, Schedule, make_batches
from .base import Estimator

# queries per reverse pass: the vmapped backward holds this many copies of a batch's activations at once, and the
# cost per query stops falling well before that (`python benchmarks/unrolled.py --queries 1` against `--queries 20`)
QUERY_BLOCK = 32
STILL = 1e-3  # a checkpoint is "converged" for T steps of GD when η·T·‖∇L‖ (its predicted travel) ≤ STILL·‖θ‖


@dataclass
class UnrolledOptions:
    """``horizon`` steps T of ``optimizer`` with step ``lr`` (None: 1/λ_max), torch.optim semantics (SGD with
    dampening 0 and ``momentum`` for "momentum"; Adam with ``betas``, ``eps``), minibatches of ``train_batch_size``."""

    horizon: int | None = None
    lr: float | None = None
    optimizer: str = "sgd"
    momentum: float = 0.9
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    train_batch_size: int | None = None

    def validate(self) -> None:
        h = self.horizon
        if isinstance(h, bool) or not isinstance(h, (int, float)) or math.isinf(h) or h < 1 or h != int(h):
            raise ConfigError(f"method='unrolled' needs horizon=T, a positive integer number of training steps "
                              f"(e.g. 100), got {h!r}")
        if self.lr is not None and (not isinstance(self.lr, (int, float)) or not 0 < self.lr < math.inf):
            raise ConfigError(f"lr must be a positive step size (or None for 1/λ_max), got {self.lr!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if not isinstance(self.momentum, (int, float)) or not 0 <= self.momentum < 1:
            raise ConfigError(f"momentum must lie in [0, 1), got {self.momentum!r}")
        betas = self.betas
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2
                and all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas)):
            raise ConfigError(f"betas must be two numbers in [0, 1), got {betas!r}")
        if not isinstance(self.eps, (int, float)) or not self.eps > 0:
            raise ConfigError(f"eps must be positive, got {self.eps!r}")
        b = self.train_batch_size
        if b is not None and (isinstance(b, bool) or not isinstance(b, int) or b < 1):
            raise ConfigError(f"train_batch_size must be a positive integer or None (full batch), got {b!r}")


class Unrolled(Estimator):
    """``score[q, i] = −N ∂ℓ(q, θ_T)/∂wᵢ`` by the adjoint of the replay; queries in blocks of ``batch_size`` (at most
    ``QUERY_BLOCK``), each block one forward replay and one reverse sweep."""

    name = "unrolled"
    Options = UnrolledOptions
    uses_curvature = True  # Hessian-vector products along the trajectory

    direct = True         # scores come from `scores`, not from a product of embeddings
    horizon_aware = True  # `scores_over_horizons` evaluates each T of a grid

    def fit(self) -> None:
        opts = self.opts
        self.horizon = int(opts.horizon)  # type: ignore[arg-type]
        # the continued training itself is undamped: its default step is 1/λ_max of the plain curvature
        self.lr = float(opts.lr if opts.lr is not None else default_step(self.ctx.lambda_max()))
        n = len(self.ctx.train)  # type: ignore[arg-type]
        self.schedule = Schedule(make_batches(n, self.horizon, opts.train_batch_size, self.ctx.seed), lr=self.lr,
                                 optimizer=opts.optimizer, momentum=float(opts.momentum),
                                 betas=(float(opts.betas[0]), float(opts.betas[1])), eps=float(opts.eps),
                                 weight_decay=self.ctx.weight_decay)
        self.advice = self._advice(n)
        self.last: AdjointResult | None = None  # the latest reverse pass: checkpoint counts, for tests and benchmarks
        self._memo: tuple[str, Tensor] | None = None  # (fingerprint of everything the scores depend on, scores)

    def _advice(self, n: int) -> str | None:
        """For full-batch GD from a converged checkpoint (predicted travel ``η·T·‖∇L‖ ≤ STILL·‖θ‖``), the trajectory
        stays where the curvature is the checkpoint's: say that ``horizon`` gives the same scores for less."""
        opts = self.opts
        if opts.optimizer != "sgd" or (opts.train_batch_size is not None and opts.train_batch_size < n):
            return None
        op = self.ctx.curvature_operator(damping=0.0, samples=n)
        travel = self.lr * self.horizon * float(op.loss_and_grad()[1].norm())
        size = float(op.space.flatten(self.ctx.params).norm())
        if travel > STILL * size:
            return None
        return (f"the checkpoint is converged for these {self.horizon} full-batch GD steps (predicted travel "
                f"{travel:.2g} <= {STILL:g} x |theta| = {STILL * size:.2g}): method='horizon' (horizon={self.horizon}, "
                f"lr={self.lr:.3g}) gives the same scores at a fraction of unrolled's cost")

    def chosen(self) -> dict | None:
        """The advice of :meth:`_advice`, for ``Influence.fit`` to say, or None."""
        return None if self.advice is None else {"text": self.advice}

    def _refuse(self) -> Tensor:
        raise ConfigError("method='unrolled' scores directly (one reverse pass through the continued training per "
                          "block of queries); it has no embeddings: use Influence.scores or Influence.top")

    def train_embed(self, batch: Batch) -> Tensor:
        return self._refuse()

    def query_embed(self, batch: Batch) -> Tensor:
        return self._refuse()

    def scores(self, queries: Batch, train_ids: Tensor | None = None) -> Tensor:
        """``[n_queries, n_train]`` (or ``[n_queries, len(train_ids)]``) scores at the fitted horizon."""
        return self.scores_over_horizons(queries, train_ids, [self.horizon])[0]

    def scores_over_horizons(self, queries: Batch, train_ids: Tensor | None = None,
                             horizons: Sequence[int] | None = None, schedule: Schedule | None = None) -> Tensor:
        """``[len(horizons), n_queries, n]`` scores after each ``T`` steps, from one reverse pass per query block;
        ``schedule`` replaces the fitted one (e.g. the fade's own continued training)."""
        horizons = [self.horizon] if horizons is None else [int(h) for h in horizons]
        schedule = self.schedule if schedule is None else schedule
        key = self._key(queries, horizons, schedule)
        if self._memo is not None and self._memo[0] == key:
            full = self._memo[1]
        else:
            full = self._full(queries, horizons, schedule)
            self._memo = (key, full)
        return full if train_ids is None else full[..., torch.as_tensor(train_ids, dtype=torch.long)]

    def _key(self, queries: Batch, horizons: list[int], schedule: Schedule) -> str:
        # by value, not identity: parameters changed in place (or a copied estimator on a new checkpoint, as
        # Influence.derive makes) must not read the scores of the old ones
        ctx = self.ctx
        return tree_fingerprint((ctx.params, ctx.rest, queries, horizons, vars(schedule), len(ctx.train)))

    def _full(self, queries: Batch, horizons: list[int], schedule: Schedule) -> Tensor:
        ctx = self.ctx
        n, size = len(ctx.train), min(ctx.batch_size, QUERY_BLOCK)  # type: ignore[arg-type]
        parts = []
        for s in range(0, batch_len(queries), size):
            block = tree_map(lambda t, s=s: t[s:s + size], queries)
            self.last = weight_gradients(ctx.task, ctx.params, ctx.rest, ctx.train, schedule, block, horizons, n)
            parts.append(-n * self.last.dloss)
        return torch.cat(parts, dim=1)
