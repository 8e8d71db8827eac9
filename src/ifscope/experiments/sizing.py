"""Experiments sized to a time budget: the sizes a user left out chosen from measured unit costs.

One engine for every experiment (:func:`shrink`): a command states its wanted sizes (a frozen dataclass), how many
seconds a choice of sizes costs (a pure function of the measured unit costs) and an ordered list of :class:`Move` s,
each shrinking one size one notch; the engine keeps the wanted sizes when they fit and otherwise takes the first
move that still applies to a size the user did not set, again and again, until the prediction fits or nothing is
left to shrink (then it says so); a move that would save almost nothing (a size that costs nothing) is passed
over. :class:`Chosen` is what every command announces on stderr and stores as ``chosen``.

Fade and diagnosis (here): the cost is dominated by two replays whose unit costs are measured on the model at hand
(:mod:`ifscope.experiments.measure`): the ground truth, ``replicas × T_max`` steps of continued training (one per
re-weighted id, plus the unchanged run, its noise-floor replay and the TracIn trajectory), and the exact reference
``unrolled``, whose reverse sweep carries one adjoint row per query and horizon for ``T`` steps, ``n_queries × ΣT``
row-steps. The moves, in order: the references' precision (float64 → float32), the ids and queries to half (not
below 20 and 10), the largest horizons (not below 3 of them and T = 30), the ids and queries to 10 and 5, then the
horizons to 2. Correction and LDS: :mod:`ifscope.experiments.sizing_eval`. Everything here is pure.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

DEFAULT_BUDGET_S = 60.0  # seconds of the sized work (replays, corrections, retrainings) when no --budget-s is given
SIZED = ("n_ids", "n_queries", "steps", "reference_dtype")
SOFT_FLOORS = {"n_ids": 20, "n_queries": 10}   # halved down to these first
HARD_FLOORS = {"n_ids": 10, "n_queries": 5}    # then down to these
MIN_SAVING = 0.01  # a move that saves less than this fraction of the predicted seconds is not taken
MIN_T, MIN_POINTS = 30, 3                       # the grid keeps T_max ≥ MIN_T and MIN_POINTS horizons until last


@dataclass(frozen=True)
class Move:
    """One notch of shrinking: ``smaller(sizes)`` is the new value of the size ``name``, or None where this move no
    longer applies."""

    name: str
    smaller: Callable[[Any], Any]


def halve(name: str, floor: int) -> Move:
    """Halve the integer size ``name``, not below ``floor`` (no move once it is there)."""
    return Move(name, lambda s: max(floor, getattr(s, name) // 2) if getattr(s, name) > floor else None)


@dataclass
class Chosen:
    """The sizes a budget chose (``sizes``, a dataclass of the command's sized options), the predicted seconds of
    the sized work, the measured unit costs (``costs``: ``as_dict()`` and ``describe()``), which sizes the user fixed
    and why the others are what they are; ``as_dict`` is the ``chosen`` entry of ``--json``."""

    sizes: Any
    wanted: Any
    predicted_s: float
    budget_s: float
    costs: Any
    explicit: list[str]
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {**_plain(self.sizes), "budget_s": self.budget_s, "predicted_s": finite(self.predicted_s),
                "measured": self.costs.as_dict(), "explicit": self.explicit, "reason": self.reason,
                "wanted": _plain(self.wanted)}

    def __str__(self) -> str:
        if math.isnan(self.predicted_s):  # every size given: nothing measured
            return f"sizes as given: {self.sizes.describe()} (no --budget-s sizing: {self.reason})"
        return (f"sized to a {self.budget_s:g} s budget: {self.sizes.describe()} (measured: {self.costs.describe()}; "
                f"predicted {_seconds(self.predicted_s)} s; {self.reason})")


def shrink(wanted: Any, seconds: Callable[[Any], float], moves: Sequence[Move], budget_s: float,
           explicit: Collection[str], costs: Any) -> Chosen:
    """The largest sizes within ``budget_s``: ``wanted`` when ``seconds(wanted)`` fits, else the first applicable
    move of ``moves`` taken repeatedly (never on a size named in ``explicit``, nor one that saves less than
    ``MIN_SAVING`` of the predicted seconds: a size that costs nothing is not cut) until it fits or none applies."""
    names = [f.name for f in dataclasses.fields(wanted)]
    explicit = sorted(set(explicit) & set(names))
    s = wanted
    while (now := seconds(s)) > budget_s:
        for move in moves:
            value = None if move.name in explicit else move.smaller(s)
            if value is None:
                continue
            smaller = dataclasses.replace(s, **{move.name: value})
            if seconds(smaller) <= now * (1 - MIN_SAVING):
                s = smaller
                break
        else:
            break
    predicted = seconds(s)
    if s == wanted:
        reason = "everything asked fits" if predicted <= budget_s else "over budget, but every size was given"
    else:
        reason = ("shrunk to fit: " if predicted <= budget_s else "over budget at the smallest sizes: ") + \
            "; ".join(_summary(wanted, s))
    return Chosen(s, wanted, predicted, float(budget_s), costs, list(explicit), reason)


def as_given(wanted: Any, budget_s: float | None, costs: Any) -> Chosen:
    """What is announced when the user set every size: nothing measured, nothing changed."""
    budget = DEFAULT_BUDGET_S if budget_s is None else float(budget_s)
    return Chosen(wanted, wanted, float("nan"), budget, costs, sorted(f.name for f in dataclasses.fields(wanted)),
                  "every size was given: nothing measured")


def _seconds(x: float) -> str:
    return f"{x:.0f}" if x >= 10 else f"{x:.2g}"


def _summary(wanted: Any, s: Any) -> list[str]:
    out = []
    for f in dataclasses.fields(wanted):
        a, b = getattr(wanted, f.name), getattr(s, f.name)
        if a != b:
            out.append(f"T_max {max(a)} -> {max(b)}" if isinstance(a, tuple) else f"{f.name} {a} -> {b}")
    return out


def _plain(sizes: Any) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(sizes).items()}


def finite(x: float) -> float | None:
    return x if math.isfinite(x) else None  # JSON has no NaN: nothing measured


def explicit_sizes(given: Mapping[str, Any], sized: Sequence[str] = SIZED) -> list[str]:
    """The sized options the user set (a value that is not None), e.g. from the command line's flags."""
    return [k for k in sized if given.get(k) is not None]


@dataclass(frozen=True)
class Sizes:
    """What a fade or diagnosis runs on: ``n_ids`` re-weighted training examples, ``n_queries`` tracked test
    examples, the horizons ``steps`` and the precision of the exact reference (``reference_dtype``)."""

    n_ids: int
    n_queries: int
    steps: tuple[int, ...]
    reference_dtype: str

    def replace(self, **changes: Any) -> Sizes:
        return dataclasses.replace(self, **changes)

    def describe(self) -> str:
        return (f"{self.n_ids} ids x {self.n_queries} queries, T = {','.join(map(str, self.steps))}, references in "
                f"{self.reference_dtype}")


@dataclass(frozen=True)
class Costs:
    """Measured seconds: ``step_s`` one step of one ground-truth replica (batched as the truth runs), ``row_s[dtype]``
    one reverse step of ``unrolled`` per adjoint row (query × horizon) in that precision (infinite where the model
    cannot run it: ``failed[dtype]`` says why)."""

    step_s: float
    row_s: Mapping[str, float] = field(default_factory=dict)
    failed: Mapping[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"replay_step_s": finite(self.step_s),
                "unrolled_row_step_s": {k: finite(v) for k, v in self.row_s.items()},
                **({"failed": dict(self.failed)} if self.failed else {})}

    def describe(self) -> str:
        rows = ", ".join(f"{k} {v * 1e3:.2g} ms" for k, v in self.row_s.items())
        return f"a replay step {self.step_s * 1e3:.2g} ms per replica" + (", an unrolled row-step " + rows if rows
                                                                           else "")


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


def _drop_horizon(points: int, t_min: int = 0) -> Move:
    """Drop the largest horizon while more than ``points`` remain and the next largest is at least ``t_min``."""
    return Move("steps", lambda s: s.steps[:-1] if len(s.steps) > points and s.steps[-2] >= t_min else None)


def fade_moves(costs: Costs, float32: bool) -> list[Move]:
    """The order of the module's docstring; float32 only where allowed and measured cheaper than float64."""
    cheaper = costs.row_s.get("float32", float("inf")) < costs.row_s.get("float64", 0.0)
    precision = Move("reference_dtype",
                     lambda s: "float32" if float32 and cheaper and s.reference_dtype == "float64" else None)
    return [precision, *(halve(k, v) for k, v in SOFT_FLOORS.items()), _drop_horizon(MIN_POINTS, MIN_T),
            *(halve(k, v) for k, v in HARD_FLOORS.items()), _drop_horizon(2)]


def choose(wanted: Sizes, costs: Costs, workload: Workload, budget_s: float,
           explicit: Collection[str] = ()) -> Chosen:
    """:func:`shrink` of a fade's or diagnosis' sizes by :func:`fade_moves` on the workload's predicted seconds."""
    chosen = shrink(wanted, lambda s: workload.seconds(s, costs), fade_moves(costs, workload.float32), budget_s,
                    explicit, costs)
    if costs.failed:
        chosen.reason += "; unrolled cannot run in " + "; ".join(f"{k} ({v})" for k, v in costs.failed.items())
    return chosen
