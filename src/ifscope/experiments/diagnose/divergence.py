"""Assumption 4, trajectories stay close: what freezing the checkpoint costs. Per T, the per-query Spearman over the
training set between ``horizon`` (the linear response with H and the gradients frozen at the checkpoint) and
``unrolled`` (the exact derivative of the same continued training) — the fade's horizon of validity of ``horizon``
— and, beside it, the parameter gap ``‖θ_ε(T) − θ(T)‖`` of the removals, its exponential rate and the Gronwall
horizon ``log(1/|ε|)/rate``."""

from __future__ import annotations

import math
from typing import Any

from ...core.data import take
from ...core.stats import fit_gap_growth, peak_rate
from ..validity import horizon_of, validity_horizon
from .common import (
    AGREE_HOLD,
    AGREE_QUESTION,
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
from .truth import removal

NAME = "divergence"
ADVICE = {
    "holds": "the checkpoint's curvature and gradients describe the continued training over the horizons asked "
             "about: horizon-aware scores rank like the exact ones",
    "questionable": "the trajectory leaves the checkpoint's linearisation within the horizons asked about: trust "
                    "checkpoint scores only up to the reported T, or use method='unrolled'",
    "violated": "the continued training departs from the checkpoint quickly: checkpoint scores fade within a few "
                "steps; use method='unrolled' (exact through the replay) or only small-T predictions",
}


def measure(p: Probe) -> dict[str, Any]:
    gt, schedule = removal(p)
    gap = gt.gap.double().mean(1)
    rate, scale = fit_gap_growth(gt.steps, gap.tolist())
    peak = peak_rate(gt.steps, gap.tolist())
    eps = 1.0 / p.inf.n_train  # removal from a mean over n examples
    fastest = highest((rate, peak))
    horizon = math.log(1 / eps) / fastest if fastest > 0 else float("inf")
    refs = references(p)
    frozen = validity_horizon(refs["horizon"], take(p.qdata, p.q_idx), gt.steps, reference=refs["unrolled"],
                              schedule=schedule, train_ids=p.t_idx.sort().values).to_dict()  # the scored sample
    agreement = frozen["summary"]["mean_spearman"]
    verdict = worst(grade(lowest(agreement), AGREE_HOLD, AGREE_QUESTION,
                          higher_is_better=True))
    return dict(verdict=verdict, steps=gt.steps, agreement_with_unrolled=agreement,
                frozen_valid_up_to=horizon_of(agreement, gt.steps, AGREE_HOLD), frozen=frozen,
                gap=gap, gap_per_id=gt.gap.double().T, ids=gt.ids, rate=rate, fit_scale=scale, peak_rate=peak,
                epsilon=eps, horizon=horizon if math.isfinite(horizon) else None, schedule=schedule_info(schedule))


def key_figures(a: dict[str, Any]) -> str:
    a = as_json(a)
    horizon = fmt(a["horizon"]) if a["horizon"] is not None else "unbounded"
    agree = a["agreement_with_unrolled"]
    return (f"horizon vs unrolled Spearman {fmt(agree[0])}→{fmt(agree[-1])} over T {a['steps'][0]}→{a['steps'][-1]}"
            f" (≥ {AGREE_HOLD} up to T {a['frozen_valid_up_to'] or '–'}); gap {fmt(a['gap'][0])}→{fmt(a['gap'][-1])}, "
            f"rate {fmt(a['rate'])}/step, Gronwall horizon {horizon}")
