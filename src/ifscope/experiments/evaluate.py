"""Counterfactual evaluation in the field's terms: the linear datamodeling score (LDS) and leave-top-k-out.

Sign convention (docs/science.md, 'Influence and the score convention'): removing training example i changes query q's loss by about ``+score(q, i)/N``.
A model trained on subset S (every other example removed) is therefore predicted to have the query loss
``ℓ_q(S) ≈ c − Σ_{i∈S} score(q, i)/N``: the predicted group effect on the loss is ``−Σ_{i∈S} score/N`` and on the
margin ``+Σ_{i∈S} score`` (proponents kept in S lower the loss and raise the margin). LDS (Park et al. 2023) is the
Spearman correlation over subsets between that prediction and the actual outcome, per query, averaged over queries.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..core.data import as_dataset
from ..core.errors import ConfigError
from ..influence import Influence
from ..truth.subsets import Continue, Outcomes, Retrain, Scratch, outcomes, random_masks
from .fade import gd_schedule, method_label, spearman

TARGETS = ("loss", "margin")
DEFAULT_KS = (5, 10, 20, 40)


def predicted_outputs(scores: Tensor, masks: Tensor, target: str = "loss") -> Tensor:
    """``[M, Q]``: the predicted outcome of each subset up to a constant, ``−Σ_{i∈S} score/N`` (loss) or ``+Σ_{i∈S} score``
    (margin), for ``scores[q, i]`` in the repository's convention."""
    if target not in TARGETS:
        raise ConfigError(f"target must be one of {TARGETS}, got {target!r}")
    scores = torch.as_tensor(scores).double()
    masks = torch.as_tensor(masks)
    if scores.dim() != 2 or masks.dim() != 2 or scores.shape[1] != masks.shape[1]:
        raise ConfigError(f"scores [queries, N] and masks [subsets, N] must share N, got {tuple(scores.shape)} and "
                          f"{tuple(masks.shape)}")
    group = masks.double() @ scores.T
    return -group / scores.shape[1] if target == "loss" else group


def lds_per_query(scores: Tensor, masks: Tensor, actual: Tensor, target: str = "loss") -> np.ndarray:
    """``[Q]``: per query, Spearman over subsets between :func:`predicted_outputs` and ``actual`` ``[M, Q]``."""
    pred = predicted_outputs(scores, masks, target).numpy()
    actual = torch.as_tensor(actual).double().numpy()
    if actual.shape != pred.shape:
        raise ConfigError(f"actual outcomes must be [subsets, queries] = {pred.shape}, got {actual.shape}")
    return np.array([spearman(pred[:, q], actual[:, q]) for q in range(pred.shape[1])])


