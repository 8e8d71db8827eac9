"""Assumption 2, numeric stability: condition of the kept eigenvalues, Ritz residuals, and score agreement under
another truncation, damping, precision and Hessian sample.

Without refits (the default) it reads only the run's fit: rank k against its top half, and damping added to the
kept eigenvalues; ``refit=True`` adds the checks that need new fits (float64 against float32, rank 2k, two disjoint
Hessian samples) and says so in ``refits``."""

from __future__ import annotations

from typing import Any

import torch

from .common import (
    AGREE_HOLD,
    AGREE_QUESTION,
    CONDITION_HOLD,
    CONDITION_QUESTION,
    RESIDUAL_HOLD,
    RESIDUAL_QUESTION,
    Probe,
    as_json,
    fmt,
    grade,
    subset,
    worst,
)

NAME = "stability"
ADVICE = {
    "holds": "scores are insensitive to precision, rank, Hessian sample and damping",
    "questionable": "scores move with the numerical choices: trust top-k lists more than values",
    "violated": "scores are dominated by numerical choices",
}
HINTS = {
    "condition": "κ·u is large: use dtype=torch.float64 or keep fewer eigenvalues",
    "residual": "kept Ritz pairs have not converged: raise iterations or lower rank",
    "float32_vs_float64": "precision changes the scores: use dtype=torch.float64",
    "rank_k_vs_half": "the scores depend on how many eigenpairs are kept: the truncation decides them, so read "
                      "only what agrees across ranks",
    "rank_k_vs_2k": "the scores depend on how many eigenpairs are kept: the truncation decides them, so read "
                    "only what agrees across ranks",
    "disjoint_hessian_samples": "two halves of the data give different eigenvectors: use more examples for the "
                                "curvature (hessian_samples) or a lower rank",
    "damping": "the smallest kept eigenvalues drive the scores: add damping or lower rank",
}


def _top_half(p: Probe) -> torch.Tensor:
    """Scores with only the top half of the kept eigenpairs: another truncation of the same fit."""
    q, t = p.embeddings()
    half = max(1, q.shape[1] // 2)
    return (q[:, :half] @ t[:, :half].T).double()


def measure(p: Probe) -> dict[str, Any]:
    inf = p.inf
    est = inf.estimator
    assert est is not None
    base = p.scores()
    eps = torch.finfo(inf.dtype).eps
    pairs = getattr(est, "pairs", None)
    refits: list[str] = []
    if pairs is not None:
        kept = pairs.values.double() + inf.config["damping"]
        condition = float(kept.abs().max() / kept.abs().min())
        rel = float((pairs.residuals.double() / kept.abs()).max())
    elif est.uses_curvature:  # the whole spectrum is inverted; the Ritz extremes bound κ from below
        ritz = inf.spectrum().ritz.double().abs() + inf.config["damping"]
        condition, rel = float(ritz.max() / ritz.min().clamp_min(1e-300)), None
    else:
        condition, rel = None, None
    agreement: dict[str, float | None] = {}
    spans = bool(getattr(est, "breakdown", False))  # the Krylov space was exhausted: the kept pairs are all there is
    if pairs is not None and len(pairs.values) > 1 and not spans and not est.horizon_aware:
        agreement["rank_k_vs_half"] = p.agreement(base, _top_half(p))
    if p.refit or not est.keeps_spectrum:
        other = torch.float64 if inf.dtype == torch.float32 else torch.float32
        agreement["float32_vs_float64"] = p.agreement(base, p.scores(inf.derive(dtype=other)))
        refits.append(f"dtype {other}")
    if p.refit and pairs is not None:
        k = len(pairs.values)
        if 2 * k <= est.ctx.space.dim:
            wide = inf.derive(rank=2 * k, iterations=max(int(inf.config["iterations"]), 4 * k))
            agreement["rank_k_vs_2k"] = p.agreement(base, p.scores(wide))
            refits.append(f"rank {2 * k}")
        else:
            agreement["rank_k_vs_2k"] = None  # k is already at least half the dimension
    if est.uses_curvature:
        if p.refit or not est.keeps_spectrum:
            perm = torch.randperm(inf.n_train, generator=torch.Generator().manual_seed(inf.config["seed"] + 7))
            half = inf.n_train // 2
            a, b = (inf.derive(train=subset(inf.train, perm[s].sort().values))
                    for s in (slice(0, half), slice(half, 2 * half)))
            agreement["disjoint_hessian_samples"] = p.agreement(p.scores(a, inf.train), p.scores(b, inf.train))
            refits.append("two half Hessian samples")
        for f in p.damping_factors:
            damped = inf.derive(damping=inf.config["damping"] + f * inf.lambda_max)
            agreement[f"damping_{f:g}_lambda_max"] = p.agreement(base, p.scores(damped))
    grades = {"condition": grade(None if condition is None else condition * eps, CONDITION_HOLD, CONDITION_QUESTION),
              "residual": grade(rel, RESIDUAL_HOLD, RESIDUAL_QUESTION),
              **{k: grade(v, AGREE_HOLD, AGREE_QUESTION, higher_is_better=True) for k, v in agreement.items()}}
    problems = list(dict.fromkeys("damping" if k.startswith("damping") else k for k, g in grades.items()
                                  if g not in (None, "holds")))
    return dict(verdict=worst(*grades.values()), condition=condition, machine_epsilon=eps,
                condition_times_epsilon=None if condition is None else condition * eps, max_relative_residual=rel,
                agreement=agreement, problems=problems, refits=refits)


def key_figures(a: dict[str, Any]) -> str:
    a = as_json(a)
    agree = {k: v for k, v in a["agreement"].items() if v is not None}
    low = min(agree, key=agree.get) if agree else None
    return (f"κ {fmt(a['condition'])}, residual {fmt(a['max_relative_residual'])}, lowest agreement "
            + (f"{low} {fmt(agree[low])}" if low else "n/a"))
