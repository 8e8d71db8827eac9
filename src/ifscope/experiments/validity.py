"""The per-query horizon of validity: up to which T a checkpoint score still ranks the training set like the exact one.

For a query q and a grid of horizons, ``ρ_T(q)`` is the Spearman correlation over the whole training set between a
checkpoint method's scores (at T, for horizon-aware methods) and ``unrolled``'s exact ``−N ∂ℓ(q, θ_T)/∂wᵢ``. The
horizon of validity is the largest T of the grid up to which ``ρ_T(q) ≥ threshold`` at every T (None when it fails
at the smallest). The exact side needs no retraining: one reverse pass per block of queries (docs/science.md, 'Unrolled influence').
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..core.errors import ConfigError
from ..core.krylov import largest_step
from ..core.progress import progress_bar
from ..core.stats import spearman
from ..influence import Influence
from ..truth.groundtruth import GroundTruth
from ..truth.training import Schedule
from .fade import method_label

THRESHOLD = 0.9


@dataclass
class ValidityHorizon:
    """``spearman[q][k]`` = ρ between ``method`` and ``unrolled`` for query q at ``steps[k]``; ``horizon[q]`` the
    largest T of the grid up to which ρ ≥ ``threshold`` everywhere (None: not even at the smallest T)."""

    method: str
    steps: list[int]
    threshold: float
    spearman: list[list[float]]
    horizon: list[int | None]
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        """Median / min / max horizon (None: below the grid; it ranks lowest), queries valid at every T and at none,
        and per T the fraction of queries at or above the threshold and the mean ρ."""
        rho = np.asarray(self.spearman, dtype=float).reshape(len(self.horizon), len(self.steps))
        below = sorted(0 if h is None else h for h in self.horizon)
        median = below[(len(below) - 1) // 2]  # the lower median: always a T of the grid (or None)
        return {"median": median or None, "min": below[0] or None, "max": below[-1] or None, "valid_at_every_T": int(sum(h == self.steps[-1] for h in self.horizon)),
                "valid_at_no_T": int(sum(h is None for h in self.horizon)),
                "fraction_valid": (rho >= self.threshold).mean(0).tolist(), "mean_spearman": rho.mean(0).tolist()}

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "reference": "unrolled", "steps": self.steps, "threshold": self.threshold,
                "per_query": self.horizon, "spearman": self.spearman, "summary": self.summary(),
                "seconds": self.seconds}


def horizon_of(rho: Sequence[float], steps: Sequence[int], threshold: float = THRESHOLD) -> int | None:
    """The largest ``steps[k]`` with ``rho[j] ≥ threshold`` for every ``j ≤ k``; None when ``rho[0]`` is below it."""
    last = None
    for t, r in zip(steps, rho):
        if not r >= threshold:  # NaN (a constant score row) counts as disagreement
            break
        last = int(t)
    return last


def per_query_spearman(a: Tensor, b: Tensor) -> Tensor:
    """``[n_steps, n_queries]`` Spearman over the last axis of two ``[n_steps, n_queries, n]`` score tensors."""
    x, y = a.double().numpy(), b.double().numpy()
    return torch.tensor([[spearman(x[k, q], y[k, q]) for q in range(x.shape[1])] for k in range(x.shape[0])],
                        dtype=torch.float64)


def unrolled_reference(influence: Influence, horizon: int, **options: Any) -> Influence:
    """``method="unrolled"`` on the same task, data and shared options; ``lr`` defaults to the method's own step
    (horizon-aware methods), else 1/λ_max of the run's spectrum."""
    est = influence.estimator if influence.estimator is not None else influence.fit().estimator
    options.setdefault("lr", getattr(est, "lr", None) or largest_step(influence.spectrum()))
    return Influence(influence.task, influence.train, method="unrolled", horizon=int(horizon),
                     progress=influence.show_progress, **influence.shared_config, **options)


def validity_horizon(influence: Influence, queries: Any, steps: Sequence[int], reference: Influence | None = None,
                     threshold: float = THRESHOLD, schedule: Schedule | None = None, exact: Tensor | None = None,
                     train_ids: Tensor | None = None, **unrolled_options: Any) -> ValidityHorizon:
    """Per query, the horizon of validity of ``influence`` (a checkpoint method) against ``reference`` (an
    ``unrolled`` Influence; default: one built by :func:`unrolled_reference` with ``unrolled_options``), on the
    continued training ``schedule`` (default: the reference's own), the Spearman taken over ``train_ids`` (default:
    the whole training set); ``exact``: the reference's scores over those ids at ``steps`` on that schedule, when
    already computed."""
    t0 = time.time()
    steps = sorted({int(t) for t in steps})
    if not steps or steps[0] < 1:
        raise ConfigError(f"steps must be positive integers, got {steps}")
    if not 0 < threshold <= 1:
        raise ConfigError(f"threshold must lie in (0, 1], got {threshold!r}")
    if influence.method == "unrolled":
        raise ConfigError("the horizon of validity compares a checkpoint method with unrolled; give another method")
    if reference is None:
        reference = unrolled_reference(influence, max(steps), **unrolled_options)
    elif unrolled_options:
        raise ConfigError(f"options {sorted(unrolled_options)} configure a default reference; the given reference "
                          "has its own")
    if reference.method != "unrolled":
        raise ConfigError(f"the reference must be an Influence with method='unrolled', not {reference.method!r}")
    if schedule is None:
        schedule = (reference.estimator if reference.estimator is not None else reference.fit().estimator).schedule
    ids = torch.arange(influence.n_train) if train_ids is None else train_ids
    if exact is None:
        exact = reference.scores_over_horizons(queries, ids, steps, schedule)
    approx = influence.scores_over_horizons(queries, ids, steps, schedule)
    rho = per_query_spearman(approx, exact).T  # [n_queries, n_steps]
    return ValidityHorizon(method_label(influence), steps, float(threshold), rho.tolist(),
                           [horizon_of(r, steps, threshold) for r in rho.tolist()], time.time() - t0)


