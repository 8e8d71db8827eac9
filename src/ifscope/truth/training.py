"""Deterministic training and replay: ``θ ← opt(θ, ∇[(1/|B|) Σ_{i∈B} wᵢ ℓ(zᵢ, θ) + (wd/2)‖θ‖²])`` on a fixed batch order.

Both run the model in eval mode (dropout off, BatchNorm on its running statistics, which stay fixed), so that
the same schedule gives the same parameters bit for bit, and a per-example weight changes only the batches that
contain that example. Weight ``0`` removes an example; ``1 + ε`` up-weights it, which adds ``(ε/N) ℓ(z)`` to a
full-batch mean over N examples.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import grad, grad_and_value

from ..core.batching import choose
from ..core.data import as_dataset, batch_len, take
from ..core.errors import ConfigError, NumericalError
from ..core.params import Params
from ..core.progress import progress_bar
from ..core.task import Task

OPTIMIZERS = ("sgd", "momentum", "adam")


@dataclass
class Schedule:
    """The exact batches (training indices per step) and the optimiser that produced a trajectory."""

    batches: list[Tensor]
    lr: float
    optimizer: str = "sgd"
    momentum: float = 0.9
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0

    def __len__(self) -> int:
        return len(self.batches)

    def steps_containing(self, index: int) -> list[int]:
        """Steps whose batch contains training example ``index``."""
        return [t for t, b in enumerate(self.batches) if bool((b == index).any())]

    def truncated(self, steps: int) -> Schedule:
        return Schedule(self.batches[:steps], self.lr, self.optimizer, self.momentum, self.betas, self.eps,
                        self.weight_decay)


def make_batches(n: int, steps: int, batch_size: int | None, seed: int) -> list[Tensor]:
    """``steps`` batches of indices: epochs of seeded permutations cut into ``batch_size`` (``None`` = full batch)."""
    if batch_size is None or batch_size >= n:
        return [torch.arange(n) for _ in range(steps)]
    gen = torch.Generator().manual_seed(seed)
    out: list[Tensor] = []
    while len(out) < steps:
        perm = torch.randperm(n, generator=gen)
        out.extend(perm[s:s + batch_size] for s in range(0, n - batch_size + 1, batch_size))
    return out[:steps]


@dataclass
class TrainResult:
    params: Params
    schedule: Schedule
    losses: list[float] = field(default_factory=list)
    checkpoints: list[tuple[dict[str, Tensor], float]] = field(default_factory=list)


def _check_schedule(schedule: Schedule) -> None:
    if schedule.optimizer not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {schedule.optimizer!r}; use one of {OPTIMIZERS}")
    if not schedule.lr > 0:
        raise ConfigError(f"learning rate must be positive, got {schedule.lr}")


def _prepare(schedule: Schedule, train: Any, steps: int | None) -> tuple[Any, int]:
    """The training set as a dataset and the number of steps to run, checked against the schedule."""
    _check_schedule(schedule)
    data = as_dataset(train, "train")
    steps = len(schedule) if steps is None else steps
    if steps > len(schedule):
        raise ConfigError(f"asked for {steps} steps but the schedule has {len(schedule)}; extend it with make_batches")
    return data, steps


def _start(task: Task, params: Params, rest: Mapping[str, Tensor] | None
           ) -> tuple[torch.dtype, dict[str, Tensor], Params, Params]:
    """``(dtype, rest, first moment, second moment)`` for a run starting at ``params``."""
    dtype = next(iter(params.values())).dtype
    rest = dict(task.state(dtype)[1] if rest is None else rest)
    return dtype, rest, {k: torch.zeros_like(v) for k, v in params.items()}, \
        {k: torch.zeros_like(v) for k, v in params.items()}


def batch_objective(task: Task, rest: Mapping[str, Tensor], batch: Any, weight_decay: float
                    ) -> Callable[[Params, Tensor], Tensor]:
    """``(θ, w_B) ↦ (1/|B|) Σ_{i∈B} wᵢ ℓ(zᵢ, θ) + (wd/2)‖θ‖²``: the objective of one step on ``batch``."""
    size = batch_len(batch)

    def objective(p: Params, wb: Tensor) -> Tensor:
        loss = (wb * task.per_example_loss(p, rest, batch)).sum() / size
        return loss + 0.5 * weight_decay * sum((v * v).sum() for v in p.values()) if weight_decay else loss
    return objective


def replay(task: Task, params0: Mapping[str, Tensor], train: Any, schedule: Schedule, steps: int | None = None,
           weights: Tensor | None = None, callback: Callable[[int, Params], None] | None = None,
           checkpoint_every: int | None = None, progress: bool = False,
           rest: Mapping[str, Tensor] | None = None) -> TrainResult:
    """Run ``steps`` steps of ``schedule`` from ``params0`` with per-example ``weights`` (default all 1).

    ``callback(t, params)`` is called after each step ``t = 1..steps``; ``checkpoint_every`` records the
    parameters (as a state-dict update) and learning rate for TracIn.
    """
    data, steps = _prepare(schedule, train, steps)
    n = len(data)
    w = torch.ones(n) if weights is None else torch.as_tensor(weights)
    if w.shape != (n,):
        raise ConfigError(f"weights must have one entry per training example ({n}), got shape {tuple(w.shape)}")
    params = {k: v.detach().clone() for k, v in params0.items()}
    dtype, rest, state, state2 = _start(task, params, rest)
    wd = schedule.weight_decay
    result = TrainResult(params, schedule)
    bar = progress_bar("training", steps, progress)
    with task.evaluating():
        for t in range(steps):
            idx = schedule.batches[t]
            batch = task.cast(take(data, idx), dtype)
            wb = w[idx].to(dtype)
            objective = partial(batch_objective(task, rest, batch, wd), wb=wb)
            g = grad(objective)(params)
            with torch.no_grad():
                value = float(objective(params)) if progress or t == steps - 1 else float("nan")
            if not all(torch.isfinite(v).all() for v in g.values()):
                raise NumericalError(f"the training loss gradient became NaN or inf at step {t} (batch "
                                     f"{idx[:5].tolist()}...); lower the learning rate")
            params = _step(schedule, params, g, state, state2, t + 1)
            result.losses.append(value)
            if callback is not None:
                callback(t + 1, params)
            if checkpoint_every and (t + 1) % checkpoint_every == 0:
                result.checkpoints.append(({k: v.clone() for k, v in params.items()}, schedule.lr))
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{value:.4g}")
    if bar is not None:
        bar.close()
    result.params = params
    return result


def replay_many(task: Task, params0: Mapping[str, Tensor], train: Any, schedule: Schedule, weights: Tensor,
                steps: int | None = None, callback: Callable[[int, Params], None] | None = None,
                rest: Mapping[str, Tensor] | None = None, batching: str = "auto") -> Params:
    """:func:`replay` for K weight vectors at once (``weights`` [K, N]), over the copies by ``vmap`` or a loop
    (``batching``; ``"auto"`` times both on the first step, see :mod:`ifscope.core.batching`); returns the parameters
    stacked ``[K, ...]`` and calls ``callback(t, stacked_params)`` after each step.

    Row k follows the same update rule as ``replay(..., weights=weights[k])``; the rows need not match an
    unbatched replay bit for bit (other kernels), so compare rows of the same call with each other."""
    data, steps = _prepare(schedule, train, steps)
    w = torch.as_tensor(weights)
    if w.dim() != 2 or w.shape[1] != len(data):
        raise ConfigError(f"weights must be [copies, {len(data)}], got shape {tuple(w.shape)}")
    k = len(w)
    params = {n: v.detach().unsqueeze(0).expand(k, *v.shape).clone() for n, v in params0.items()}
    dtype, rest, state, state2 = _start(task, params, rest)
    wd = schedule.weight_decay
    with task.evaluating():
        for t in range(steps):
            idx = schedule.batches[t]
            batch = task.cast(take(data, idx), dtype)
            # the loss, not every gradient entry, is checked each step: a pass over K parameter copies saved
            batching, (g, value) = choose(batching, replay_key(task), grad_and_value(batch_objective(task, rest, batch, wd)),
                                          (params, w[:, idx].to(dtype)))
            if not torch.isfinite(value).all():
                raise NumericalError(f"the training loss became NaN or inf at step {t}; lower the learning rate")
            params = _step(schedule, params, g, state, state2, t + 1)
            if callback is not None:
                callback(t + 1, params)
    return params


def replay_key(task: Task) -> tuple:
    """The key under which :func:`replay_many` remembers its measured batching for this task's model."""
    return (id(task.model), "replay")


