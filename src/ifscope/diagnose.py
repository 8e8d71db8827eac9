"""The five assumptions behind an influence score, each measured at the checkpoint, with a verdict and advice.

1. convexity: the extremes of the Hessian spectrum (Arnoldi on ``H`` and on ``−H``).
2. stability: condition of the kept eigenvalues, Ritz residuals, and score agreement under float64, rank 2k,
   disjoint Hessian samples and damping.
3. trajectory: the training-loss gradient at the checkpoint against its start; score agreement across checkpoints.
4. divergence: the parameter gap ``‖θ_ε(T) − θ(T)‖`` of continued training, its exponential rate, the horizon.
5. first_order: the actual change against ε (removal and up-weighting): linearity and the second-order remainder.

Thresholds are the constants below; docs/diagnose.md states why each is where it is.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset, TensorDataset
from tqdm.auto import tqdm

from .arnoldi import arnoldi
from .curvature import Curvature
from .data import DictDataset, as_dataset, batches, take
from .errors import ConfigError
from .groundtruth import GroundTruth, actual_changes
from .influence import Influence
from .store import write_json
from .training import Schedule, load_params, make_batches

CHECKS = ("convexity", "stability", "trajectory", "divergence", "first_order")
VERDICTS = ("holds", "questionable", "violated")

# convexity: |λ_min| / λ_max. Under GD with lr 1/λ_max a negative direction grows by e every λ_max/|λ_min| steps.
NEGATIVE_HOLD, NEGATIVE_QUESTION = 1e-3, 1e-2
# stability: κ·u (u = the dtype's machine epsilon) is the relative error rounding puts on the smallest kept 1/λ.
CONDITION_HOLD, CONDITION_QUESTION = 1e-4, 1e-2
# stability: ‖Hu − θu‖ / |θ| bounds the relative error of a kept Ritz value θ, hence of its weight 1/θ.
RESIDUAL_HOLD, RESIDUAL_QUESTION = 1e-2, 1e-1
# stability and trajectory: mean per-query Spearman between two score matrices that should agree.
AGREE_HOLD, AGREE_QUESTION = 0.9, 0.7
# trajectory: ‖∇L(θ)‖ / ‖∇L(θ₀)‖ (θ₀ = start of training), or ‖∇L‖ / RMS‖∇ℓᵢ‖ when θ₀ is unknown.
GRADIENT_HOLD, GRADIENT_QUESTION = 1e-2, 1e-1
# divergence: the first-order horizon log(1/|ε|)/rate against the longest T asked about. Past the horizon the
# growth factor e^{rT} of the gap exceeds 1/|ε| (= N for removal); by twice the horizon it exceeds it N-fold.
HORIZON_HOLD, HORIZON_QUESTION = 1.0, 0.5
# first_order: ‖actual − linear‖ / ‖linear‖ at each ε; linear = the smallest-ε response scaled to ε.
REMAINDER_HOLD, REMAINDER_QUESTION = 0.1, 0.5


def _grade(value: float | None, hold: float, question: float, higher_is_better: bool = False) -> str | None:
    if value is None or value != value:
        return None
    if higher_is_better:
        return "holds" if value >= hold else "questionable" if value >= question else "violated"
    return "holds" if value <= hold else "questionable" if value <= question else "violated"


def _worst(*verdicts: str | None) -> str:
    given = [v for v in verdicts if v is not None]
    return max(given, key=VERDICTS.index) if given else "questionable"


def _num(x: Any) -> Any:
    """JSON-ready: tensors and numbers to floats, non-finite to ``None``, recursively."""
    if isinstance(x, Tensor):
        x = x.tolist()
    if isinstance(x, dict):
        return {str(k): _num(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_num(v) for v in x]
    if isinstance(x, bool) or x is None or isinstance(x, (str, int)):
        return x
    x = float(x)
    return x if math.isfinite(x) else None


def spearman_rows(a: Tensor, b: Tensor) -> float:
    """Mean over rows of the Spearman rank correlation between ``a[q]`` and ``b[q]`` (``[n_queries, n]``)."""
    def ranks(x: Tensor) -> Tensor:
        r = torch.empty_like(x, dtype=torch.float64)
        r.scatter_(1, x.argsort(1), torch.arange(x.shape[1], dtype=torch.float64).expand_as(x).contiguous())
        return r - r.mean(1, keepdim=True)
    ra, rb = ranks(a.double()), ranks(b.double())
    num = (ra * rb).sum(1)
    den = (ra.norm(dim=1) * rb.norm(dim=1)).clamp_min(1e-300)
    return float((num / den).mean())


def pearson(a: Tensor, b: Tensor) -> float:
    """Pearson correlation of two flattened tensors."""
    a, b = a.double().flatten(), b.double().flatten()
    a, b = a - a.mean(), b - b.mean()
    den = float(a.norm() * b.norm())
    return float(a @ b) / den if den > 0 else float("nan")


def growth_rate(steps: Sequence[int], gap: Sequence[float]) -> tuple[float, float]:
    """Least-squares fit, in log space, of ``gap(T) ≈ c·(e^{rT} − 1)/r`` (``r`` < 0 saturates, ``r`` = 0 is linear);
    returns ``(r, c)``. This is the shape of the Gronwall bound on ``‖θ_ε(T) − θ(T)‖``."""
    from scipy.optimize import minimize_scalar
    t = torch.tensor([float(s) for s in steps], dtype=torch.float64)
    g = torch.tensor([float(v) for v in gap], dtype=torch.float64)
    keep = g > 0
    t, logg = t[keep], g[keep].log()
    if len(t) < 2:
        return float("nan"), float("nan")

    def shape(r: float) -> Tensor:
        return t if abs(r) < 1e-12 else torch.expm1(r * t) / r

    def loss(r: float) -> tuple[float, float]:
        logs = shape(r).log()
        logc = float((logg - logs).mean())
        return float(((logg - logs - logc) ** 2).sum()), logc
    bound = 50.0 / float(t.max())
    best = minimize_scalar(lambda r: loss(r)[0], bounds=(-bound, bound), method="bounded",
                           options={"xatol": 1e-6 / float(t.max())})
    r = float(best.x)
    return r, math.exp(loss(r)[1])


def _subset(ds: Dataset, idx: Tensor) -> Dataset:
    if isinstance(ds, (TensorDataset, DictDataset)):
        return as_dataset(take(ds, idx), "training subset")
    return Subset(ds, idx.tolist())


def _variant(inf: Influence, train: Dataset | None = None, **overrides: Any) -> Influence:
    """A fitted copy of ``inf`` with some options changed (e.g. ``dtype``, ``rank``, ``damping``) or other training data
    for its curvature."""
    config = dict(inf.config)
    method = config.pop("method")
    config.update(overrides)
    if method == "arnoldi" and train is None and set(overrides) == {"damping"}:
        # ABIF adds damping to the kept eigenvalues after the fit: reuse the eigenpairs instead of refitting
        v = Influence(inf.task, inf.train, method, progress=inf.show_progress, **config)
        est = copy.copy(inf.estimator)
        est.ctx = dataclasses.replace(est.ctx, damping=float(overrides["damping"]))
        est.set_eigenpairs(est.pairs)
        v.estimator = est
        return v
    return Influence(inf.task, inf.train if train is None else train, method, progress=inf.show_progress,
                     **config).fit()


def _embed(inf: Influence, data: Dataset, indices: Tensor, side: str) -> Tensor:
    est = inf.estimator
    assert est is not None
    f = est.query_embed if side == "query" else est.train_embed
    with inf.task.evaluating():
        return torch.cat([f(inf.task.cast(b, inf.dtype)) for _, b in batches(data, inf.config["batch_size"], indices)])


def _scores(inf: Influence, queries: Dataset, q_idx: Tensor, t_idx: Tensor, train: Dataset | None = None) -> Tensor:
    """``scores[q, i]`` (float64) for the queries at ``q_idx`` and the training examples at ``t_idx`` of ``train``
    (default: the influence's own training set, which may differ from the one its curvature was fitted on)."""
    q = _embed(inf, queries, q_idx, "query")
    t = _embed(inf, inf.train if train is None else train, t_idx, "train")
    return (q @ t.T).double()


@contextlib.contextmanager
def _model_at(inf: Influence, state: Mapping[str, Tensor]) -> Iterator[None]:
    """Temporarily load ``state`` into the model's parameters (e.g. an earlier checkpoint)."""
    named = dict(inf.task.model.named_parameters())
    missing = sorted(set(inf.task.parameter_names) - set(state))
    if missing:
        raise ConfigError(f"checkpoint lacks parameters {missing[:3]}; give model.state_dict() or the params dict")
    saved = {k: p.detach().clone() for k, p in named.items()}
    load_params(inf.task.model, {k: v for k, v in state.items() if k in named})
    try:
        yield
    finally:
        load_params(inf.task.model, saved)


def _as_state(item: Any, i: int) -> Mapping[str, Tensor]:
    if isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], Mapping):
        return item[0]  # (state, learning rate), as training.TrainResult.checkpoints records them
    if isinstance(item, Mapping):
        return item
    raise ConfigError(f"checkpoint {i} must be a state dict or a (state dict, learning rate) pair, "
                      f"not {type(item).__name__}")


