"""Assumption 1, convexity: the extremes of the Hessian spectrum, read off the run's fitted Ritz values."""

from __future__ import annotations

from typing import Any

from .common import NEGATIVE_HOLD, NEGATIVE_QUESTION, Probe, as_json, fmt, grade

NAME = "convexity"
ADVICE = {
    "holds": "no material negative curvature: inverting the Hessian is well defined here",
    "questionable": "some negative curvature: keep select='positive' (the default) and read scores as "
                    "effects of continued training over a bounded horizon",
    "violated": "the checkpoint is a saddle or far from a minimum: classic (exact/CG/LiSSA) scores follow "
                "negative directions with flipped sign; use arnoldi with select='positive', train further or "
                "add weight decay",
}


def measure(p: Probe) -> dict[str, Any]:
    inf = p.inf
    spec = inf.spectrum()
    ritz = spec.ritz.double()
    top, bottom = ritz, ritz.flip(0)  # from each extreme inwards
    lmax, lmin = spec.lambda_max, spec.lambda_min
    scale = max(abs(lmax), abs(lmin), 1e-300)
    tol = NEGATIVE_HOLD * scale  # Ritz values this close to 0 are not counted as curvature of either sign
    neg, pos = ritz[ritz < -tol], ritz[ritz > tol]
    ratio = max(0.0, -lmin) / lmax if lmax > 0 else float("inf")
    est = inf.estimator
    pairs = getattr(est, "pairs", None)
    if pairs is not None:
        kept = pairs.values.double() + inf.config["damping"]
        kept_negative, n_kept = int((kept < 0).sum()), len(kept)
    elif est is not None and est.inverts_spectrum:  # they invert the whole spectrum
        kept_negative, n_kept = len(neg), None
    else:
        kept_negative, n_kept = 0, 0
    verdict = grade(ratio, NEGATIVE_HOLD, NEGATIVE_QUESTION)
    if kept_negative:
        verdict = "violated"
    return dict(verdict=verdict, lambda_max=lmax, lambda_min=lmin, negative_ratio=ratio,
                negative_count=len(neg), negative_mass=float(neg.abs().sum() / pos.sum()) if len(pos) else None,
                kept=n_kept, kept_negative=kept_negative, iterations=spec.iterations,
                ritz_top=top, ritz_bottom=bottom)


def key_figures(a: dict[str, Any]) -> str:
    a = as_json(a)
    return (f"λmax {fmt(a['lambda_max'])}, λmin {fmt(a['lambda_min'])}, |λmin|/λmax {fmt(a['negative_ratio'])}, "
            f"kept negative {a['kept_negative']}/" + ("whole spectrum" if a["kept"] is None else str(a["kept"])))
