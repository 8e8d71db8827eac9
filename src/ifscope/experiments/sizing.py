"""Experiments sized to a time budget: ids, queries, horizons T and the reference precision chosen from measured costs.

The cost of a fade or a diagnosis is dominated by two replays whose unit costs are measured on the model at hand
(:mod:`ifscope.experiments.measure`): the ground truth, ``replicas × T_max`` steps of continued training (one per
re-weighted id, plus the unchanged run, its noise-floor replay and the TracIn trajectory), and the exact reference
``unrolled``, whose reverse sweep carries one adjoint row per query and horizon for ``T`` steps, ``n_queries × ΣT``
row-steps. ``choose`` keeps the wanted sizes when they fit and otherwise shrinks, in this order, what the user did
not set: the references' precision (float64 → float32), the ids and queries to half (not below 20 and 10), the
largest horizons (not below 3 of them and T = 30), the ids and queries to 10 and 5, then the horizons to 2.
Everything here is pure: the measured costs come in, the chosen sizes and the reason come out.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_BUDGET_S = 60.0  # seconds of replays (ground truth and unrolled) when no --budget-s is given
SIZED = ("n_ids", "n_queries", "steps", "reference_dtype")
SOFT_FLOORS = {"n_ids": 20, "n_queries": 10}   # halved down to these first
HARD_FLOORS = {"n_ids": 10, "n_queries": 5}    # then down to these
MIN_T, MIN_POINTS = 30, 3                       # the grid keeps T_max ≥ MIN_T and MIN_POINTS horizons until last


@dataclass(frozen=True)
class Sizes:
    """What an experiment runs on: ``n_ids`` re-weighted training examples, ``n_queries`` tracked test examples,
    the horizons ``steps`` and the precision of the exact reference (``reference_dtype``)."""

    n_ids: int
    n_queries: int
    steps: tuple[int, ...]
    reference_dtype: str

    def replace(self, **changes: Any) -> Sizes:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Costs:
    """Measured seconds: ``step_s`` one step of one ground-truth replica (batched as the truth runs), ``row_s[dtype]``
    one reverse step of ``unrolled`` per adjoint row (query × horizon) in that precision (infinite where the model
    cannot run it: ``failed[dtype]`` says why)."""

    step_s: float
    row_s: Mapping[str, float] = field(default_factory=dict)
    failed: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Workload:
    """How sizes turn into replays: ``replicas(n_ids)`` ground-truth trajectories of ``T_max`` steps; ``unrolled``:
    whether the exact reference's reverse sweep runs (``n_queries × ΣT`` row-steps); ``float32``: whether the
    references may run in float32 (not with ``exact``, whose dense solve needs float64 on a near-singular Hessian)."""

    replicas: Callable[[int], int]
    unrolled: bool = True
    float32: bool = True

    def seconds(self, s: Sizes, costs: Costs) -> float:
        """Predicted seconds of the replays: ``step_s · replicas · T_max + row_s · n_queries · ΣT``."""
        truth = costs.step_s * self.replicas(s.n_ids) * max(s.steps)
        if not self.unrolled:
            return truth
        row = costs.row_s.get(s.reference_dtype, max(costs.row_s.values(), default=0.0))
        return truth + row * s.n_queries * sum(s.steps)


def fade_workload(methods: Collection[str]) -> Workload:
    """The fade of ``methods``: one replica per id, the unchanged run, its noise-floor replay and (with TracIn) its
    trajectory; the unrolled sweep when ``unrolled`` is a method."""
    return Workload(lambda n_ids: n_ids + 2 + int("tracin" in methods), "unrolled" in methods, "exact" not in methods)


def diagnose_workload(epsilon_ids: int, n_epsilons: int, unrolled: bool = True) -> Workload:
    """The diagnosis: one replay of the removals, ``epsilon_ids`` of them up-weighted by each of ``n_epsilons`` ε
    (the reference ε included), the unchanged run and its noise floor."""
    return Workload(lambda n_ids: n_ids + 2 + n_epsilons * min(epsilon_ids, n_ids), unrolled)


@dataclass
class Chosen:
    """The sizes a budget chose, the predicted seconds of their replays, the measured unit costs, which sizes the
    user fixed and why the others are what they are; ``as_dict`` is the ``chosen`` entry of ``--json``."""

    sizes: Sizes
    wanted: Sizes
    predicted_s: float
    budget_s: float
    costs: Costs
    explicit: list[str]
    reason: str

    def as_dict(self) -> dict[str, Any]:
        s = self.sizes
        return {"n_ids": s.n_ids, "n_queries": s.n_queries, "steps": list(s.steps),
                "reference_dtype": s.reference_dtype, "budget_s": self.budget_s, "predicted_s": _finite(self.predicted_s),
                "measured": {"replay_step_s": _finite(self.costs.step_s),
                             "unrolled_row_step_s": {k: _finite(v) for k, v in self.costs.row_s.items()},
                             **({"failed": dict(self.costs.failed)} if self.costs.failed else {})},
                "explicit": self.explicit, "reason": self.reason,
                "wanted": {"n_ids": self.wanted.n_ids, "n_queries": self.wanted.n_queries,
                           "steps": list(self.wanted.steps), "reference_dtype": self.wanted.reference_dtype}}

    def __str__(self) -> str:
        s, c = self.sizes, self.costs
        if math.isnan(c.step_s):  # every size given: nothing measured
            return (f"sizes as given: {s.n_ids} ids x {s.n_queries} queries, T = {','.join(map(str, s.steps))}, "
                    f"references in {s.reference_dtype} (no --budget-s sizing: {self.reason})")
        rows = ", ".join(f"{k} {v * 1e3:.2g} ms" for k, v in c.row_s.items())
        return (f"sized to a {self.budget_s:g} s budget: {s.n_ids} ids x {s.n_queries} queries, T = "
                f"{','.join(map(str, s.steps))}, references in {s.reference_dtype} (measured: a replay step "
                f"{c.step_s * 1e3:.2g} ms per replica{', an unrolled row-step ' + rows if rows else ''}; predicted "
                f"{self.predicted_s:.0f} s; {self.reason})")


def _halved(s: Sizes, free: Collection[str], floors: Mapping[str, int]) -> Sizes | None:
    """``s`` with the first free size of ``floors`` above its floor halved (not below it), or None."""
    for name, low in floors.items():
        value = getattr(s, name)
        if name in free and value > low:
            return s.replace(**{name: max(low, value // 2)})
    return None


def _smaller(s: Sizes, free: Collection[str], costs: Costs, float32: bool) -> Sizes | None:
    """The next smaller sizes in the order of the module's docstring, or None when nothing free is left to shrink."""
    if float32 and "reference_dtype" in free and s.reference_dtype == "float64" and \
            costs.row_s.get("float32", float("inf")) < costs.row_s.get("float64", 0.0):
        return s.replace(reference_dtype="float32")
    soft = _halved(s, free, SOFT_FLOORS)
    if soft is not None:
        return soft
    if "steps" in free and len(s.steps) > MIN_POINTS and s.steps[-2] >= MIN_T:
        return s.replace(steps=s.steps[:-1])
    hard = _halved(s, free, HARD_FLOORS)
    if hard is not None:
        return hard
    return s.replace(steps=s.steps[:-1]) if "steps" in free and len(s.steps) > 2 else None