def bootstrap_ci(values: np.ndarray, level: float = 0.95, draws: int = 1000, seed: int = 0) -> list[float]:
    """Percentile bootstrap interval of the mean of ``values`` (NaNs left out), resampling them with replacement."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if len(v) == 0:
        return [float("nan"), float("nan")]
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(draws, len(v)))].mean(1)
    tail = (1 - level) / 2
    return [float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))]


def _mean(values: np.ndarray) -> float:
    v = np.asarray(values, dtype=float)
    return float(np.nanmean(v)) if (~np.isnan(v)).any() else float("nan")


@dataclass
class LDSResult:
    """LDS per method (loss and margin), each with a bootstrap interval over queries, and the subsets' outcomes."""

    methods: dict[str, dict[str, Any]]
    fraction: float
    seed: int
    level: float
    seed_agreement: float | None  # mean per-query Spearman between two seeds' losses: the ceiling retraining noise sets
    outcomes: Outcomes = field(repr=False)
    scores: dict[str, Tensor] = field(repr=False)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The ``lds.json`` content: ``methods.<name>.lds`` and ``methods.<name>.ci`` (loss), ``lds_margin`` ..."""
        o = self.outcomes
        return {"retrain": o.kind, "steps": o.steps, "seeds": int(o.loss.shape[0]), "subsets": int(len(o.masks)),
                "fraction": self.fraction, "seed": self.seed, "n_train": int(o.masks.shape[1]),
                "n_queries": int(o.loss.shape[2]), "level": self.level, "seed_agreement": self.seed_agreement,
                "methods": self.methods, "seconds": self.seconds}

    def table(self) -> str:
        """One line per method: LDS (loss) with its interval, and LDS on the margin."""
        lines = [f"{'method':>16} {'LDS':>7} {'CI':>17} {'LDS margin':>11}"]
        for name, m in self.methods.items():
            lo, hi = m["ci"]
            margin = m.get("lds_margin")
            lines.append(f"{name:>16} {m['lds']:7.3f} [{lo:6.3f}, {hi:6.3f}] "
                         f"{'-' if margin is None else f'{margin:11.3f}':>11}")
        return "\n".join(lines)


def _methods(influence: Influence | Mapping[str, Influence]) -> dict[str, Influence]:
    methods = {method_label(influence): influence} if isinstance(influence, Influence) else dict(influence)
    if not methods or not all(isinstance(v, Influence) for v in methods.values()):
        raise ConfigError("expected an ifscope.Influence or a dict of name -> Influence")
    return methods


def _how(influence: Influence, retrain: str | Retrain | Scratch | Continue, seeds: int, steps: int, schedule: Any,
         first_seed: int) -> Scratch | Continue:
    """The retraining ``retrain`` names: ``"continue"`` (from the checkpoint), a training function (from scratch), or
    a :class:`~ifscope.truth.subsets.Scratch` / :class:`~ifscope.truth.subsets.Continue` given whole."""
    if isinstance(retrain, (Scratch, Continue)):
        return retrain
    if retrain == "continue":
        if not isinstance(steps, int) or steps < 1:
            raise ConfigError(f"steps must be a positive integer (steps of continued training), got {steps!r}")
        return Continue(schedule if schedule is not None else gd_schedule(influence, steps), steps)
    if isinstance(retrain, str):
        hint = (" pass the training function itself (retrain=recipe.retrain, or your own (data, seed) -> state)"
                if retrain == "scratch" else " use 'continue' or a training function (data, seed) -> state")
        raise ConfigError(f"retrain={retrain!r} is not a way to retrain:{hint}")
    return Scratch(retrain, seeds, first_seed)


def _seed_agreement(o: Outcomes) -> float | None:
    if o.loss.shape[0] < 2:
        return None
    a, b = o.loss[0].numpy(), o.loss[1].numpy()
    return _mean(np.array([spearman(a[:, q], b[:, q]) for q in range(a.shape[1])]))


def lds_from_outcomes(scores: Mapping[str, Tensor], outcomes: Outcomes, fraction: float = float("nan"),
                      seed: int = 0, level: float = 0.95, bootstrap: int = 1000) -> LDSResult:
    """LDS of each score matrix ``scores[name]`` ``[Q, N]`` against subsets' ``outcomes`` already measured."""
    if not scores:
        raise ConfigError("no score matrices to evaluate")
    if not 0 < level < 1:
        raise ConfigError(f"level must lie in (0, 1), got {level!r}")
    methods: dict[str, dict[str, Any]] = {}
    for name, s in scores.items():
        row: dict[str, Any] = {}
        for target, actual in (("loss", outcomes.mean_loss), ("margin", outcomes.mean_margin)):
            if actual is None:
                continue
            per_q = lds_per_query(s, outcomes.masks, actual, target)
            key = "lds" if target == "loss" else "lds_margin"
            row[key] = _mean(per_q)
            row["ci" if target == "loss" else "ci_margin"] = bootstrap_ci(per_q, level, bootstrap, seed)
            row["per_query" if target == "loss" else "per_query_margin"] = [float(v) for v in per_q]
        methods[name] = row
    return LDSResult(methods, float(fraction), int(seed), float(level), _seed_agreement(outcomes), outcomes,
                     dict(scores))


def lds(influence: Influence | Mapping[str, Influence], queries: Any, subsets: int = 100, fraction: float = 0.5,
        seed: int = 0, retrain: str | Retrain | Scratch | Continue = "continue", seeds: int = 1, steps: int = 100,
        schedule: Any = None, level: float = 0.95, bootstrap: int = 1000, truth: Outcomes | None = None,
        progress: bool = True) -> LDSResult:
    """Linear datamodeling score: per query, Spearman over ``subsets`` random subsets (``fraction`` of the training
    set) between ``−Σ_{i∈S} score(q, i)/N`` and the loss of a model trained on S, averaged over queries.

    ``retrain`` is ``"continue"`` (``steps`` steps of ``schedule`` from the checkpoint, default full-batch gradient
    descent with lr 1/λ_max, examples outside S weighted 0) or a function ``(data, seed) -> state`` that trains from
    scratch (a recipe's ``retrain``), run for ``seeds`` seeds per subset and averaged. ``truth`` reuses outcomes
    measured before (same subsets). The interval is a percentile bootstrap over queries at ``level``.
    """
    t0 = time.time()
    methods = _methods(influence)
    first = next(iter(methods.values()))
    if truth is None:
        how = _how(first, retrain, seeds, steps, schedule, seed)
        masks = random_masks(first.n_train, subsets, fraction, seed)
    elif truth.masks.shape[1] != first.n_train:
        raise ConfigError(f"the given outcomes are for {truth.masks.shape[1]} training examples, not {first.n_train}")
    scores = {name: inf.scores(queries).detach().double() for name, inf in methods.items()}  # fails fast, before training
    if truth is None:
        truth = outcomes(first.task, first.train, queries, masks, how, progress=progress, desc="lds")
    result = lds_from_outcomes(scores, truth, fraction, seed, level, bootstrap)
    result.seconds = time.time() - t0
    return result


