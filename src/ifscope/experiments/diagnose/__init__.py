"""The five assumptions behind an influence score, each measured at the checkpoint, with a verdict and advice.

1. convexity: the extremes of the Hessian spectrum (the run's fitted Ritz values).
2. stability: condition of the kept eigenvalues, Ritz residuals, and score agreement under another truncation,
   damping (and, with ``refit=True``, float64, rank 2k and disjoint Hessian samples).
3. trajectory: the training-loss gradient at the checkpoint against its start; score agreement across checkpoints.
4. divergence: the cost of freezing the checkpoint, ``horizon`` against ``unrolled`` per T (and the parameter gap).
5. first_order: the actual change of a removal against the exact first-order ``unrolled`` (and linearity in ε).

Each check is a module with ``NAME``, ``ADVICE`` (per verdict), ``measure(probe) -> dict`` and ``key_figures``.
``diagnose`` reads the fitted influence and never refits it; thresholds live in :mod:`.common`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ...core.data import as_dataset
from ...core.errors import ConfigError
from ...core.progress import progress_bar
from ...influence import Influence
from ...truth.training import Schedule
from ..fade import gd_schedule
from . import convexity, divergence, first_order, stability, trajectory
from .budget import sized
from .common import Probe, as_json

CHECK_MODULES = {m.NAME: m for m in (convexity, stability, trajectory, divergence, first_order)}
CHECKS = tuple(CHECK_MODULES)
ADVICE = {name: m.ADVICE for name, m in CHECK_MODULES.items()}


@dataclass
class Diagnosis:
    """``assumptions[name]`` = ``{"verdict", "advice", ...figures}`` for each check run; ``settings``: what was
    measured on (sizes, horizons, the method); see ``to_dict``."""

    assumptions: dict[str, dict[str, Any]]
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    chosen: dict[str, Any] | None = None  # the sizes a time budget chose (see ifscope.experiments.sizing)

    def to_dict(self) -> dict[str, Any]:
        """The content of ``diagnose.json`` (the run's ``config`` is added beside it by the command)."""
        return as_json({"assumptions": self.assumptions, "settings": self.settings, "seconds": self.seconds,
                        **({"chosen": self.chosen} if self.chosen is not None else {})})

    def failing(self) -> list[str]:
        """Names of the assumptions whose verdict is not ``holds``."""
        return [k for k, v in self.assumptions.items() if v["verdict"] != "holds"]

    def table(self) -> str:
        """A plain-text summary: one row per assumption with its verdict, key figures and advice."""
        rows = [(name, a["verdict"], CHECK_MODULES[name].key_figures(a), a["advice"])
                for name, a in self.assumptions.items()]
        w0, w1, w2 = (max(len(r[i]) for r in rows + [("assumption", "verdict", "key figures", "")]) for i in range(3))
        lines = [f"{'assumption':<{w0}}  {'verdict':<{w1}}  {'key figures':<{w2}}  advice"]
        lines += [f"{a:<{w0}}  {v:<{w1}}  {k:<{w2}}  {adv}" for a, v, k, adv in rows]
        bad = self.failing()
        lines.append("all assumptions hold" if not bad else
                     "not holding: " + ", ".join(f"{b} ({self.assumptions[b]['verdict']})" for b in bad))
        return "\n".join(lines)

    def write(self, directory: str | Path, extra: Mapping[str, Any] | None = None) -> Path:
        """Write ``diagnose.json`` (with ``extra`` keys, e.g. the run's config) into ``directory``, through its run
        directory when it is one; the report draws the figures from it. Returns the path."""
        from ...core.files import write_json
        from ...run.store import RunDir
        directory = Path(directory)
        run = RunDir(directory)
        data = {**self.to_dict(), **(extra or {})}
        if not run.exists:
            return write_json(directory / "diagnose.json", data)
        return run.save_json("diagnose.json", data)


def _checked(influence: Any, checks: Sequence[str], steps: Sequence[int], epsilons: Sequence[float],
             reference_epsilon: float, **sizes: int) -> list[int]:
    """The sorted distinct horizons, or a ConfigError naming the argument of :func:`diagnose` that is wrong."""
    unknown = sorted(set(checks) - set(CHECKS))
    if unknown or not checks:
        raise ConfigError(f"unknown check(s) {unknown or checks}; choose from {CHECKS}")
    for name, value in sizes.items():
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    steps = sorted({int(s) for s in steps})
    if not steps or steps[0] < 1:
        raise ConfigError(f"steps must be positive integers, got {steps}")
    if not reference_epsilon > 0 or any(abs(e) <= reference_epsilon for e in epsilons):
        raise ConfigError(f"reference_epsilon ({reference_epsilon}) must be positive and smaller in size than every "
                          f"epsilon in {list(epsilons)}")
    if not isinstance(influence, Influence):
        raise ConfigError(f"diagnose needs an ifscope.Influence, not {type(influence).__name__}")
    return steps


def _samples(inf: Influence, queries: Any, n_queries: int, n_train: int,
             gen: torch.Generator) -> tuple[Any, Tensor, Tensor, Tensor]:
    """The queries' dataset and their order (a seeded sample of the training set when ``queries`` is None, else the
    first ``n_queries``), the ``n_train`` scored training examples, and the seeded order of the removed ids (the ε
    ids are the first of them)."""
    n = inf.n_train
    if queries is None:
        qdata = inf.train
        q_order = torch.randperm(n, generator=gen)[:n_queries]
    else:
        qdata = as_dataset(queries, "queries")
        q_order = torch.arange(min(n_queries, len(qdata)))  # type: ignore[arg-type]
    t_idx = torch.randperm(n, generator=gen)[:n_train].sort().values
    return qdata, q_order, t_idx, torch.randperm(n, generator=gen)


def _measured(probe: Probe, run: Sequence[str], show_progress: bool) -> dict[str, dict[str, Any]]:
    """Each check of ``run`` measured on ``probe``, with its advice (and the stability hints of its problems)."""
    bar = progress_bar("diagnose", len(run), show_progress)
    out: dict[str, dict[str, Any]] = {}
    try:
        for name in run:
            if bar is not None:
                bar.set_postfix_str(name)
            module = CHECK_MODULES[name]
            out[name] = module.measure(probe)
            hints = [stability.HINTS[p] for p in out[name].get("problems", [])]
            out[name]["advice"] = module.ADVICE[out[name]["verdict"]] + (
                "; " + "; ".join(dict.fromkeys(hints)) if hints else "")
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return out


def diagnose(influence: Influence, queries: Any = None, *, checks: Sequence[str] = CHECKS,
             n_queries: int = 20, n_train: int = 200, n_ids: int = 40, epsilon_ids: int = 8,
             steps: Sequence[int] = (1, 3, 10, 30, 100, 300),
             epsilons: Sequence[float] = (0.1, 1.0), reference_epsilon: float = 0.01,
             damping_factors: Sequence[float] = (1e-3, 1e-2), initial: Mapping[str, Tensor] | None = None,
             checkpoints: Sequence[Any] | None = None, schedule: Schedule | None = None,
             ground_truth_dtype: torch.dtype = torch.float64, refit: bool = False,
             train_batch_size: int | None = None, lr: float | None = None, krylov: int = 100, reference_hessian_samples: int | None = None,
             directory: str | Path | None = None, seed: int = 0, budget_s: float | None = None,
             explicit: Sequence[str] = ()) -> Diagnosis:
    """Measure the five assumptions of ``score = ∇ℓ(q)ᵀ H⁻¹ ∇ℓ(z)`` at the influence's checkpoint.

    ``queries`` (default: ``n_queries`` training examples) and ``n_train`` seeded training examples are scored for
    the agreement figures; ``n_ids`` seeded training examples are removed for the ground truth (divergence, and
    first order against ``unrolled``), the first ``epsilon_ids`` of them also up-weighted by each ε in ``epsilons``
    (and by ``reference_epsilon``, the linear reference); the ground truth continues training from the checkpoint
    by ``schedule`` (default: GD with lr 1/λ_max of the run's spectrum, full batch or seeded minibatches of
    ``train_batch_size``; ``lr`` replaces 1/λ_max) for each ``T`` in ``steps``. The references ``unrolled`` and ``horizon`` (``krylov``
    Lanczos steps, Hessian on ``reference_hessian_samples``) run in ``ground_truth_dtype``. ``initial`` (parameters at the start of training) and ``checkpoints`` (earlier states, oldest first)
    feed the trajectory check. The fitted influence is used as it is (fitted first if it is not); ``refit=True``
    adds the agreement checks that need other fits of a method that keeps a spectrum. With ``directory``, writes
    ``diagnose.json`` and figures there. With ``budget_s``, the ids, queries and horizons not named in ``explicit``
    are cut to what that many seconds of replays afford on this model (measured; ``Diagnosis.chosen`` says what).
    """
    t0 = time.time()
    steps = _checked(influence, checks, steps, epsilons, reference_epsilon, n_queries=n_queries, n_train=n_train,
                     n_ids=n_ids, epsilon_ids=epsilon_ids, krylov=krylov)
    inf = influence
    if inf.estimator is None:
        inf.fit()
    gen = torch.Generator().manual_seed(seed)
    n = inf.n_train
    qdata, q_order, t_idx, perm = _samples(inf, queries, n_queries, n_train, gen)
    q_idx = q_order.sort().values
    ids, eps_ids = perm[:n_ids].sort().values, perm[:min(epsilon_ids, n_ids)].sort().values
    if schedule is None and (train_batch_size is not None or lr is not None):
        schedule = gd_schedule(inf, max(steps), lr, batch_size=train_batch_size, seed=inf.config["seed"])
    probe = Probe(inf, qdata, q_idx, t_idx, ids, steps, epsilons, reference_epsilon, damping_factors, initial,
                  checkpoints, schedule, ground_truth_dtype, refit, gen, eps_ids=eps_ids, krylov=krylov,
                  reference_hessian_samples=reference_hessian_samples, sweep="first_order" in checks)
    chosen = None
    if budget_s is not None:
        probe, chosen = sized(probe, checks, q_order, perm, epsilon_ids, budget_s, explicit)
        if chosen is not None and inf.show_progress:
            print(f"ifscope: diagnose {chosen}", file=sys.stderr)
    out = _measured(probe, [c for c in CHECKS if c in checks], inf.show_progress)
    settings = dict(method=inf.method, rank=inf.config.get("rank"), iterations=inf.config.get("iterations"),
                  dtype=str(inf.dtype).replace("torch.", ""), damping=inf.config["damping"],
                  weight_decay=inf.config["weight_decay"], n_train_total=n, n_queries=len(probe.q_idx),
                  n_train_scored=len(t_idx), n_ids=len(probe.ids), epsilon_ids=len(probe.eps_ids),
                  steps=probe.steps,
                  epsilons=list(epsilons), reference_epsilon=reference_epsilon, refit=refit, seed=seed,
                  train_batch_size=train_batch_size, ground_truth_dtype=str(ground_truth_dtype).replace("torch.", ""),
                  krylov=krylov, reference_hessian_samples=reference_hessian_samples)
    result = Diagnosis(out, settings, time.time() - t0, chosen.as_dict() if chosen is not None else None)
    if directory is not None:
        result.write(directory)
    return result


__all__ = ["ADVICE", "CHECKS", "Diagnosis", "diagnose"]
