"""Assumption 4, trajectories stay close: the parameter gap ``‖θ_ε(T) − θ(T)‖`` of continued training, its
exponential rate (the one gap fit of :mod:`ifscope.stats`), and the first-order horizon ``log(1/|ε|)/rate``."""

from __future__ import annotations

import math
from typing import Any

from ..stats import fit_gap_growth, peak_rate
from .common import HORIZON_HOLD, HORIZON_QUESTION, Probe, as_json, fmt, grade, schedule_info
from .truth import removal

NAME = "divergence"
ADVICE = {
    "holds": "perturbed and unperturbed trajectories stay close over the horizons asked about",
    "questionable": "trajectories diverge within the horizons asked about: trust predictions only up to the "
                    "reported horizon",
    "violated": "trajectories diverge quickly: influence fades within a few steps; use method='horizon' "
                "with a short horizon, or only small-T predictions",
}


def measure(p: Probe) -> dict[str, Any]:
    gt, schedule = removal(p)
    gap = gt.gap.double().mean(1)
    rate, scale = fit_gap_growth(gt.steps, gap.tolist())
    peak = peak_rate(gt.steps, gap.tolist())
    eps = 1.0 / p.inf.n_train  # removal from a mean over n examples
    rates = [r for r in (rate, peak) if r == r]
    fastest = max(rates) if rates else float("nan")
    horizon = math.log(1 / eps) / fastest if fastest > 0 else float("inf")
    verdict = grade(horizon / max(gt.steps), HORIZON_HOLD, HORIZON_QUESTION, higher_is_better=True)
    return dict(verdict=verdict, steps=gt.steps, gap=gap, gap_per_id=gt.gap.double().T, ids=gt.ids,
                rate=rate, fit_scale=scale, peak_rate=peak, epsilon=eps,
                horizon=horizon if math.isfinite(horizon) else None, schedule=schedule_info(schedule))


def key_figures(a: dict[str, Any]) -> str:
    a = as_json(a)
    horizon = fmt(a["horizon"]) if a["horizon"] is not None else "unbounded"
    return (f"gap {fmt(a['gap'][0])}→{fmt(a['gap'][-1])} over T {a['steps'][0]}→{a['steps'][-1]}, rate "
            f"{fmt(a['rate'])}/step (peak {fmt(a['peak_rate'])}), horizon {horizon}")
