"""What the five checks share: thresholds, grading, the probe they measure on, and fitted variants of an influence.

Thresholds are the constants below; docs/diagnose.md states why each is where it is.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset, TensorDataset

from ...core.data import DictDataset, as_dataset, take
from ...core.errors import ConfigError
from ...core.stats import spearman_rows
from ...influence import Influence
from ...truth.training import Schedule, load_params

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
# divergence: the mean per-query Spearman, over the training set, between the frozen-checkpoint response (horizon)
# and the exact one (unrolled), at its lowest over the T asked about: the AGREE thresholds, the same 0.9 as the
# horizon of validity (validity.THRESHOLD), so diagnose and fade read one figure the same way.
# first_order: ‖actual − unrolled‖ / ‖actual‖ of a removal, at its largest over T: within 10% the first-order
# magnitudes hold; beyond 50% they do not, and only rankings (Pearson ≥ AGREE_HOLD at every T) are left.
REMAINDER_HOLD, REMAINDER_QUESTION = 0.1, 0.5


def grade(value: float | None, hold: float, question: float, higher_is_better: bool = False) -> str | None:
    """``holds`` / ``questionable`` / ``violated`` for a figure against its two thresholds (None if unknown)."""
    if value is None or value != value:
        return None
    if higher_is_better:
        return "holds" if value >= hold else "questionable" if value >= question else "violated"
    return "holds" if value <= hold else "questionable" if value <= question else "violated"


def worst(*verdicts: str | None) -> str:
    given = [v for v in verdicts if v is not None]
    return max(given, key=VERDICTS.index) if given else "questionable"


def as_json(x: Any) -> Any:
    """JSON-ready: tensors and numbers to floats, non-finite to ``None``, recursively."""
    if isinstance(x, Tensor):
        x = x.tolist()
    if isinstance(x, dict):
        return {str(k): as_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [as_json(v) for v in x]
    if isinstance(x, bool) or x is None or isinstance(x, (str, int)):
        return x
    x = float(x)
    return x if math.isfinite(x) else None


def lowest(values: Any) -> float:
    """The smallest figure that was measured (NaN and None, a T at which nothing had changed yet, are skipped)."""
    return min((float(v) for v in values if v is not None and v == v), default=float("nan"))


def highest(values: Any) -> float:
    """The largest measured figure, skipping NaN and None as :func:`lowest` does."""
    return -lowest(-float(v) for v in values if v is not None)


def fmt(x: Any) -> str:
    """A figure rounded for a table."""
    if x is None or x != x:
        return "n/a"
    if isinstance(x, float) and x != 0 and (abs(x) < 1e-2 or abs(x) >= 1e4):
        return f"{x:.2g}"
    return f"{x:.3g}" if isinstance(x, float) else str(x)


@dataclass
class Probe:
    """What every check measures on: the fitted influence, the scored queries and training examples, the ids that
    the ground truth re-weights and its horizons, and a cache the ground-truth checks share."""

    inf: Influence
    qdata: Dataset
    q_idx: Tensor
    t_idx: Tensor
    ids: Tensor
    steps: list[int]
    epsilons: Sequence[float]
    reference_epsilon: float
    damping_factors: Sequence[float]
    initial: Mapping[str, Tensor] | None
    checkpoints: Sequence[Any] | None
    schedule: Schedule | None
    truth_dtype: torch.dtype
    refit: bool
    gen: torch.Generator
    cache: dict[str, Any] = field(default_factory=dict)
    eps_ids: Tensor | None = None  # the ids also up-weighted by each ε (a subset of ``ids``; default: all of them)
    krylov: int = 100              # Lanczos steps of the frozen-checkpoint reference (``horizon``)
    reference_hessian_samples: int | None = None  # its Hessian sample (None: the whole training set)

    def embeddings(self, inf: Influence | None = None, train: Dataset | None = None) -> tuple[Tensor, Tensor]:
        """Query and training embeddings of the probe's queries and training positions, by ``inf`` (default: the
        run's), the training side taken from ``train`` (default: the influence's own training set; a variant fitted
        on a subset still embeds the probe's positions of the whole set)."""
        inf = self.inf if inf is None else inf
        q = inf.query_embeddings(take(self.qdata, self.q_idx))
        if train is None:
            return q, inf.train_embeddings(self.t_idx)
        with inf.task.evaluating():
            return q, inf._fitted().train_embed(inf.task.cast(take(train, self.t_idx), inf.dtype))

    def scores(self, inf: Influence | None = None, train: Dataset | None = None) -> Tensor:
        """``scores[q, i]`` (float64) of the probe's queries and training positions (see :meth:`embeddings`)."""
        q, t = self.embeddings(inf, train)
        return (q @ t.T).double()

    def agreement(self, a: Tensor, b: Tensor) -> float:
        return spearman_rows(a, b)


def subset(ds: Dataset, idx: Tensor) -> Dataset:
    if isinstance(ds, (TensorDataset, DictDataset)):
        return as_dataset(take(ds, idx), "training subset")
    return Subset(ds, idx.tolist())


@contextlib.contextmanager
def model_at(inf: Influence, state: Mapping[str, Tensor]) -> Iterator[None]:
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


def as_state(item: Any, i: int) -> Mapping[str, Tensor]:
    if isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], Mapping):
        return item[0]  # (state, learning rate), as training.TrainResult.checkpoints records them
    if isinstance(item, Mapping):
        return item
    raise ConfigError(f"checkpoint {i} must be a state dict or a (state dict, learning rate) pair, "
                      f"not {type(item).__name__}")


def schedule_info(s: Schedule) -> dict[str, Any]:
    return dict(optimizer=s.optimizer, lr=s.lr, batch_size=len(s.batches[0]), weight_decay=s.weight_decay)
