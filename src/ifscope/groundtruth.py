"""Ground truth: the actual change of query losses after T steps of continued training with examples re-weighted."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .data import as_dataset, batch_len, take
from .errors import ConfigError
from .params import Params, ParamSpace
from .task import Task
from .training import Schedule, replay

MODES = ("remove", "upweight")


@dataclass
class GroundTruth:
    """``delta[t, i, q] = ℓ_q(θ_w(T_t)) − ℓ_q(θ(T_t))`` for training example ``ids[i]`` re-weighted to ``weight``;
    ``gap[t, i] = ‖θ_w(T_t) − θ(T_t)‖``; ``base[t, q]`` the unperturbed query losses."""

    steps: list[int]
    ids: Tensor
    weight: float          # the example's weight in the perturbed runs: 0 = removed, 1 + ε = up-weighted
    mode: str
    delta: Tensor          # [n_steps, n_ids, n_queries]
    gap: Tensor            # [n_steps, n_ids]
    base: Tensor           # [n_steps, n_queries]


def _query_losses(task: Task, params: Params, rest: Mapping[str, Tensor], queries: Any) -> Tensor:
    with torch.no_grad():
        return task.per_example_loss(params, rest, queries)


def _trajectory(task: Task, params0: Params, rest, train, schedule: Schedule, steps: Sequence[int], queries,
                weights: Tensor | None) -> tuple[Tensor, list[Tensor]]:
    """Query losses [n_steps, n_queries] and flat parameters at each step of ``steps``."""
    space = ParamSpace(params0)
    wanted = set(steps)
    losses: dict[int, Tensor] = {}
    flat: dict[int, Tensor] = {}

    def record(t: int, p: Params) -> None:
        if t in wanted:
            losses[t] = _query_losses(task, p, rest, queries)
            flat[t] = space.flatten(p)
    replay(task, params0, train, schedule, steps=max(steps), weights=weights, callback=record, rest=rest)
    return torch.stack([losses[t] for t in steps]), [flat[t] for t in steps]


def actual_changes(task: Task, train: Any, queries: Any, ids: Sequence[int] | Tensor, steps: Sequence[int],
                   schedule: Schedule, mode: str = "remove", epsilon: float = 0.01,
                   params0: Mapping[str, Tensor] | None = None, dtype: torch.dtype | None = None,
                   progress: bool = True) -> GroundTruth:
    """Replay ``schedule`` from the checkpoint once unchanged and once per id with that example removed (weight 0)
    or up-weighted (weight ``1 + epsilon``), recording query losses and the parameter gap at each ``T`` in ``steps``."""
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {MODES}, got {mode!r}")
    steps = sorted({int(t) for t in steps})
    if not steps or steps[0] < 1:
        raise ConfigError(f"steps must be positive integers, got {steps}")
    data = as_dataset(train, "train")
    n = len(data)
    ids_t = torch.as_tensor(ids, dtype=torch.long).reshape(-1)
    if len(ids_t) == 0 or int(ids_t.min()) < 0 or int(ids_t.max()) >= n:
        raise ConfigError(f"ids must be training positions in [0, {n}), got {ids_t.tolist()[:10]}")
    if max(steps) > len(schedule):
        raise ConfigError(f"the largest T ({max(steps)}) exceeds the schedule's {len(schedule)} steps")
    p0, rest = task.state(dtype)
    if params0 is not None:
        p0 = {k: v.detach().to(next(iter(p0.values())).dtype).clone() for k, v in params0.items()}
    q_data = as_dataset(queries, "queries")
    q_batch = task.cast(take(q_data, range(len(q_data))), next(iter(p0.values())).dtype)
    weight = 0.0 if mode == "remove" else 1.0 + float(epsilon)
    base, base_flat = _trajectory(task, p0, rest, data, schedule, steps, q_batch, None)
    delta = torch.empty(len(steps), len(ids_t), batch_len(q_batch), dtype=base.dtype)
    gap = torch.empty(len(steps), len(ids_t), dtype=base.dtype)
    bar = tqdm(total=len(ids_t), desc=f"ground truth ({mode}, T≤{max(steps)})", file=sys.stderr, leave=False,
               disable=not progress)
    for i, z in enumerate(ids_t.tolist()):
        w = torch.ones(n)
        w[z] = weight
        losses, flat = _trajectory(task, p0, rest, data, schedule, steps, q_batch, w)
        delta[:, i] = losses - base
        gap[:, i] = torch.stack([(a - b).norm() for a, b in zip(flat, base_flat)])
        bar.update(1)
    bar.close()
    return GroundTruth(steps, ids_t, weight, mode, delta, gap, base)
