"""What every estimator is: a pair of embeddings with ``scores = query_embed @ train_embedᵀ``."""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..core.curvature import Curvature
from ..core.data import Batch, take
from ..core.params import Params, ParamSpace
from ..core.projection import DEFAULT_MEMORY_BUDGET, per_example_grads, projected_grads
from ..core.task import Task

CURVATURE_BATCH_CAP = 2048


@dataclass
class NoOptions:
    """A method without options of its own."""


@dataclass
class Context:
    """Everything an estimator reads: the task at the checkpoint, the training data and the shared options."""

    task: Task
    params: Params
    rest: dict[str, Tensor]
    train: Dataset
    batch_size: int
    dtype: torch.dtype
    seed: int
    weight_decay: float
    damping: float | None  # None only for a method whose default_damping is None (it chooses its own)
    hessian_samples: int | None
    curvature: str
    projection: str
    progress: Callable[[str, int], Any] = field(default=lambda desc, total: None)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))  # where params, batches, products live
    spectrum: Callable[[], Any] | None = None  # () -> krylov.Spectrum of the curvature, fitted once per run
    projection_dtype: torch.dtype | None = None  # low-precision projections (float32 accumulation); None: dtype
    time_budget_s: float | None = None  # seconds the fit may take; the estimator sizes its work to it

    def lambda_max(self) -> float:
        """The top curvature eigenvalue (the run's fitted spectrum; computed once and saved when first needed)."""
        if self.spectrum is None:  # a context built without an Influence: compute the spectrum here, once
            from ..core.krylov import spectrum
            op = self.curvature_operator(damping=0.0)
            fitted = spectrum(op.matvec, op.dim, 60, seed=self.seed, dtype=self.dtype, device=self.device)
            self.spectrum = lambda: fitted
        return self.spectrum().lambda_max

    @property
    def space(self) -> ParamSpace:
        return ParamSpace(self.params)

    def hessian_indices(self, samples: int | None = None, offset: int = 0) -> Tensor:
        """The training examples the curvature is averaged over: all, or a seeded sample of ``hessian_samples`` (or
        ``samples``); ``offset`` skips that many of the seeded order, giving a disjoint sample (for a check)."""
        n = len(self.train)  # type: ignore[arg-type]
        samples = self.hessian_samples if samples is None else samples
        if offset == 0 and (samples is None or samples >= n):
            return torch.arange(n)
        gen = torch.Generator().manual_seed(self.seed + 1)
        return torch.randperm(n, generator=gen)[offset: offset + (n if samples is None else samples)].sort().values

    def curvature_operator(self, damping: float | None = None, samples: int | None = None,
                           offset: int = 0) -> Curvature:
        """The curvature operator (+ weight decay, + ``damping`` or the shared damping) on the Hessian sample (or on
        ``hessian_indices(samples, offset)``)."""
        idx = self.hessian_indices(samples, offset)
        size = self.curvature_batch_size()
        op = Curvature(self.task, self.params, self.rest,
                       [self.task.cast(take(self.train, idx[s:s + size]), self.dtype, self.device)
                        for s in range(0, len(idx), size)],
                       weight_decay=self.weight_decay, damping=(self.damping or 0.0) if damping is None else damping,
                       kind=self.curvature)
        op.positions = [idx[s:s + size] for s in range(0, len(idx), size)]
        return op

    def curvature_batch_size(self) -> int:
        """Examples per curvature-product batch: ``batch_size``, raised for small models so that per-batch overhead
        does not dominate: as many examples as per-example gradients would fit in ``DEFAULT_MEMORY_BUDGET``, at most
        ``CURVATURE_BATCH_CAP`` (vectorised products multiply activation memory by the number of vectors)."""
        itemsize = torch.finfo(self.dtype).bits // 8
        return max(self.batch_size, min(CURVATURE_BATCH_CAP, DEFAULT_MEMORY_BUDGET // (self.space.dim * itemsize)))

    def grads(self, batch: Batch, params: Params | None = None, rest: Mapping[str, Tensor] | None = None) -> Tensor:
        """``[B, dim]`` per-example loss gradients at the checkpoint (or at ``params``)."""
        return per_example_grads(self.task, self.params if params is None else params,
                                 self.rest if rest is None else rest, batch)


class Estimator(ABC):
    """An influence estimator; ``Options`` is the dataclass of its own options, ``OPTIONS`` their defaults.

    Capabilities, read instead of method names: ``uses_curvature`` (its scores depend on the Hessian),
    ``inverts_spectrum`` (it inverts the whole curvature, negative directions included), ``keeps_spectrum`` (its
    fit yields eigenpairs and every Ritz value), ``horizon_aware`` (scores depend on the horizon T of continued
    training and can be evaluated at several T)."""

    name: ClassVar[str]
    Options: ClassVar[type] = NoOptions
    OPTIONS: ClassVar[dict[str, Any]] = {}
    uses_curvature: ClassVar[bool] = False
    inverts_spectrum: ClassVar[bool] = False
    keeps_spectrum: ClassVar[bool] = False
    horizon_aware: bool = False
    reads: ClassVar[frozenset[str]] = frozenset()  # shared options only some methods read (time_budget_s, ...)
    streams_scores: ClassVar[bool] = False  # scores from each training batch beat caching its (wide) embeddings
    refit_free: ClassVar[frozenset[str]] = frozenset()  # options a fitted state absorbs without a refit (rebound())
    direct: ClassVar[bool] = False  # scores without embeddings: ``scores(queries, train_ids)`` (e.g. unrolled)
    default_damping: ClassVar[float | None] = 0.0  # damping=None means this; None: the method chooses its own

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.OPTIONS = {f.name: f.default for f in dataclasses.fields(cls.Options)}

    def __init__(self, ctx: Context, **options: Any):
        from ..options import build, values
        self.ctx = ctx
        self.opts = build(self.Options, options, f"method {getattr(self, 'name', type(self).__name__)!r}")
        self.options = values(self.opts)

    def fit(self) -> None:
        """Compute what the embeddings need once (curvature, basis); default: nothing."""

    @abstractmethod
    def train_embed(self, batch: Batch) -> Tensor:
        """``[B, d]`` embedding of training examples."""

    @abstractmethod
    def query_embed(self, batch: Batch) -> Tensor:
        """``[B, d]`` embedding of query examples; ``score = query_embed · train_embed``."""

    def train_scores(self, batch: Batch, query_emb: Tensor) -> Tensor:
        """``[B, n_queries]``: ``train_embed(batch) · query_emb``."""
        return self.train_embed(batch) @ query_emb.T

    def self_embed(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """Both embeddings of the same examples, for self-influence; estimators may share work here."""
        return self.query_embed(batch), self.train_embed(batch)

    def rebound(self) -> None:
        """Recompute what depends on the options of ``refit_free`` after they changed (see Influence.derive)."""

    def chosen(self) -> dict[str, Any] | None:
        """What the fit chose by itself (e.g. under a time budget), with a ``text`` line; None when nothing."""
        return None

    def scores_over_horizons(self, *args: Any, **kwargs: Any) -> Tensor:
        """Scores at several horizons T: only for ``horizon_aware`` (or ``direct``) estimators."""
        raise NotImplementedError(f"method {getattr(self, 'name', type(self).__name__)!r} has no horizon")

    def state_dict(self) -> dict[str, Tensor]:
        """Tensors that make a fitted estimator, to save; default: none."""
        return {}

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        """Restore what :meth:`state_dict` returned."""


class CurvatureEstimator(Estimator):
    """A method that reads the curvature (its fit builds the operator)."""

    uses_curvature = True


class GradientTrainEmbedding(Estimator):
    """Estimators whose training embedding is the raw gradient ``g`` and whose query side applies a map to it."""

    streams_scores = True

    def train_embed(self, batch: Batch) -> Tensor:
        return self.ctx.grads(batch)

    def train_scores(self, batch: Batch, query_emb: Tensor) -> Tensor:
        """``[B, n_queries]`` = ``G qᵀ`` contracted parameter tensor by parameter tensor: the flat ``[B, dim]``
        gradients are never assembled (their cost would be a multiple of the per-example gradients' own)."""
        out = projected_grads(self.ctx.task, self.ctx.params, self.ctx.rest, batch, query_emb, check=False)
        if not torch.isfinite(out.sum()):  # say which is not finite: the gradients (raises) or only their product
            self.ctx.grads(batch)
        return out

    @abstractmethod
    def apply(self, g: Tensor) -> Tensor:
        """The query-side map applied to gradients ``g`` [B, dim] (e.g. ``H⁻¹g``)."""

    def query_embed(self, batch: Batch) -> Tensor:
        return self.apply(self.ctx.grads(batch))

    def self_embed(self, batch: Batch) -> tuple[Tensor, Tensor]:
        g = self.ctx.grads(batch)
        return self.apply(g), g


class InverseCurvature(GradientTrainEmbedding, CurvatureEstimator):
    """Methods that apply an (approximate) inverse of the whole curvature operator to the query gradient."""

    inverts_spectrum = True

    def fit(self) -> None:
        self.op = self.ctx.curvature_operator()
