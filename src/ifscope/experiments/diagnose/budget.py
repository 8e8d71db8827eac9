"""The diagnosis sized to a time budget: its ids, queries and horizons chosen from the measured cost of one replay
step and one unrolled step (:mod:`ifscope.experiments.sizing`); the references keep the ground truth's precision."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch
from torch import Tensor

from ...core.data import as_dataset, take
from ...truth.prefix import Prefix
from ..measure import size_to_budget
from ..sizing import Chosen, Sizes, diagnose_workload
from .common import Probe
from .truth import prefix, schedule, sweep_epsilons

TRUTH_CHECKS = ("divergence", "first_order")  # the checks that replay the continued training


def sized(p: Probe, checks: Sequence[str], q_order: Tensor, id_order: Tensor, epsilon_ids: int,
          budget_s: float | None, explicit: Sequence[str]) -> tuple[Probe, Chosen | None]:
    """``p`` with its ids (the first of ``id_order``), queries (the first of ``q_order``) and horizons cut to what
    ``budget_s`` affords, and what was chosen; ``p`` itself when no check replays the training."""
    if not set(checks) & set(TRUTH_CHECKS):
        return p, None
    dtype = str(p.truth_dtype).replace("torch.", "")
    wanted = Sizes(len(p.ids), len(p.q_idx), tuple(p.steps), dtype)
    cached = prefix(p)
    train, queries = cached.datasets
    n_eps = len(sweep_epsilons(p)) if p.sweep else 0
    work = replace(diagnose_workload(epsilon_ids if p.sweep else 0, n_eps), float32=False)
    continued = schedule(p)
    chosen = size_to_budget(cached.task, train, queries, continued, wanted, work, budget_s,
                            [*explicit, "reference_dtype"], p.truth_dtype)
    s = chosen.sizes
    if (s.n_ids, s.n_queries, s.steps) == (wanted.n_ids, wanted.n_queries, wanted.steps):
        return p, chosen
    q_idx = q_order[: s.n_queries].sort().values
    rows = torch.searchsorted(p.q_idx, q_idx)
    p = replace(p, q_idx=q_idx, ids=id_order[: s.n_ids].sort().values, steps=list(s.steps),
                eps_ids=id_order[: min(epsilon_ids, s.n_ids)].sort().values, cache={})
    p.cache["prefix"] = Prefix(cached.task, [train, take(as_dataset(queries, "queries"), rows)], cached.start,
                               cached.seconds)
    p.cache["schedule"] = continued.truncated(max(s.steps))
    return p, chosen
