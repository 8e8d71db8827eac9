"""Which training examples each correction steps on: influence's top-k, and the random baselines' draws of the
same sizes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ...core.data import as_dataset, take
from ...core.errors import ConfigError, DataError
from ...core.judges import Judge
from ...influence import Influence
from .judged import groups, predicted_groups
from .options import CorrectOptions

EMPTY = torch.empty(0, dtype=torch.long)


def choose(wrong0: Tensor, indices: Sequence[int] | None, include_correct: bool) -> tuple[list[int], list[int]]:
    """``(query positions to correct, positions skipped because already right)``."""
    n = len(wrong0)
    if indices is None:
        chosen = list(range(n)) if include_correct else wrong0.nonzero()[:, 0].tolist()
    else:
        chosen = list(dict.fromkeys(int(i) for i in indices))
        bad = [i for i in chosen if not 0 <= i < n]
        if bad:
            raise ConfigError(f"query indices {bad[:5]} are outside [0, {n}); give positions in the query set")
    skipped = [i for i in chosen if not include_correct and not bool(wrong0[i])]
    return [i for i in chosen if i not in skipped], skipped


def draw(pool: Tensor, count: int, gen: torch.Generator, exclude: Tensor | None = None,
         what: str = "random_same_class") -> Tensor:
    """``count`` distinct seeded draws from ``pool`` less ``exclude``."""
    if exclude is not None and len(exclude):
        pool = pool[~torch.isin(pool, exclude)]
    if len(pool) == 0:
        raise DataError(f"no training example is left to draw for {what} (none of the needed class, or all "
                        f"already selected); drop that option or lower k")
    return pool[torch.randperm(len(pool), generator=gen)[:count]]


def same_group_pools(influence: Influence, judge: Judge, q_data: Any, chosen: list[int]
                     ) -> list[tuple[Tensor, Tensor]] | None:
    """Per chosen query, ``(descend pool, ascend pool)`` of the same-group baseline: training examples of the
    query's group, and of its predicted group (a classifier's predicted class) or else of any other group; None when
    the judge defines no groups."""
    train_groups = groups(influence, judge, influence.train)
    sub = as_dataset(take(q_data, chosen), "queries")
    query_groups = groups(influence, judge, sub)
    if train_groups is None or query_groups is None:
        return None
    est = influence.estimator
    predicted = predicted_groups(influence, judge, est.ctx.params, est.ctx.rest, sub)
    everyone = torch.arange(influence.n_train)
    pools = []
    for r in range(len(chosen)):
        own = torch.isin(train_groups, query_groups[r:r + 1])
        other = torch.isin(train_groups, predicted[r:r + 1]) if predicted is not None else ~own
        pools.append((everyone[own], everyone[other]))
    return pools


def selections(influence: Influence, judge: Judge, q_data: Any, chosen: list[int], opts: CorrectOptions
               ) -> list[dict[str, tuple[Tensor, Tensor]]]:
    """Per correction, ``{rule: (descend on, ascend on)}``: influence's top-k by ``Influence.top`` (the summed
    ``Influence.scores`` for a group), and the random baselines' draws of the same sizes (``random_same_class``
    only where the judge defines groups)."""
    k, strategy = opts.k, opts.strategy
    sub = as_dataset(take(q_data, chosen), "queries")
    if opts.group:
        row = influence.scores(sub).sum(0, keepdim=True)
        tops = [(torch.topk(row[0], k).indices, torch.topk(-row[0], k).indices)]
    else:
        top = influence.top(sub, k=k)
        tops = list(zip(top.proponents, top.opponents))
    same = same_group_pools(influence, judge, q_data, chosen) if "random_same_class" in opts.baselines else None
    everyone = torch.arange(influence.n_train)
    gen = torch.Generator().manual_seed(opts.seed)
    out = []
    for r, (top_p, top_o) in enumerate(tops):
        pools = {"random": (everyone, everyone)}
        if same is not None:
            members = range(len(chosen)) if opts.group else [r]
            pools["random_same_class"] = (torch.cat([same[m][0] for m in members]).unique(),
                                          torch.cat([same[m][1] for m in members]).unique())
        sel = {"influence": (top_p if strategy != "opponents" else EMPTY,
                             top_o if strategy != "proponents" else EMPTY)}
        for name in ("random", "random_same_class"):
            if name in opts.baselines and name in pools:
                d = draw(pools[name][0], k, gen) if strategy != "opponents" else EMPTY
                a = draw(pools[name][1], k, gen, d) if strategy != "proponents" else EMPTY
                sel[name] = (d, a)
        out.append(sel)
    return out
