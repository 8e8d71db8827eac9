"""``correct`` and ``lds`` sized to a time budget by the one engine of :mod:`ifscope.experiments.sizing`.

A correction's cost, per query and selection rule (influence and each baseline): ``steps`` SGD steps on ``k +
anchor`` examples, each followed by its checks (is the query fixed, with ``stop_when_fixed``; the guard sample, with
``guard``), then one judging of the query and the held-out set; plus ranking the query (one score). So
``seconds = corrections · methods · (steps · (step_s + check_s) + eval_s) + queries · score_s``, with one
correction per query (one in all with ``group``); early stops only make it cheaper. The moves: the queries (the
mistakes corrected) halved down to 10, the steps halved down to 5, then the queries down to 3.

LDS: ``subsets × seeds`` trainings from scratch (``retrain_s`` each, measured on one subset), or ``subsets × steps``
continued steps (``step_s`` per subset, batched as the outcomes run), plus each method's scores of the queries
(``score_s`` per query after a one-off ``setup_s``). The moves: the seeds down to 1, the subsets halved down to 50,
the queries down to 20, the subsets down to 10, the queries down to 10. The continued training's ``steps`` are never
cut: they are the horizon LDS is asked at (and the ``horizon`` method's T, fitted before anything is measured).
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from .sizing import Chosen, Move, finite, halve, shrink

CORRECT_SIZED = ("queries", "steps")
LDS_SIZED = ("subsets", "seeds", "queries")


@dataclass(frozen=True)
class CorrectSizes:
    """``queries`` mistakes corrected (the first ones), each by ``steps`` SGD steps."""

    queries: int
    steps: int

    def describe(self) -> str:
        return f"{self.queries} mistakes corrected, {self.steps} steps each"


@dataclass(frozen=True)
class CorrectCosts:
    """Measured seconds of a correction: ``step_s`` one SGD step, ``check_s`` the checks after a step, ``eval_s``
    judging the query and the held-out set once, ``score_s`` ranking one query; ``methods`` selection rules run per
    correction, ``group``: one correction for all queries."""

    step_s: float
    check_s: float
    eval_s: float
    score_s: float
    methods: int
    group: bool = False

    def seconds(self, s: CorrectSizes) -> float:
        corrections = 1 if self.group else s.queries
        return corrections * self.methods * (s.steps * (self.step_s + self.check_s) + self.eval_s) + \
            s.queries * self.score_s

    def as_dict(self) -> dict[str, Any]:
        return {"step_s": finite(self.step_s), "check_s": finite(self.check_s), "eval_s": finite(self.eval_s),
                "score_s": finite(self.score_s), "methods": self.methods, "group": self.group}

    def describe(self) -> str:
        return (f"an SGD step {self.step_s * 1e3:.2g} ms, its checks {self.check_s * 1e3:.2g} ms, judging "
                f"{self.eval_s * 1e3:.2g} ms, a score {self.score_s * 1e3:.2g} ms; {self.methods} selection rules")


def choose_correct(wanted: CorrectSizes, costs: CorrectCosts, budget_s: float,
                   explicit: Collection[str] = ()) -> Chosen:
    """The largest correction within ``budget_s`` (the moves of the module's docstring)."""
    moves = [halve("queries", 10), halve("steps", 5), halve("queries", 3)]
    return shrink(wanted, costs.seconds, moves, budget_s, explicit, costs)


@dataclass(frozen=True)
class LDSSizes:
    """``subsets`` random subsets, each trained ``seeds`` times from scratch (or continued ``steps`` steps:
    ``retrain``; neither is ever cut), and ``queries`` test examples."""

    subsets: int
    seeds: int
    queries: int
    steps: int
    retrain: str

    def describe(self) -> str:
        how = (f"x {self.seeds} seed(s) trained from scratch" if self.retrain == "scratch"
               else f"continued {self.steps} steps")
        return f"{self.subsets} subsets {how}, {self.queries} queries"


@dataclass(frozen=True)
class LDSCosts:
    """Measured seconds: ``retrain_s`` one training from scratch or ``step_s`` one continued step of one subset,
    ``score_s`` one query's scores after ``setup_s`` (the training embeddings, paid once per method), ``methods``."""

    retrain_s: float
    step_s: float
    score_s: float
    setup_s: float
    methods: int

    def seconds(self, s: LDSSizes) -> float:
        train = s.subsets * (s.seeds * self.retrain_s if s.retrain == "scratch" else s.steps * self.step_s)
        return train + self.methods * s.queries * self.score_s + (self.methods - 1) * self.setup_s

    def as_dict(self) -> dict[str, Any]:
        return {"retrain_s": finite(self.retrain_s), "step_s": finite(self.step_s),
                "score_s": finite(self.score_s), "setup_s": finite(self.setup_s), "methods": self.methods}

    def describe(self) -> str:
        unit = (f"a training {self.retrain_s:.3g} s" if math.isfinite(self.retrain_s) else f"a continued step {self.step_s * 1e3:.2g} ms per subset")
        return f"{unit}, a query's scores {self.score_s * 1e3:.2g} ms"


def choose_lds(wanted: LDSSizes, costs: LDSCosts, budget_s: float, explicit: Collection[str] = ()) -> Chosen:
    """The largest LDS within ``budget_s`` (the moves of the module's docstring)."""
    moves: list[Move] = [halve("seeds", 1), halve("subsets", 50), halve("queries", 20), halve("subsets", 10),
                         halve("queries", 10)]
    return shrink(wanted, costs.seconds, moves, budget_s, explicit, costs)
