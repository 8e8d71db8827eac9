"""``correct`` sized to a time budget: one SGD step of a correction, its checks, one judging and one score measured
on the model at hand, and the mistakes corrected and steps chosen by :func:`ifscope.experiments.sizing_eval.
choose_correct` (the sizes the user did not set)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import torch

from ...core.data import as_dataset, take
from ...core.errors import NumericalError
from ...influence import Influence
from ..sizing import DEFAULT_BUDGET_S, Chosen, as_given
from ..sizing_eval import CORRECT_SIZED, CorrectCosts, CorrectSizes, choose_correct
from .finetune import finetune
from .judged import evaluate, judge_for
from .options import GUARD_BATCH, CorrectOptions
from .run import default_lr, fitted


def _seconds(work: Callable[[], Any]) -> float:
    """Seconds of ``work()`` after one untimed call (which pays one-off set-up: caches, vmap against loop)."""
    work()
    t0 = time.perf_counter()
    work()
    return time.perf_counter() - t0


def measure_correction(influence: Influence, test: Any, queries: Sequence[int], heldout: Sequence[int],
                       opts: CorrectOptions) -> CorrectCosts:
    """:class:`CorrectCosts` of this model: an SGD step on ``k + anchor`` training examples (``k`` more ascended with
    ``strategy="both"``), the per-step checks the options ask for, judging the first query and the held-out set, and
    ranking the first query by ``Influence.top`` (its first call, which pays the training embeddings once for the
    whole run, untimed)."""
    est = fitted(influence)
    judge = judge_for(influence, opts.tolerance)
    params0, rest = est.ctx.params, dict(est.ctx.rest)
    lr = default_lr(influence) if opts.lr is None else float(opts.lr)
    data = as_dataset(test, "test")
    member = as_dataset(take(data, list(queries[:1])), "queries")
    held = as_dataset(take(data, list(heldout)), "heldout") if heldout else None
    score_s = _seconds(lambda: influence.top(member, k=opts.k))
    order = torch.arange(influence.n_train)
    k = opts.k
    descend = order[:k] if opts.strategy != "opponents" else order[:0]
    ascend = order[k:2 * k] if opts.strategy != "proponents" else order[:0]
    anchor = order[len(descend) + len(ascend):][:opts.anchor]

    def step() -> None:
        try:
            finetune(influence, params0, rest, influence.train, descend, ascend, anchor, 1, lr)
        except NumericalError:  # a step too large for these examples: as costly as any other
            pass
    checks: list[Callable[[], Any]] = []
    if opts.stop_when_fixed:
        checks.append(lambda: evaluate(influence, judge, params0, rest, member))
    if opts.guard:
        guard = as_dataset(take(influence.train, range(min(opts.guard, influence.n_train))), "guard")
        checks.append(lambda: evaluate(influence, judge, params0, rest, guard, GUARD_BATCH))

    def judging() -> None:
        evaluate(influence, judge, params0, rest, member, values=True)
        if held is not None:
            evaluate(influence, judge, params0, rest, held)
    check_s = sum(_seconds(c) for c in checks)
    return CorrectCosts(_seconds(step), check_s, _seconds(judging), score_s, 1 + len(opts.baselines), opts.group)


def sized_correction(influence: Influence, test: Any, queries: list[int], heldout: list[int], opts: CorrectOptions,
                     budget_s: float | None, explicit: Sequence[str]
                     ) -> tuple[list[int], list[int], CorrectOptions, Chosen | None]:
    """The queries (the first of ``queries``), held-out positions (every other test example) and options a budget of
    ``budget_s`` seconds (None: the default) affords, and what it chose (None: no mistake to correct)."""
    if not queries:
        return queries, heldout, opts, None
    wanted = CorrectSizes(len(queries), opts.steps)
    if set(CORRECT_SIZED) <= set(explicit):
        return queries, heldout, opts, as_given(wanted, budget_s, CorrectCosts(*[float("nan")] * 4, 0, opts.group))
    costs = measure_correction(influence, test, queries, heldout, opts)
    chosen = choose_correct(wanted, costs, DEFAULT_BUDGET_S if budget_s is None else float(budget_s), explicit)
    n = chosen.sizes.queries
    return queries[:n], sorted([*heldout, *queries[n:]]), replace(opts, steps=chosen.sizes.steps), chosen