def validity_sample(n_train: int, size: int, seed: int) -> Tensor | None:
    """The sorted training positions a horizon of validity ranks: a seeded sample of ``size`` of the ``n_train``
    examples (its cost then does not grow with the training set), or None (all of them) when ``size`` is 0 or ≥
    ``n_train``."""
    if size <= 0 or size >= n_train:
        return None
    return torch.randperm(n_train, generator=torch.Generator().manual_seed(seed + 11))[:size].sort().values


def fade_validity(methods: Mapping[str, Influence], queries: Any, steps: Sequence[int], schedule: Schedule | None,
                  threshold: float = THRESHOLD, progress: bool = True,
                  train_ids: Tensor | None = None) -> dict[str, dict[str, Any]]:
    """The fade's ``validity_horizon``: for each checkpoint method of ``methods`` (all but ``unrolled`` and the
    trajectory method ``tracin``), its horizon of validity against ``methods["unrolled"]`` on ``schedule``, ranked
    over ``train_ids`` (default: the whole training set)."""
    reference = methods["unrolled"]
    names = [name for name, inf in methods.items() if inf.method not in ("unrolled", "tracin")]
    ids = torch.arange(reference.n_train) if train_ids is None else train_ids
    bar = progress_bar(f"horizon of validity vs unrolled (scores over {len(ids)} training examples)", len(names) + 1,
                       progress)
    bar.set_postfix(method="unrolled")
    exact = None if schedule is None else reference.scores_over_horizons(  # once, for every method
        queries, ids, sorted({int(t) for t in steps}), schedule)
    bar.update(1)
    out = {}
    for name in names:
        bar.set_postfix(method=name)
        out[name] = {**validity_horizon(methods[name], queries, steps, reference=reference, threshold=threshold,
                                        schedule=schedule, exact=exact, train_ids=ids).to_dict(), "n_train": len(ids)}
        bar.update(1)
    bar.close()
    return out


def validity_lines(validity: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Human summary of :func:`fade_validity`: per method, the median and range of the per-query horizon."""
    lines = []
    for name, v in validity.items():
        s, n = v["summary"], len(v["per_query"])
        if not lines:
            lines.append(f"horizon of validity vs unrolled (per-query Spearman >= {v['threshold']} over the training "
                         f"set; None = not even at T={v['steps'][0]}):")
        lines.append(f"{name:>16}: median {s['median']}, min {s['min']}, max {s['max']}; valid at every T for "
                     f"{s['valid_at_every_T']}/{n} queries, at none for {s['valid_at_no_T']}/{n}")
    return lines


@dataclass
class FirstOrder:
    """Assumption 5 measured: the actual change of the query losses against the exact first-order prediction
    (``unrolled``), per T: ``slope`` of actual on predicted (1 = linear), ``pearson``, and ``remainder`` =
    ‖actual − predicted‖/‖actual‖ (the share of the change that first order misses)."""

    steps: list[int]
    mode: str
    n_ids: int
    n_queries: int
    slope: list[float]
    pearson: list[float]
    remainder: list[float]

    def to_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "mode": self.mode, "n_ids": self.n_ids, "n_queries": self.n_queries,
                "slope": self.slope, "pearson": self.pearson, "remainder": self.remainder}


FIRST_ORDER_IDS = 40


def first_order(reference: Influence, queries: Any, steps: Sequence[int], ids: Sequence[int] | Tensor | None = None,
                mode: str = "remove", epsilon: float = 0.01, schedule: Schedule | None = None,
                n_ids: int = FIRST_ORDER_IDS, seed: int = 0, progress: bool = False,
                truth: GroundTruth | None = None) -> FirstOrder:
    """Actual vs ``unrolled`` (``reference``) on ``ids`` (default: a seeded sample of ``n_ids`` training examples)
    after each T of ``steps`` of ``schedule`` (default: the reference's own continued training); ``truth`` a ground
    truth already computed for these ids, steps, mode and schedule."""
    from .fade import fade_curve
    if reference.method != "unrolled":
        raise ConfigError(f"the first-order check compares the actual change with method='unrolled', not "
                          f"{reference.method!r}")
    if ids is None:
        if n_ids < 2:
            raise ConfigError(f"n_ids must be at least 2, got {n_ids}")
        gen = torch.Generator().manual_seed(seed)
        ids = torch.randperm(reference.n_train, generator=gen)[: n_ids].sort().values
    if schedule is None:
        schedule = (reference.estimator if reference.estimator is not None else reference.fit().estimator).schedule
    res = fade_curve({"unrolled": reference}, queries, ids, steps=steps, mode=mode, epsilon=epsilon,
                     schedule=schedule, truth=truth, progress=progress)
    pred, actual = res.predicted["unrolled"], res.truth.delta.double()
    remainder = [float((actual[k] - pred[k]).norm() / actual[k].norm()) if actual[k].norm() > 0 else float("nan")
                 for k in range(len(res.steps))]
    row = res.methods["unrolled"]
    return FirstOrder(res.steps, mode, int(actual.shape[1]), int(actual.shape[2]), row["slope"], row["pearson"],
                      remainder)