def choose(wanted: Sizes, costs: Costs, workload: Workload, budget_s: float,
           explicit: Collection[str] = ()) -> Chosen:
    """The largest sizes within ``budget_s``: ``wanted`` when it fits, else :func:`_smaller` taken repeatedly (never
    changing a size named in ``explicit``) until the prediction fits or nothing is left to shrink (then it says so)."""
    explicit = sorted(set(explicit) & set(SIZED))
    free = [k for k in SIZED if k not in explicit]
    s = wanted
    while workload.seconds(s, costs) > budget_s:
        smaller = _smaller(s, free, costs, workload.float32)
        if smaller is None:
            break
        s = smaller
    predicted = workload.seconds(s, costs)
    if s == wanted:
        reason = "everything asked fits" if predicted <= budget_s else "over budget, but every size was given"
    else:
        reason = ("shrunk to fit: " if predicted <= budget_s else "over budget at the smallest sizes: ") + \
            "; ".join(_summary(wanted, s))
    if costs.failed:
        reason += "; unrolled cannot run in " + "; ".join(f"{k} ({v})" for k, v in costs.failed.items())
    return Chosen(s, wanted, predicted, float(budget_s), costs, list(explicit), reason)


def _summary(wanted: Sizes, s: Sizes) -> list[str]:
    out = []
    for name in ("n_ids", "n_queries", "reference_dtype"):
        if getattr(wanted, name) != getattr(s, name):
            out.append(f"{name} {getattr(wanted, name)} -> {getattr(s, name)}")
    if wanted.steps != s.steps:
        out.append(f"T_max {max(wanted.steps)} -> {max(s.steps)}")
    return out


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None  # JSON has no NaN: nothing measured


def explicit_sizes(given: Mapping[str, Any]) -> list[str]:
    """The sized options the user set (a value that is not None), e.g. from the command line's flags."""
    return [k for k in SIZED if given.get(k) is not None]
