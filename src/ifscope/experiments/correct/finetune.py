"""A correction's steps: SGD from the checkpoint on the selected examples, stopped when its queries are fixed or
before the guard sample loses too much."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from ...core.data import as_dataset, take
from ...core.judges import Judge
from ...core.params import Params
from ...influence import Influence
from ...truth.training import Schedule, replay
from .judged import evaluate
from .options import GUARD_BATCH, CorrectOptions


def finetune(inf: Influence, params0: Params, rest: Mapping[str, Tensor], data: Any, descend: Tensor,
             ascend: Tensor, anchor: Tensor, steps: int, lr: float,
             done: Callable[[Params], bool] | None = None,
             keeps: Callable[[Params], bool] | None = None) -> tuple[Params, int, bool]:
    """Up to ``steps`` SGD steps on ``(1/|S|)(Σ_descend ℓ − Σ_ascend ℓ) + (1/|A|) Σ_anchor ℓ + (wd/2)‖θ‖²`` with
    ``S = descend ∪ ascend``, stopping early once ``done(params)``, or before the first step after which
    ``keeps(params)`` fails; returns the parameters, the steps taken and whether ``keeps`` stopped it."""
    idx = torch.cat([descend, ascend, anchor])
    m, s = len(idx), len(descend) + len(ascend)
    weights = torch.zeros(len(data))
    weights[descend] = m / s
    weights[ascend] = -m / s
    if len(anchor):
        weights[anchor] = m / len(anchor)
    if done is None and keeps is None:
        schedule = Schedule([idx] * steps, lr=lr, optimizer="sgd", weight_decay=inf.config["weight_decay"])
        return replay(inf.task, params0, data, schedule, weights=weights, rest=rest).params, steps, False
    # plain SGD keeps no optimiser state, so single-step replays chain into exactly the same trajectory
    one = Schedule([idx], lr=lr, optimizer="sgd", weight_decay=inf.config["weight_decay"])
    params = params0
    for t in range(1, steps + 1):
        after = replay(inf.task, params, data, one, weights=weights, rest=rest).params
        if keeps is not None and not keeps(after):
            return params, t - 1, True
        params = after
        if done is not None and done(params):
            return params, t, False
    return params, steps, False


def guard(influence: Influence, judge: Judge, params0: Params, rest: Mapping[str, Tensor], opts: CorrectOptions
          ) -> Callable[[Tensor], Callable[[Params], bool]]:
    """``selected ↦ (params ↦ ok)``: whether the fraction of ``guard`` seeded training examples the judge counts as
    right (the same for every selection, less the ones it steps on) stays within ``guard_drop`` of the checkpoint's:
    a correction's locality check on data the user has, standing in for the held-out side effects."""
    pick = torch.randperm(influence.n_train, generator=torch.Generator().manual_seed(opts.seed + 2))[:opts.guard]
    wrong0 = evaluate(influence, judge, params0, rest, as_dataset(take(influence.train, pick.tolist()), "guard")).wrong

    def for_selection(selected: Tensor) -> Callable[[Params], bool]:
        keep = ~torch.isin(pick, selected)
        data = as_dataset(take(influence.train, pick[keep].tolist()), "guard")
        before = (~wrong0[keep]).float().mean()

        def keeps(params: Params) -> bool:  # checked after every step: one pass over the whole guard
            wrong = evaluate(influence, judge, params, rest, data, GUARD_BATCH).wrong
            return bool(before - (~wrong).float().mean() <= opts.guard_drop + 1e-9)
        return keeps
    return for_selection


def fixes_all(influence: Influence, judge: Judge, rest: Mapping[str, Tensor], member_data: Any
              ) -> Callable[[Params], bool]:
    """``params ↦`` whether the judge counts every member query right under ``params``."""
    def done(params: Params) -> bool:
        return not bool(evaluate(influence, judge, params, rest, member_data).wrong.any())
    return done
