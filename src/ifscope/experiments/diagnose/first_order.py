"""Assumption 5, the response is first order: the actual change of the query losses after each removal against the
exact first-order prediction (``unrolled`` through the same continued training, :func:`ifscope.experiments.validity.first_order`;
the fade's ``unrolled`` row): remainder ``‖actual − unrolled‖/‖actual‖``, slope and Pearson per T. Beside it, on a
subset of the ids, linearity in ε: removal and up-weighting by each ε against the smallest-ε response scaled to ε."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ...core.data import take
from ...core.stats import pearson
from ...truth.groundtruth import GroundTruth
from ..validity import first_order
from .common import (
    AGREE_HOLD,
    REMAINDER_HOLD,
    REMAINDER_QUESTION,
    Probe,
    as_json,
    fmt,
    grade,
    highest,
    lowest,
    schedule_info,
    worst,
)
from .exact import references
from .truth import removal, upweight

NAME = "first_order"
ADVICE = {
    "holds": "removing an example changes the query losses as the exact first-order prediction says: "
             "first-order magnitudes apply",
    "questionable": "the magnitude of a removal is off the first-order prediction, rankings survive: use rankings, "
                    "or small-ε up-weighting semantics for magnitudes",
    "violated": "even rankings of removals depart from the first-order prediction: read scores only for small "
                "up-weighting",
}


def measure(p: Probe) -> dict[str, Any]:
    gt, schedule = removal(p)
    exact = first_order(references(p)["unrolled"], take(p.qdata, p.q_idx), p.steps, ids=p.ids, mode="remove",
                        schedule=schedule, truth=gt, progress=p.inf.show_progress).to_dict()
    # a T at which no removed example was in a batch yet changes nothing: its figures are NaN and say nothing
    largest = highest(exact["remainder"])
    verdict = worst(grade(largest, REMAINDER_HOLD, REMAINDER_QUESTION))
    if verdict == "violated" and lowest(exact["pearson"]) >= AGREE_HOLD:
        verdict = "questionable"
    return dict(verdict=verdict, steps=list(p.steps), exact=exact, slope=exact["slope"],
                pearson_with_exact=exact["pearson"], remainder_vs_exact=exact["remainder"], max_remainder=largest,
                linear_up_to=linear_up_to(p.steps, {"exact": exact["remainder"]}), **epsilon_sweep(p, gt),
                schedule=schedule_info(schedule))


def epsilon_sweep(p: Probe, gt: GroundTruth) -> dict[str, Any]:
    """On ``p.eps_ids``: per ε (removal = −1) and T the remainder ``‖δ(ε) − (ε/ε₀)·δ(ε₀)‖ / ‖(ε/ε₀)·δ(ε₀)‖``
    against the smallest ε₀, the Pearson with that linear response, and R² of one line in ε through 0."""
    sub = p.ids if p.eps_ids is None else p.eps_ids
    reference = p.reference_epsilon
    rows = torch.searchsorted(p.ids, sub)

    def run(eps: float) -> torch.Tensor:
        return gt.delta[:, rows].double() if eps == -1.0 else upweight(p, eps).delta.double()
    ref = run(reference)
    eps_all = [-1.0] + [float(e) for e in p.epsilons if float(e) != -1.0]
    deltas = {e: run(e) for e in eps_all}
    remainder: dict[str, list[float]] = {}
    correlation: dict[str, list[float]] = {}
    for e, d in deltas.items():
        lin = ref * (e / reference)
        remainder[f"{e:g}"] = [float((d[t] - lin[t]).norm() / lin[t].norm().clamp_min(1e-300))
                               for t in range(len(p.steps))]
        correlation[f"{e:g}"] = [pearson(d[t], lin[t]) for t in range(len(p.steps))]
    xs = torch.tensor([reference] + eps_all, dtype=torch.float64)
    ys = torch.stack([ref] + [deltas[e] for e in eps_all])  # [n_eps, T, ids, queries]
    slope = (xs[:, None, None, None] * ys).sum(0) / (xs ** 2).sum()
    res = ((ys - xs[:, None, None, None] * slope) ** 2).sum((0, 2, 3))
    r2 = (1 - res / (ys ** 2).sum((0, 2, 3)).clamp_min(1e-300)).tolist()
    return dict(epsilons=eps_all, reference_epsilon=reference, epsilon_ids=sub, remainder=remainder,
                pearson_with_linear=correlation, r2=r2,
                epsilon_max_remainder=highest(x for v in remainder.values() for x in v))


def linear_up_to(steps: Sequence[int], remainder: dict[str, list[float]]) -> int | None:
    """The largest T up to which every remainder stays within ``REMAINDER_HOLD``."""
    last = None
    for t, s in enumerate(steps):
        if all(v[t] <= REMAINDER_HOLD for v in remainder.values()):
            last = s
        else:
            break
    return last


def key_figures(a: dict[str, Any]) -> str:
    a = as_json(a)
    return (f"vs unrolled: max remainder {fmt(a['max_remainder'])}, slope {fmt(a['slope'][0])}→"
            f"{fmt(a['slope'][-1])}, min Pearson {fmt(lowest(a['pearson_with_exact']))}; in ε: max remainder "
            f"{fmt(a['epsilon_max_remainder'])}, min R² {fmt(lowest(a['r2']))}")
