"""Assumption 5, the response is linear in ε: the actual change after removal and up-weighting by each ε against the
smallest-ε response scaled to ε; the remainder, the correlation with the linear prediction, and R² of a line."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..stats import pearson
from .common import AGREE_HOLD, REMAINDER_HOLD, REMAINDER_QUESTION, Probe, as_json, fmt, grade, schedule_info
from .truth import changes, removal

NAME = "first_order"
ADVICE = {
    "holds": "the actual response is linear in ε: removal acts like a scaled small up-weighting, so "
             "first-order magnitudes apply",
    "questionable": "the magnitude of large perturbations (removal) is off, rankings survive: use rankings, "
                    "or small-ε up-weighting semantics for magnitudes",
    "violated": "even rankings of large perturbations depart from the first-order prediction: read scores "
                "only for small up-weighting",
}


def measure(p: Probe) -> dict[str, Any]:
    steps, reference = p.steps, p.reference_epsilon
    gt, schedule = removal(p)

    def run(eps: float) -> torch.Tensor:
        return gt.delta.double() if eps == -1.0 else changes(p, "upweight", eps).delta.double()
    ref = run(reference)
    eps_all = [-1.0] + [float(e) for e in p.epsilons if float(e) != -1.0]
    deltas = {e: run(e) for e in eps_all}
    remainder: dict[str, list[float]] = {}
    correlation: dict[str, list[float]] = {}
    for e, d in deltas.items():
        lin = ref * (e / reference)
        remainder[f"{e:g}"] = [float((d[t] - lin[t]).norm() / lin[t].norm().clamp_min(1e-300))
                               for t in range(len(steps))]
        correlation[f"{e:g}"] = [pearson(d[t], lin[t]) for t in range(len(steps))]
    xs = torch.tensor([reference] + eps_all, dtype=torch.float64)
    ys = torch.stack([ref] + [deltas[e] for e in eps_all])  # [n_eps, T, ids, queries]
    slope = (xs[:, None, None, None] * ys).sum(0) / (xs ** 2).sum()
    res = ((ys - xs[:, None, None, None] * slope) ** 2).sum((0, 2, 3))
    r2 = (1 - res / (ys ** 2).sum((0, 2, 3)).clamp_min(1e-300)).tolist()
    largest = max(max(v) for v in remainder.values())
    ranks_kept = min(min(v) for v in correlation.values()) >= AGREE_HOLD
    verdict = grade(largest, REMAINDER_HOLD, REMAINDER_QUESTION)
    if verdict == "violated" and ranks_kept:
        verdict = "questionable"
    return dict(verdict=verdict, steps=list(steps), epsilons=eps_all, reference_epsilon=reference,
                remainder=remainder, pearson_with_linear=correlation, r2=r2, max_remainder=largest,
                linear_up_to=linear_up_to(steps, remainder), schedule=schedule_info(schedule))


def linear_up_to(steps: Sequence[int], remainder: dict[str, list[float]]) -> int | None:
    """The largest T up to which every ε's remainder stays within ``REMAINDER_HOLD``."""
    last = None
    for t, s in enumerate(steps):
        if all(v[t] <= REMAINDER_HOLD for v in remainder.values()):
            last = s
        else:
            break
    return last


def key_figures(a: dict[str, Any]) -> str:
    a = as_json(a)
    return f"max remainder {fmt(a['max_remainder'])}, min R² {fmt(min(a['r2']))}"