def _step(s: Schedule, params: Params, g: Params, m: Params, v: Params, t: int) -> Params:
    out = {}
    for k, p in params.items():
        if s.optimizer == "sgd":
            out[k] = torch.add(p, g[k], alpha=-s.lr)  # one pass over the parameters, not two
        elif s.optimizer == "momentum":
            m[k] = s.momentum * m[k] + g[k]
            out[k] = p - s.lr * m[k]
        else:
            b1, b2 = s.betas
            m[k] = b1 * m[k] + (1 - b1) * g[k]
            v[k] = b2 * v[k] + (1 - b2) * g[k] * g[k]
            mhat, vhat = m[k] / (1 - b1**t), v[k] / (1 - b2**t)
            out[k] = p - s.lr * mhat / (_sqrt0(vhat) + s.eps)
    return out


def _sqrt0(x: Tensor) -> Tensor:
    """``√x`` for ``x ≥ 0`` with derivative 0 (not inf) at 0, so that reverse passes through Adam stay finite where a
    coordinate's gradient has been exactly zero (its second moment is then second order in any perturbation)."""
    positive = x > 0
    return torch.where(positive, torch.where(positive, x, torch.ones_like(x)).sqrt(), torch.zeros_like(x))


def train(task: Task, train_data: Any, *, steps: int, lr: float, optimizer: str = "sgd", batch_size: int | None = None,
          weight_decay: float = 0.0, momentum: float = 0.9, seed: int = 0, params0: Mapping[str, Tensor] | None = None,
          weights: Tensor | None = None, dtype: torch.dtype | None = None, checkpoint_every: int | None = None,
          progress: bool = False) -> TrainResult:
    """Train the task's selected parameters for ``steps`` steps from the model's (or ``params0``) values; record the schedule."""
    data = as_dataset(train_data, "train")
    schedule = Schedule(make_batches(len(data), steps, batch_size, seed), lr=float(lr), optimizer=optimizer,
                        momentum=momentum, weight_decay=weight_decay)
    params, rest = task.state(dtype)
    if params0 is not None:
        params = {k: v.detach().clone() for k, v in params0.items()}
    return replay(task, params, data, schedule, weights=weights, checkpoint_every=checkpoint_every,
                  progress=progress, rest=rest)


def load_params(model: nn.Module, params: Mapping[str, Tensor]) -> nn.Module:
    """Copy ``params`` into ``model``'s parameters of the same names (in place) and return the model."""
    named = dict(model.named_parameters())
    with torch.no_grad():
        for k, v in params.items():
            named[k].copy_(v.to(named[k].dtype))
    return model