ADVICE: dict[str, dict[str, str]] = {
    "convexity": {
        "holds": "no material negative curvature: inverting the Hessian is well defined here",
        "questionable": "some negative curvature: keep select='positive' (the default) and read scores as "
                        "effects of continued training over a bounded horizon",
        "violated": "the checkpoint is a saddle or far from a minimum: classic (exact/CG/LiSSA) scores follow "
                    "negative directions with flipped sign; use arnoldi with select='positive', train further or "
                    "add weight decay",
    },
    "stability": {
        "holds": "scores are insensitive to precision, rank, Hessian sample and damping",
        "questionable": "scores move with the numerical choices: trust top-k lists more than values",
        "violated": "scores are dominated by numerical choices",
    },
    "trajectory": {
        "holds": "the checkpoint is near a stationary point: scores describe a local optimum",
        "questionable": "training has not settled: scores describe continued training from this checkpoint, "
                        "not a retrained optimum",
        "violated": "far from a stationary point: scores change along training; train to convergence before "
                    "reading them, or read them only as the effect of the next few steps",
    },
    "divergence": {
        "holds": "perturbed and unperturbed trajectories stay close over the horizons asked about",
        "questionable": "trajectories diverge within the horizons asked about: trust predictions only up to the "
                        "reported horizon",
        "violated": "trajectories diverge quickly: influence fades within a few steps; use method='horizon' "
                    "with a short horizon, or only small-T predictions",
    },
    "first_order": {
        "holds": "the actual response is linear in ε: removal acts like a scaled small up-weighting, so "
                 "first-order magnitudes apply",
        "questionable": "the magnitude of large perturbations (removal) is off, rankings survive: use rankings, "
                        "or small-ε up-weighting semantics for magnitudes",
        "violated": "even rankings of large perturbations depart from the first-order prediction: read scores "
                    "only for small up-weighting",
    },
}


