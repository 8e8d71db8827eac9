"""The fade curve: how well influence scores predict the actual effect of continued training, as the horizon T grows.

For training example ``z`` re-weighted to ``w`` (0 = removed, ``1 + ε`` = up-weighted) in a mean over N examples,
the first-order change of query ``q``'s loss is ``−(w − 1)·score(q, z)/N``: ``+score/N`` for a removal (ε = −1/N per
example), ``−ε·score/N`` for an up-weighting. Predictions are put in these units and correlated (Pearson, Spearman)
with the actual changes measured by :func:`ifscope.truth.groundtruth.actual_changes` after T steps.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..core.errors import ConfigError
from ..core.krylov import largest_step
from ..core.progress import progress_bar
from ..core.stats import fit_gap_growth, gap_exponent, half_life, pearson, per_column, spearman
from ..core.task import Task
from ..influence import Influence
from ..truth.groundtruth import MODES, GroundTruth, actual_changes
from ..truth.training import Schedule, make_batches, replay

DEFAULT_STEPS = (1, 3, 10, 30, 100, 300, 1000)


def method_label(influence: Influence) -> str:
    """``arnoldi_horizon`` / ``ekfac_horizon`` for the horizon-aware Arnoldi / EK-FAC variants, else the method name."""
    if influence.method in ("arnoldi", "ekfac") and influence.config.get("horizon") is not None:
        return f"{influence.method}_horizon"
    if influence.method == "horizon" and influence.config.get("batch_order") == "schedule":
        return "horizon_schedule"
    return influence.method


def gd_schedule(influence: Influence, steps: int, lr: float | None = None, batch_size: int | None = None,
                seed: int = 0) -> Schedule:
    """Gradient descent for ``steps`` steps with the influence's weight decay and ``lr`` (default 1/λ_max of its
    curvature, the largest stable-and-monotone step): full-batch, or seeded minibatches of ``batch_size``."""
    if lr is None:
        lr = largest_step(influence.spectrum())
    return Schedule(make_batches(influence.n_train, steps, batch_size, seed), lr=float(lr),
                    weight_decay=influence.config["weight_decay"])


def with_horizon(inf: Influence, horizon: int, lr: float) -> Influence:
    """The horizon-aware Arnoldi variant on the fitted eigenpairs of ``inf`` (no new Arnoldi iteration)."""
    if inf.method != "arnoldi" or inf.estimator is None:
        raise ConfigError("arnoldi_horizon reuses a fitted arnoldi run's eigenpairs; this run is "
                          f"{inf.method!r}: fit method='arnoldi' or leave arnoldi_horizon out")
    return inf.derive(horizon=horizon, lr=lr)


def _full_batch(schedule: Schedule, n: int) -> bool:
    return all(len(b) == n for b in schedule.batches)


def reference_methods(inf: Influence, names: Sequence[str], schedule: Schedule, horizon: int,
                      krylov: int = 100, dtype: torch.dtype | None = None,
                      hessian_samples: int | None = None) -> dict[str, Influence]:
    """The fade's reference methods, built with the run's shared options and the continued training's ``schedule``
    (its lr, the horizon T = ``horizon``): ``horizon``, ``horizon_schedule``, ``arnoldi_horizon``, ``ekfac_horizon``
    (EK-FAC of the true Fisher with the filter ``f_T``, its own fit), ``exact``,
    ``graddot``, ``tracin`` (one checkpoint per step of the actual continued trajectory), ``unrolled`` (the exact
    derivative through ``schedule``), ``arnoldi`` (its own fit with the library's defaults); ``dtype`` and
    ``hessian_samples`` override the run's precision and curvature sample for all but ``arnoldi_horizon``."""
    shared = inf.shared_config
    if dtype is not None:
        shared["dtype"] = dtype
    if hessian_samples is not None:
        shared["hessian_samples"] = hessian_samples
    lr = {"horizon": horizon, "lr": schedule.lr}

    def make(method: str, **options: Any) -> Influence:
        return Influence(inf.task, inf.train, method, progress=inf.show_progress, **shared, **options)
    build = {
        "horizon": lambda: make("horizon", krylov=krylov, **lr),
        "horizon_schedule": lambda: make("horizon", krylov=krylov, batch_order="schedule", **lr),
        "arnoldi_horizon": lambda: with_horizon(inf, horizon, schedule.lr),
        "ekfac_horizon": lambda: make("ekfac", **lr),
        "exact": lambda: make("exact"),
        "graddot": lambda: make("graddot"),
        "arnoldi": lambda: make("arnoldi"),
        "unrolled": lambda: make("unrolled", optimizer=schedule.optimizer, **lr,
                                 train_batch_size=None if _full_batch(schedule, inf.n_train) else len(schedule.batches[0])),
        "tracin": lambda: make("tracin", per_step=True, checkpoints=trajectory_checkpoints(
            inf.task, inf.train, schedule, horizon, dtype=shared["dtype"])),
    }
    unknown = sorted(set(names) - set(build))
    if unknown:
        raise ConfigError(f"unknown reference method(s) {unknown}; choose from {sorted(build)}")
    out = {}
    for name in names:
        ref = build[name]()
        if ref.estimator is None:
            ref.fit()
        out[name] = ref
    return out


def trajectory_checkpoints(task: Task, train: Any, schedule: Schedule, steps: int,
                           dtype: torch.dtype | None = None) -> list[tuple[dict[str, Tensor], float]]:
    """``[(θ_t, η)]`` for ``t = 0..steps−1`` along the unperturbed replay of ``schedule``: TracIn over that horizon."""
    params0, rest = task.state(dtype)
    out = [({k: v.clone() for k, v in params0.items()}, schedule.lr)]
    if steps > 1:
        res = replay(task, params0, train, schedule, steps=steps - 1, checkpoint_every=1, rest=rest)
        out += res.checkpoints
    return out


@dataclass
class FadeResult:
    """Correlation of predicted with actual changes per method and per T, the parameter gap and its growth."""

    steps: list[int]
    mode: str
    epsilon: float
    lr: float
    methods: dict[str, dict[str, Any]]
    gap: list[float]
    gap_rate: float
    gap_scale: float
    gap_exponent: float  # slope of log gap against log T: 1 = linear growth, rising above 1 = divergence
    horizon_half: float | None
    reference: str
    truth: GroundTruth = field(repr=False)
    predicted: dict[str, Tensor] = field(repr=False)  # [n_steps, n_ids, n_queries] in the units of truth.delta
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The ``fade.json`` content."""
        return {"steps": self.steps, "mode": self.mode, "epsilon": self.epsilon, "lr": self.lr,
                "n_ids": int(self.truth.delta.shape[1]), "n_queries": int(self.truth.delta.shape[2]),
                "ids": self.truth.ids.tolist(), "methods": self.methods, "gap": self.gap, "gap_rate": self.gap_rate,
                "gap_scale": self.gap_scale, "gap_exponent": self.gap_exponent, "horizon_half": self.horizon_half,
                "reference_method": self.reference, "seconds": self.seconds}

    def table(self, key: str = "pearson") -> str:
        """A text table of ``key`` per method (rows) and T (columns)."""
        head = f"{key:>16} " + " ".join(f"{'T=' + str(t):>7}" for t in self.steps)
        rows = [f"{name:>16} " + " ".join(f"{v:7.3f}" for v in m[key]) for name, m in self.methods.items()]
        return "\n".join([head, *rows])


def _checked(influence: Influence | Mapping[str, Influence], mode: str, epsilon: float,
             steps: Sequence[int]) -> tuple[dict[str, Influence], list[int]]:
    """The methods by name and the sorted distinct horizons, or a ConfigError naming what is wrong."""
    methods = {method_label(influence): influence} if isinstance(influence, Influence) else dict(influence)
    if not methods or not all(isinstance(v, Influence) for v in methods.values()):
        raise ConfigError("fade_curve needs an ifscope.Influence or a dict of name -> Influence")
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "upweight" and not epsilon:
        raise ConfigError("up-weighting needs a non-zero epsilon (e.g. 0.01)")
    steps = sorted({int(t) for t in steps})
    if not steps or steps[0] < 1:
        raise ConfigError(f"steps must be positive integers, got {steps}")
    return methods, steps


def _agreement(predicted: np.ndarray, actual: np.ndarray) -> dict[str, Any]:
    """Per T (the first axis of ``[n_steps, n_ids, n_queries]``): Pearson and Spearman over every (id, query) pair
    and per query, and the least-squares slope of actual on predicted (``Σab / Σa²``)."""
    row: dict[str, Any] = {"pearson": [], "spearman": [], "pearson_per_query": [], "spearman_per_query": [],
                           "slope": []}
    for a, b in zip(predicted, actual):
        row["pearson"].append(pearson(a.ravel(), b.ravel()))
        row["spearman"].append(spearman(a.ravel(), b.ravel()))
        row["pearson_per_query"].append(per_column(pearson, a, b))
        row["spearman_per_query"].append(per_column(spearman, a, b))
        row["slope"].append(float((a * b).sum() / (a * a).sum()) if (a * a).sum() > 0 else float("nan"))
    return row


def fade_curve(influence: Influence | Mapping[str, Influence], queries: Any, ids: Sequence[int] | Tensor,
               steps: Sequence[int] = DEFAULT_STEPS, mode: str = "remove", epsilon: float = 0.01,
               schedule: Schedule | None = None, truth: GroundTruth | None = None,
               progress: bool = True, truth_dtype: torch.dtype | None = torch.float64) -> FadeResult:
    """Per T: Pearson/Spearman between ``−(w−1)·score(q, z)/N`` and the actual change ``ℓ_q(θ_w(T)) − ℓ_q(θ(T))``.

    ``influence`` is one fitted (or unfitted) :class:`Influence` or a mapping ``name → Influence``; methods with
    a horizon (``horizon``, ``arnoldi`` with ``horizon=``, ``tracin`` with ``per_step=True`` and one checkpoint
    per step from :func:`trajectory_checkpoints`) are re-evaluated at each T; the others are scored once. ``schedule`` is the continued training (default: full-batch gradient descent,
    lr = 1/λ_max, the influence's weight decay); ``truth`` a precomputed ground truth to reuse.
    """
    t0 = time.time()
    methods, steps = _checked(influence, mode, epsilon, steps)
    first = next(iter(methods.values()))
    ids_t = torch.as_tensor(ids, dtype=torch.long).reshape(-1)
    if truth is None:
        schedule = schedule if schedule is not None else gd_schedule(first, max(steps))
        truth = actual_changes(first.task, first.train, queries, ids_t, steps, schedule, mode=mode, epsilon=epsilon,
                               dtype=truth_dtype or first.dtype, progress=progress)
    elif truth.steps != steps or not torch.equal(truth.ids, ids_t) or truth.mode != mode:
        raise ConfigError("the given ground truth was computed for other steps, ids or mode; recompute it")
    n = first.n_train
    actual = truth.delta.double().numpy()  # [n_steps, n_ids, n_queries]
    out: dict[str, dict[str, Any]] = {}
    predicted: dict[str, Tensor] = {}
    bar = progress_bar("fade: scoring methods", len(methods), progress)
    for name, inf in methods.items():
        if bar is not None:
            bar.set_postfix(method=name)
        s = inf.scores_over_horizons(queries, ids_t, steps, schedule).double()  # [n_steps, n_queries, n_ids]
        pred = -(truth.weight - 1.0) * s.transpose(1, 2) / n
        predicted[name] = pred
        row = _agreement(pred.numpy(), actual)
        row["horizon_half"] = half_life(steps, row["pearson"])
        est = inf.estimator
        if getattr(est, "horizon", None) is not None and hasattr(est, "left_out"):
            # validity of ηT on the complement: η·λ·T at the largest eigenvalue outside the basis, per T
            row["complement_eta_lambda_T"] = [est.lr * est.left_out * t for t in steps]
        out[name] = row
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    gap = truth.gap.double().mean(1).tolist()
    rate, scale = fit_gap_growth(steps, gap)
    exponent = gap_exponent(steps, gap)
    reference = "horizon" if "horizon" in out else next(iter(out))
    lr = schedule.lr if schedule is not None else float("nan")
    return FadeResult(steps, mode, float(epsilon) if mode == "upweight" else -1.0 / n, lr, out, gap, rate, scale,
                      exponent, out[reference]["horizon_half"], reference, truth, predicted, time.time() - t0)


def plot_fade(result: FadeResult, path: str | Path) -> Path:
    """Save a two-panel figure: correlation (Pearson solid, Spearman dashed) per method vs T; the gap vs T."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..core.files import atomic_write_bytes
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for i, (name, m) in enumerate(result.methods.items()):
        color = f"C{i}"
        ax1.plot(result.steps, m["pearson"], "-o", color=color, label=name, ms=3)
        ax1.plot(result.steps, m["spearman"], "--", color=color, alpha=0.6)
    ax1.set(xscale="log", xlabel="T (steps of continued training)", ylabel="correlation with actual change",
            title=f"influence fades ({result.mode}; Pearson solid, Spearman dashed)")
    ax1.axhline(0, color="grey", lw=0.5)
    ax1.legend(fontsize=8)
    ax2.plot(result.steps, result.gap, "o", label=f"mean ‖θ_w(T) − θ(T)‖ (∝ T^{result.gap_exponent:.2f})")
    if not math.isnan(result.gap_rate):
        t = np.geomspace(min(result.steps), max(result.steps), 100)
        r = result.gap_rate
        fit = result.gap_scale * (np.expm1(r * t) / r if abs(r) * t.max() > 1e-8 else t)
        ax2.plot(t, fit, "-", label=f"c·(e^(rT) − 1)/r, r = {r:.3g}")
    ax2.set(xscale="log", yscale="log", xlabel="T", ylabel="parameter gap", title="parameter gap")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    import io
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())