@dataclass
class CounterfactualResult:
    """Mean change of each query's loss when its top-k proponents (or opponents, or k random examples) are removed."""

    ks: list[int]
    methods: dict[str, dict[str, Any]]   # name -> {"proponents": {...}, "opponents": {...}}
    random: dict[str, Any]
    base_loss: list[float]               # per query, the model trained (or continued) with every example
    kind: str
    steps: int | None
    seeds: int
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The ``counterfactual.json`` content."""
        return {"retrain": self.kind, "steps": self.steps, "seeds": self.seeds, "k": self.ks,
                "n_queries": len(self.base_loss), "base_loss_mean": float(np.mean(self.base_loss)),
                "random": self.random, "methods": self.methods, "seconds": self.seconds}

    def table(self) -> str:
        """Mean loss increase per k: removing proponents (should rise), opponents (should fall), random."""
        head = f"{'removed':>24} " + " ".join(f"{'k=' + str(k):>9}" for k in self.ks)
        rows = [f"{'random':>24} " + " ".join(f"{v:+9.4f}" for v in self.random["increase"])]
        for name, m in self.methods.items():
            for side in ("proponents", "opponents"):
                rows.append(f"{name + ' ' + side:>24} " + " ".join(f"{v:+9.4f}" for v in m[side]["increase"]))
        return "\n".join([head, *rows])


def _removal_masks(order: Tensor, ks: Sequence[int], n: int) -> Tensor:
    """``[Q·len(ks), n]``: for query q and each k, every example kept but the first k of ``order[q]``."""
    masks = torch.ones(len(order), len(ks), n, dtype=torch.bool)
    for j, k in enumerate(ks):
        masks[torch.arange(len(order))[:, None], j, order[:, :k]] = False
    return masks.reshape(-1, n)


def _summary(loss: Tensor, base: Tensor, n_q: int, n_k: int, predicted: Tensor | None = None) -> dict[str, Any]:
    """Own-query loss increase per (q, k) from outcome losses [M = Q·K, Q], as mean / s.e. over queries per k."""
    own = loss.reshape(n_q, n_k, n_q)[torch.arange(n_q), :, torch.arange(n_q)]  # [Q, K]
    inc = (own - base[:, None]).numpy()
    out = {"increase": inc.mean(0).tolist(),
           "stderr": (inc.std(0, ddof=1) / math.sqrt(n_q) if n_q > 1 else np.zeros(n_k)).tolist(),
           "fraction_up": (inc > 0).mean(0).tolist(), "per_query": inc.tolist()}
    if predicted is not None:
        out["predicted"] = predicted.mean(0).tolist()
    return out


def leave_top_k_out(influence: Influence | Mapping[str, Influence], queries: Any, ks: Sequence[int] = DEFAULT_KS,
                    retrain: str | Retrain | Scratch | Continue = "continue", seeds: int = 1, steps: int = 100,
                    schedule: Any = None, seed: int = 0, progress: bool = True) -> CounterfactualResult:
    """For each query and k in ``ks``: remove its k strongest proponents (largest scores) by each method, or its k
    strongest opponents, or k random examples; retrain (``retrain`` as in :func:`lds`) and report the mean change
    of that query's loss against the model trained on everything, beside the predicted ``Σ_removed score/N``."""
    t0 = time.time()
    methods = _methods(influence)
    first = next(iter(methods.values()))
    n = first.n_train
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1 or ks[-1] >= n:
        raise ConfigError(f"ks must be positive integers below the {n} training examples, got {ks}")
    n_q = len(as_dataset(queries, "queries"))
    how = _how(first, retrain, seeds, steps, schedule, seed)

    def measure(masks: Tensor, desc: str) -> Tensor:
        return outcomes(first.task, first.train, queries, masks, how, progress=progress, desc=desc).mean_loss
    scores = {name: inf.scores(queries).detach().double() for name, inf in methods.items()}
    base = measure(torch.ones(1, n, dtype=torch.bool), "counterfactual: all examples")[0]
    gen = torch.Generator().manual_seed(seed)
    rand_order = torch.stack([torch.randperm(n, generator=gen) for _ in range(n_q)])
    random = _summary(measure(_removal_masks(rand_order, ks, n), "counterfactual: random"), base, n_q, len(ks))
    out: dict[str, dict[str, Any]] = {}
    for name, s in scores.items():
        row = {}
        for side, descending in (("proponents", True), ("opponents", False)):
            order = s.argsort(dim=1, descending=descending)
            removed = torch.stack([s.gather(1, order[:, :k]).sum(1) / n for k in ks], 1)  # [Q, K], +score/N each
            row[side] = _summary(measure(_removal_masks(order, ks, n), f"counterfactual: {name} {side}"), base, n_q,
                                 len(ks), removed)
        out[name] = row
    return CounterfactualResult(ks, out, random, base.tolist(), how.kind,
                                how.steps if isinstance(how, Continue) else None, how.seeds, time.time() - t0)