STABILITY_HINTS = {
    "condition": "κ·u is large: use dtype=torch.float64 or keep fewer eigenvalues",
    "residual": "kept Ritz pairs have not converged: raise iterations or lower rank",
    "float32_vs_float64": "precision changes the scores: use dtype=torch.float64",
    "rank_k_vs_2k": "the scores depend on how many eigenpairs are kept: the truncation decides them, so read "
                    "only what agrees across ranks",
    "disjoint_hessian_samples": "two halves of the data give different eigenvectors: use more examples for the "
                                "curvature (hessian_samples) or a lower rank",
    "damping": "the smallest kept eigenvalues drive the scores: add damping or lower rank",
}


@dataclass
class Diagnosis:
    """``assumptions[name]`` = ``{"verdict", "advice", ...figures}`` for each check run; see ``to_dict``."""

    assumptions: dict[str, dict[str, Any]]
    config: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The content of ``diagnose.json``."""
        return _num({"assumptions": self.assumptions, "config": self.config, "seconds": self.seconds})

    def failing(self) -> list[str]:
        """Names of the assumptions whose verdict is not ``holds``."""
        return [k for k, v in self.assumptions.items() if v["verdict"] != "holds"]

    def table(self) -> str:
        """A plain-text summary: one row per assumption with its verdict, key figures and advice."""
        rows = [(name, a["verdict"], _key_figures(name, a), a["advice"]) for name, a in self.assumptions.items()]
        w0, w1, w2 = (max(len(r[i]) for r in rows + [("assumption", "verdict", "key figures", "")]) for i in range(3))
        lines = [f"{'assumption':<{w0}}  {'verdict':<{w1}}  {'key figures':<{w2}}  advice"]
        lines += [f"{a:<{w0}}  {v:<{w1}}  {k:<{w2}}  {adv}" for a, v, k, adv in rows]
        bad = self.failing()
        lines.append("all assumptions hold" if not bad else
                     "not holding: " + ", ".join(f"{b} ({self.assumptions[b]['verdict']})" for b in bad))
        return "\n".join(lines)

    def write(self, directory: str | Path) -> list[Path]:
        """Write ``diagnose.json`` and the figures (``diagnose_*.png``) into ``directory``; return the paths."""
        directory = Path(directory)
        paths = [write_json(directory / "diagnose.json", self.to_dict())]
        return paths + plot(self.to_dict(), directory)


def _fmt(x: Any) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float) and x != 0 and (abs(x) < 1e-2 or abs(x) >= 1e4):
        return f"{x:.2g}"
    return f"{x:.3g}" if isinstance(x, float) else str(x)


def _key_figures(name: str, a: dict[str, Any]) -> str:
    a = _num(a)
    if name == "convexity":
        return (f"λmax {_fmt(a['lambda_max'])}, λmin {_fmt(a['lambda_min'])}, |λmin|/λmax "
                f"{_fmt(a['negative_ratio'])}, kept negative {a['kept_negative']}/"
                + ("whole spectrum" if a["kept"] is None else str(a["kept"])))
    if name == "stability":
        agree = {k: v for k, v in a["agreement"].items() if v is not None}
        low = min(agree, key=agree.get) if agree else None
        return (f"κ {_fmt(a['condition'])}, residual {_fmt(a['max_relative_residual'])}, lowest agreement "
                + (f"{low} {_fmt(agree[low])}" if low else "n/a"))
    if name == "trajectory":
        return (f"grad ratio {_fmt(a['gradient_ratio'])} ({a['gradient_reference']})"
                + (f", checkpoint agreement {_fmt(a['checkpoint_agreement'][-1])}" if a["checkpoint_agreement"]
                   else ""))
    if name == "divergence":
        return (f"gap {_fmt(a['gap'][0])}→{_fmt(a['gap'][-1])} over T {a['steps'][0]}→{a['steps'][-1]}, rate "
                f"{_fmt(a['rate'])}/step (peak {_fmt(a['peak_rate'])}), horizon {_fmt(a['horizon']) if a['horizon'] is not None else 'unbounded'}")
    if name == "first_order":
        return f"max remainder {_fmt(a['max_remainder'])}, min R² {_fmt(min(a['r2']))}"
    return ""


class _Stage:
    """A top-level progress bar over the checks (per-check bars below it come from the core)."""

    def __init__(self, total: int, show: bool):
        self.bar = tqdm(total=total, desc="diagnose", file=sys.stderr, leave=False, disable=not show, position=0)

    def step(self, name: str) -> None:
        self.bar.set_postfix_str(name)

    def done(self) -> None:
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def diagnose(influence: Influence, queries: Any = None, *, checks: Sequence[str] = CHECKS,
             n_queries: int = 20, n_train: int = 200, n_ids: int = 8, steps: Sequence[int] = (1, 3, 10, 30, 100, 300),
             epsilons: Sequence[float] = (0.1, 1.0), reference_epsilon: float = 0.01,
             spectrum_iterations: int = 100, damping_factors: Sequence[float] = (1e-3, 1e-2),
             initial: Mapping[str, Tensor] | None = None, checkpoints: Sequence[Any] | None = None,
             schedule: Schedule | None = None, ground_truth_dtype: torch.dtype = torch.float64,
             directory: str | Path | None = None, seed: int = 0) -> Diagnosis:
    """Measure the five assumptions of ``score = ∇ℓ(q)ᵀ H⁻¹ ∇ℓ(z)`` at the influence's checkpoint.

    ``queries`` (default: ``n_queries`` training examples) and ``n_train`` seeded training examples are scored for
    the agreement figures; ``n_ids`` seeded training examples are removed / up-weighted by each ε in ``epsilons``
    (and by ``reference_epsilon``, the linear reference) for the ground truth, which continues training from the
    checkpoint by ``schedule`` (default: full-batch GD with lr 1/λ_max) for each ``T`` in ``steps``. ``initial``
    (parameters at the start of training) and ``checkpoints`` (earlier states, oldest first) feed the trajectory
    check. With ``directory``, writes ``diagnose.json`` and figures there.
    """
    t0 = time.time()
    unknown = sorted(set(checks) - set(CHECKS))
    if unknown or not checks:
        raise ConfigError(f"unknown check(s) {unknown or checks}; choose from {CHECKS}")
    for name, value in (("n_queries", n_queries), ("n_train", n_train), ("n_ids", n_ids),
                        ("spectrum_iterations", spectrum_iterations)):
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
    inf = influence
    if inf.estimator is None:
        inf.fit()
    gen = torch.Generator().manual_seed(seed)
    n = inf.n_train
    if queries is None:
        qdata = inf.train
        q_idx = torch.randperm(n, generator=gen)[:n_queries].sort().values
    else:
        qdata = as_dataset(queries, "queries")
        q_idx = torch.arange(min(n_queries, len(qdata)))  # type: ignore[arg-type]
    t_idx = torch.randperm(n, generator=gen)[:n_train].sort().values
    ids = torch.randperm(n, generator=gen)[:n_ids].sort().values
    run = [c for c in CHECKS if c in checks]
    stage = _Stage(len(run), inf.show_progress)
    out: dict[str, dict[str, Any]] = {}
    cache: dict[str, Any] = {}
    try:
        spectrum = _Spectrum(inf, spectrum_iterations, seed)
        for name in run:
            stage.step(name)
            if name == "convexity":
                out[name] = _convexity(inf, spectrum)
            elif name == "stability":
                out[name] = _stability(inf, spectrum, qdata, q_idx, t_idx, damping_factors)
            elif name == "trajectory":
                out[name] = _trajectory(inf, qdata, q_idx, t_idx, initial, checkpoints, gen)
            else:
                if "removal" not in cache:
                    sched = schedule or _default_schedule(inf, spectrum, max(steps), seed)
                    cache["schedule"] = sched
                    cache["removal"] = actual_changes(inf.task, inf.train, take(qdata, q_idx), ids, steps, sched,
                                                      mode="remove", dtype=ground_truth_dtype,
                                                      progress=inf.show_progress)
                if name == "divergence":
                    out[name] = _divergence(cache["removal"], n, cache["schedule"])
                else:
                    out[name] = _first_order(inf, cache["removal"], qdata, q_idx, ids, steps, cache["schedule"],
                                             epsilons, reference_epsilon, ground_truth_dtype)
            advice = ADVICE[name][out[name]["verdict"]]
            hints = [STABILITY_HINTS[p] for p in out[name].get("problems", [])]
            out[name]["advice"] = advice + ("; " + "; ".join(dict.fromkeys(hints)) if hints else "")
            stage.done()
    finally:
        stage.close()
    config = dict(method=inf.method, rank=inf.config.get("rank"), iterations=inf.config.get("iterations"),
                  dtype=str(inf.dtype).replace("torch.", ""), damping=inf.config["damping"],
                  weight_decay=inf.config["weight_decay"], n_train_total=n, n_queries=len(q_idx),
                  n_train_scored=len(t_idx), n_ids=len(ids), steps=steps, epsilons=list(epsilons),
                  reference_epsilon=reference_epsilon, spectrum_iterations=spectrum_iterations, seed=seed)
    result = Diagnosis(out, config, time.time() - t0)
    if directory is not None:
        result.write(directory)
    return result


class _Spectrum:
    """Arnoldi on ``H`` and on ``−H`` (lazily), with the operator the influence itself uses (weight decay included)."""

    def __init__(self, inf: Influence, iterations: int, seed: int):
        self.inf, self.iterations, self.seed = inf, iterations, seed
        self._runs: dict[str, Any] = {}

    @property
    def op(self) -> Curvature:
        if "op" not in self._runs:
            self._runs["op"] = self.inf.estimator.ctx.curvature_operator(damping=0.0)  # type: ignore[union-attr]
        return self._runs["op"]

    def run(self, sign: int):
        key = "top" if sign > 0 else "bottom"
        if key not in self._runs:
            op = self.op
            bar = self.inf._bar(f"Arnoldi on {'H' if sign > 0 else '-H'}", min(self.iterations, op.dim))
            res = arnoldi((lambda v: op.matvec(v)) if sign > 0 else (lambda v: -op.matvec(v)), op.dim,
                          self.iterations, seed=self.seed, dtype=self.inf.dtype,
                          progress=(lambda j: bar.update(1)) if bar is not None else None)
            if bar is not None:
                bar.close()
            m = res.steps
            vals = torch.linalg.eigvalsh(((res.H[:m, :m] + res.H[:m, :m].T) / 2).double())
            self._runs[key] = (res, sign * vals.flip(0))  # eigenvalues of H, from the extreme inwards
        return self._runs[key]

    @property
    def lambda_max(self) -> float:
        return float(self.run(+1)[1][0])

    @property
    def lambda_min(self) -> float:
        return float(self.run(-1)[1][0])


def _kept(inf: Influence) -> Tensor | None:
    est = inf.estimator
    values = getattr(est, "pairs", None)
    return None if values is None else values.values.double() + inf.config["damping"]


def _convexity(inf: Influence, sp: _Spectrum) -> dict[str, Any]:
    top, bottom = sp.run(+1)[1], sp.run(-1)[1]
    lmax, lmin = float(top[0]), float(bottom[0])
    scale = max(abs(lmax), abs(lmin), 1e-300)
    tol = NEGATIVE_HOLD * scale  # Ritz values this close to 0 are not counted as curvature of either sign
    neg = bottom[bottom < -tol]
    pos = top[top > tol]
    ratio = max(0.0, -lmin) / lmax if lmax > 0 else float("inf")
    kept = _kept(inf)
    if kept is not None:
        kept_negative, n_kept = int((kept < 0).sum()), len(kept)
    elif inf.method in ("exact", "cg", "lissa"):  # they invert the whole spectrum
        kept_negative, n_kept = len(neg), None
    else:
        kept_negative, n_kept = 0, 0
    verdict = _grade(ratio, NEGATIVE_HOLD, NEGATIVE_QUESTION)
    if kept_negative:
        verdict = "violated"
    return dict(verdict=verdict, lambda_max=lmax, lambda_min=lmin, negative_ratio=ratio,
                negative_count=len(neg), negative_mass=float(neg.abs().sum() / pos.sum()) if len(pos) else None,
                kept=n_kept, kept_negative=kept_negative, iterations=sp.iterations,
                ritz_top=top, ritz_bottom=bottom)


def _stability(inf: Influence, sp: _Spectrum, qdata: Dataset, q_idx: Tensor, t_idx: Tensor,
               damping_factors: Sequence[float]) -> dict[str, Any]:
    base = _scores(inf, qdata, q_idx, t_idx)
    eps = torch.finfo(inf.dtype).eps
    kept = _kept(inf)
    curvature_based = inf.method not in ("graddot", "tracin")
    if kept is not None:
        condition = float(kept.abs().max() / kept.abs().min())
        residuals = inf.estimator.pairs.residuals.double()  # type: ignore[union-attr]
        rel = float((residuals / kept.abs()).max())
    elif curvature_based:  # the whole spectrum is inverted; the Ritz extremes bound κ from below
        ritz = torch.cat([sp.run(+1)[1], sp.run(-1)[1]]).abs() + inf.config["damping"]
        condition, rel = float(ritz.max() / ritz.min().clamp_min(1e-300)), None
    else:
        condition, rel = None, None
    agreement: dict[str, float | None] = {}
    other = torch.float64 if inf.dtype == torch.float32 else torch.float32
    agreement["float32_vs_float64"] = spearman_rows(base, _scores(_variant(inf, dtype=other), qdata, q_idx, t_idx))
    if inf.method == "arnoldi":
        k = len(kept)  # type: ignore[arg-type]
        if 2 * k <= sp.op.dim:
            wide = _variant(inf, rank=2 * k, iterations=max(int(inf.config["iterations"]), 4 * k))
            agreement["rank_k_vs_2k"] = spearman_rows(base, _scores(wide, qdata, q_idx, t_idx))
        else:
            agreement["rank_k_vs_2k"] = None  # k is already at least half the dimension
    if curvature_based:
        perm = torch.randperm(inf.n_train, generator=torch.Generator().manual_seed(inf.config["seed"] + 7))
        half = inf.n_train // 2
        a, b = (_variant(inf, train=_subset(inf.train, perm[s].sort().values))
                for s in (slice(0, half), slice(half, 2 * half)))
        agreement["disjoint_hessian_samples"] = spearman_rows(_scores(a, qdata, q_idx, t_idx, inf.train),
                                                              _scores(b, qdata, q_idx, t_idx, inf.train))
        for f in damping_factors:
            damped = _variant(inf, damping=inf.config["damping"] + f * sp.lambda_max)
            agreement[f"damping_{f:g}_lambda_max"] = spearman_rows(base, _scores(damped, qdata, q_idx, t_idx))
    grades = {"condition": _grade(None if condition is None else condition * eps, CONDITION_HOLD, CONDITION_QUESTION),
              "residual": _grade(rel, RESIDUAL_HOLD, RESIDUAL_QUESTION),
              **{k: _grade(v, AGREE_HOLD, AGREE_QUESTION, higher_is_better=True) for k, v in agreement.items()}}
    problems = list(dict.fromkeys("damping" if k.startswith("damping") else k for k, g in grades.items()
                                  if g not in (None, "holds")))
    return dict(verdict=_worst(*grades.values()), condition=condition, machine_epsilon=eps,
                condition_times_epsilon=None if condition is None else condition * eps, max_relative_residual=rel,
                agreement=agreement, problems=problems)


def _trajectory(inf: Influence, qdata: Dataset, q_idx: Tensor, t_idx: Tensor, initial: Mapping[str, Tensor] | None,
                checkpoints: Sequence[Any] | None, gen: torch.Generator) -> dict[str, Any]:
    ctx = inf.estimator.ctx  # type: ignore[union-attr]
    op = ctx.curvature_operator(damping=0.0)
    loss, g = op.loss_and_grad()
    grad_norm = float(g.norm())
    out: dict[str, Any] = dict(loss=loss, gradient_norm=grad_norm)
    if initial is not None:
        missing = sorted(set(ctx.params) - set(initial))
        if missing:
            raise ConfigError(f"initial parameters lack {missing[:3]}; give the model's state dict at the start of "
                              "training")
        p0 = {k: initial[k].detach().to(inf.dtype) for k in ctx.params}
        start = Curvature(inf.task, p0, ctx.rest, op.batches, weight_decay=ctx.weight_decay)
        loss0, g0 = start.loss_and_grad()
        out.update(initial_loss=loss0, initial_gradient_norm=float(g0.norm()),
                   gradient_ratio=grad_norm / max(float(g0.norm()), 1e-300), gradient_reference="start of training")
    else:
        # without the start, compare the mean gradient with the per-example ones it averages (0 = stationary)
        sample = torch.randperm(inf.n_train, generator=gen)[:256]
        theta = op.space.flatten(ctx.params)
        sq = 0.0
        with inf.task.evaluating():
            for _, b in batches(inf.train, 32, sample):
                gi = ctx.grads(inf.task.cast(b, inf.dtype)) + ctx.weight_decay * theta
                sq += float((gi * gi).sum())
        rms = math.sqrt(sq / len(sample))
        out.update(example_gradient_rms=rms, gradient_ratio=grad_norm / max(rms, 1e-300),
                   gradient_reference="per-example gradients")
    agreement: list[float] = []
    if checkpoints:
        base = _scores(inf, qdata, q_idx, t_idx)
        for i, item in enumerate(checkpoints):
            with _model_at(inf, _as_state(item, i)):
                earlier = _variant(inf)
            agreement.append(spearman_rows(base, _scores(earlier, qdata, q_idx, t_idx)))
    out["checkpoint_agreement"] = agreement
    out["verdict"] = _worst(_grade(out["gradient_ratio"], GRADIENT_HOLD, GRADIENT_QUESTION),
                            _grade(agreement[-1], AGREE_HOLD, AGREE_QUESTION, True) if agreement else None)
    return out


def _default_schedule(inf: Influence, sp: _Spectrum, steps: int, seed: int) -> Schedule:
    """Full-batch gradient descent with lr ``1/λ_max`` and the influence's weight decay: continued training as the scores' ground truth."""
    lmax = sp.lambda_max
    if not lmax > 0:
        raise ConfigError(f"the top Hessian eigenvalue is {lmax:.3g} (not positive): no stable GD step exists; "
                          "pass schedule=... for the continued training")
    return Schedule(make_batches(inf.n_train, steps, None, seed), lr=1.0 / lmax, optimizer="sgd",
                    weight_decay=inf.config["weight_decay"])


def _schedule_info(s: Schedule) -> dict[str, Any]:
    return dict(optimizer=s.optimizer, lr=s.lr, batch_size=len(s.batches[0]), weight_decay=s.weight_decay)


def peak_rate(steps: Sequence[int], gap: Sequence[float]) -> float:
    """The largest exponential rate beyond linear growth between consecutive horizons:
    ``max_i [log(g_{i+1}/g_i) − log(T_{i+1}/T_i)] / (T_{i+1} − T_i)`` (catches a burst that later saturates)."""
    rates = [(math.log(g1 / g0) - math.log(t1 / t0)) / (t1 - t0)
             for t0, t1, g0, g1 in zip(steps, steps[1:], gap, gap[1:]) if g0 > 0 and g1 > 0]
    return max(rates) if rates else float("nan")


def _divergence(gt: GroundTruth, n: int, schedule: Schedule) -> dict[str, Any]:
    gap = gt.gap.double().mean(1)
    rate, scale = growth_rate(gt.steps, gap.tolist())
    peak = peak_rate(gt.steps, gap.tolist())
    eps = 1.0 / n  # removal from a mean over n examples
    worst = max(r for r in (rate, peak) if r == r) if (rate == rate or peak == peak) else float("nan")
    horizon = math.log(1 / eps) / worst if worst > 0 else float("inf")
    verdict = _grade(horizon / max(gt.steps), HORIZON_HOLD, HORIZON_QUESTION, higher_is_better=True)
    return dict(verdict=verdict, steps=gt.steps, gap=gap, gap_per_id=gt.gap.double().T, ids=gt.ids,
                rate=rate, fit_scale=scale, peak_rate=peak, epsilon=eps,
                horizon=horizon if math.isfinite(horizon) else None, schedule=_schedule_info(schedule))


def _first_order(inf: Influence, removal: GroundTruth, qdata: Dataset, q_idx: Tensor, ids: Tensor,
                 steps: Sequence[int], schedule: Schedule, epsilons: Sequence[float], reference: float,
                 dtype: torch.dtype) -> dict[str, Any]:
    queries = take(qdata, q_idx)

    def run(eps: float) -> Tensor:
        if eps == -1.0:
            return removal.delta.double()
        return actual_changes(inf.task, inf.train, queries, ids, steps, schedule, mode="upweight", epsilon=eps,
                              dtype=dtype, progress=inf.show_progress).delta.double()
    ref = run(reference)
    eps_all = [-1.0] + [float(e) for e in epsilons if float(e) != -1.0]
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
    worst = max(max(v) for v in remainder.values())
    ranks_kept = min(min(v) for v in correlation.values()) >= AGREE_HOLD
    verdict = _grade(worst, REMAINDER_HOLD, REMAINDER_QUESTION)
    if verdict == "violated" and ranks_kept:
        verdict = "questionable"
    return dict(verdict=verdict, steps=list(steps), epsilons=eps_all, reference_epsilon=reference,
                remainder=remainder, pearson_with_linear=correlation, r2=r2, max_remainder=worst,
                linear_up_to=_linear_up_to(steps, remainder), schedule=_schedule_info(schedule))


def _linear_up_to(steps: Sequence[int], remainder: dict[str, list[float]]) -> int | None:
    """The largest T up to which every ε's remainder stays within ``REMAINDER_HOLD``."""
    last = None
    for t, s in enumerate(steps):
        if all(v[t] <= REMAINDER_HOLD for v in remainder.values()):
            last = s
        else:
            break
    return last


def _against_t(ax, ylabel: str, title: str) -> None:
    """Log-log axes of a quantity against the horizon T, with its legend."""
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("T (steps of continued training)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()


def plot(diagnosis: Mapping[str, Any], directory: str | Path) -> list[Path]:
    """Figures from a ``diagnose.json`` dict: the spectrum, the gap against T, the remainder against T."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    a = diagnosis["assumptions"]
    paths: list[Path] = []
    if "convexity" in a:
        c = a["convexity"]
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(range(1, len(c["ritz_top"]) + 1), c["ritz_top"], ".", label="Arnoldi on H (top)")
        ax.plot(range(1, len(c["ritz_bottom"]) + 1), c["ritz_bottom"], ".", label="Arnoldi on −H (bottom)")
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_yscale("symlog", linthresh=max(abs(c["lambda_max"]) * NEGATIVE_HOLD, 1e-12))
        ax.set_xlabel("Ritz value index (from the extreme inwards)")
        ax.set_ylabel("eigenvalue of H")
        ax.set_title(f"convexity: {c['verdict']}")
        ax.legend()
        paths.append(_save(fig, directory / "diagnose_spectrum.png"))
    if "divergence" in a:
        d = a["divergence"]
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for row in d["gap_per_id"]:
            ax.plot(d["steps"], row, color="C0", alpha=0.3, lw=0.8)
        ax.plot(d["steps"], d["gap"], "o-", color="C0", label="mean gap")
        if d["rate"] is not None:
            t = torch.tensor(d["steps"], dtype=torch.float64)
            r = d["rate"]
            fit = d["fit_scale"] * (t if abs(r) < 1e-12 else torch.expm1(r * t) / r)
            ax.plot(d["steps"], fit.tolist(), "--", color="C1", label=f"fit c(e^(rT)−1)/r, r={r:.3g}")
        _against_t(ax, "‖θ_ε(T) − θ(T)‖", f"divergence: {d['verdict']}")
        paths.append(_save(fig, directory / "diagnose_gap.png"))
    if "first_order" in a:
        f = a["first_order"]
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for e, values in f["remainder"].items():
            ax.plot(f["steps"], values, "o-", label=f"ε = {e}" + (" (removal)" if e == "-1" else ""))
        ax.axhline(REMAINDER_HOLD, color="grey", ls=":", lw=0.8)
        _against_t(ax, "‖actual − linear‖ / ‖linear‖", f"first order: {f['verdict']}")
        paths.append(_save(fig, directory / "diagnose_first_order.png"))
    return paths


def _save(fig, path: Path) -> Path:
    import io

    from .store import atomic_write_bytes
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    import matplotlib.pyplot as plt
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())
