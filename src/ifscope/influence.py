"""``Influence``: fit an estimator at a checkpoint, then score, rank and self-score examples."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from . import distributed
from .checks import check_finite_params, embed_located
from .data import as_dataset, batches, take
from .errors import ConfigError
from .estimators import METHODS, Context, Estimator
from .projection import PATHS
from .scores import TopInfluences, score_matrix, top_k
from .store import CURVATURE, RunDir, data_fingerprint, model_fingerprint
from .task import Task

DTYPES = {"float32": torch.float32, "float64": torch.float64}
CACHE_BUDGET = 1 << 30  # bytes of training embeddings kept in memory


def _dtype(value: Any) -> torch.dtype:
    if isinstance(value, torch.dtype) and value in DTYPES.values():
        return value
    if isinstance(value, str) and value in DTYPES:
        return DTYPES[value]
    raise ConfigError(f"dtype must be torch.float32 or torch.float64 (or 'float32'/'float64'), got {value!r}")


class Influence:
    """Influence of training examples on queries: ``scores[q, i] = ∇ℓ(q)ᵀ H⁻¹ ∇ℓ(zᵢ)`` (positive = proponent).

    The predicted change of query ``q``'s loss when training example ``i`` is removed from a mean over N
    examples is ``+scores[q, i] / N``. ``method`` is one of ``exact``, ``cg``, ``lissa``, ``arnoldi``,
    ``graddot``, ``tracin``, ``horizon`` (``horizon=T, lr=η``: the finite-horizon response
    ``∇ℓ(q)ᵀ H⁻¹(I − (I − ηH)^T) ∇ℓ(z)``), ``unrolled`` (``horizon=T, lr=η, optimizer=...``: the exact
    ``−N ∂ℓ(q, θ_T)/∂wᵢ`` through T steps of continued training); shared options are keyword arguments below, method options
    (e.g. ``rank``, ``iterations`` for arnoldi) are listed by ``Influence.options(method)``.
    With ``workdir``, ``fit`` reuses the curvature saved there for the same model, data and options (and saves it
    otherwise), and training embeddings stream to / resume from shards ``workdir/train/NNNNN.safetensors``.
    """

    def __init__(self, task: Task, train: Any, method: str = "arnoldi", *, damping: float = 0.0,
                 weight_decay: float = 0.0, batch_size: int = 128, seed: int = 0, dtype: Any = torch.float32,
                 hessian_samples: int | None = None, curvature: str = "hessian", projection: str = "auto",
                 progress: bool = True, workdir: Any = None, **method_options: Any):
        if not isinstance(task, Task):
            raise ConfigError(f"task must be an ifscope.Task (e.g. ifscope.classification(model)), "
                              f"not {type(task).__name__}")
        if method not in METHODS:
            raise ConfigError(f"unknown method {method!r}; choose one of {sorted(METHODS)}")
        unknown = sorted(set(method_options) - set(METHODS[method].OPTIONS))
        if unknown:
            raise ConfigError(f"unknown option(s) {unknown} for method {method!r}; its own options are "
                              f"{sorted(METHODS[method].OPTIONS)}, shared ones are damping, weight_decay, batch_size, "
                              "seed, dtype, hessian_samples, curvature, projection, progress")
        for name, value in (("damping", damping), ("weight_decay", weight_decay)):
            if not isinstance(value, (int, float)) or value < 0 or value != value:
                raise ConfigError(f"{name} must be a non-negative number, got {value!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        if hessian_samples is not None and (not isinstance(hessian_samples, int) or hessian_samples < 1):
            raise ConfigError(f"hessian_samples must be a positive integer or None, got {hessian_samples!r}")
        if curvature not in ("hessian", "ggn"):
            raise ConfigError(f"curvature must be 'hessian' or 'ggn', got {curvature!r}")
        if projection not in PATHS:
            raise ConfigError(f"projection must be one of {PATHS}, got {projection!r}")
        self.task, self.method = task, method
        self.train = as_dataset(train, "train")
        self.config: dict[str, Any] = dict(method=method, damping=float(damping), weight_decay=float(weight_decay),
                                           batch_size=batch_size, seed=int(seed), dtype=_dtype(dtype),
                                           hessian_samples=hessian_samples, curvature=curvature,
                                           projection=projection, **{**METHODS[method].OPTIONS, **method_options})
        self.show_progress = progress
        self.estimator: Estimator | None = None
        self._train_emb: Tensor | None = None
        self.run: RunDir | None = None if workdir is None else RunDir(workdir)
        self.reused = False  # fit() loaded the curvature from workdir
        self.dropped: list[str] = []  # artifacts of an older config that fit() removed from workdir
        self._train_emb: tuple[Tensor, Tensor] | None = None
        self.cache_budget = CACHE_BUDGET  # 0 streams the training embeddings anew on every call (memory flat in N)

    @staticmethod
    def options(method: str) -> dict[str, Any]:
        """The method's own options with their defaults."""
        if method not in METHODS:
            raise ConfigError(f"unknown method {method!r}; choose one of {sorted(METHODS)}")
        return dict(METHODS[method].OPTIONS)

    @property
    def n_train(self) -> int:
        return len(self.train)  # type: ignore[arg-type]

    @property
    def dtype(self) -> torch.dtype:
        return self.config["dtype"]

    def _bar(self, desc: str, total: int):
        if not self.show_progress:
            return None
        return tqdm(total=total, desc=desc, file=sys.stderr, leave=False, dynamic_ncols=True)

    def _context(self) -> Context:
        c = self.config
        params, rest = self.task.state(c["dtype"])
        return Context(task=self.task, params=params, rest=rest, train=self.train, batch_size=c["batch_size"],
                       dtype=c["dtype"], seed=c["seed"], weight_decay=c["weight_decay"], damping=c["damping"],
                       hessian_samples=c["hessian_samples"], curvature=c["curvature"], projection=c["projection"],
                       progress=self._bar)

    def fit(self) -> Influence:
        """Fit the estimator at the model's current parameters (curvature, eigenbasis); returns ``self``."""
        torch.manual_seed(self.config["seed"])
        ctx = self._context()
        check_finite_params(ctx.params)
        with self.task.evaluating():
            self.task.check(ctx.params, ctx.rest, self.task.cast(take(self.train, range(min(self.n_train, 8))),
                                                                   ctx.dtype), "training set")
            options = {k: self.config[k] for k in METHODS[self.method].OPTIONS}
            est = METHODS[self.method](ctx, **options)
            self.reused = False
            if self.run is not None:
                self.dropped = self.run.bind({"model": model_fingerprint(self.task.model),
                                              "train": data_fingerprint(self.train)}, self.config)
                if self.run.has(CURVATURE):
                    est.load_state_dict(self.run.load_tensors(CURVATURE))
                    self.reused = True
            if not self.reused:
                est.fit()
                if self.run is not None and est.state_dict():
                    self.run.save_tensors(CURVATURE, est.state_dict())
        self.estimator, self._train_emb = est, None
        return self

    def _fitted(self) -> Estimator:
        if self.estimator is None:
            self.fit()
        assert self.estimator is not None
        return self.estimator

    def _chunks(self, data, embed, desc: str, positions: Tensor | None = None) -> Iterator[tuple[Tensor, Tensor]]:
        n = len(data) if positions is None else len(positions)
        bar = self._bar(desc, n)
        ctx, what = self._fitted().ctx, "training set" if data is self.train else "queries"
        with self.task.evaluating():
            for b, (pos, batch) in enumerate(batches(data, self.config["batch_size"], positions)):
                batch = self.task.cast(batch, self.dtype)
                yield pos, embed_located(embed, self.task, ctx.params, ctx.rest, pos, batch, b, what, desc)
                if bar is not None:
                    bar.update(len(pos))
        if bar is not None:
            bar.close()

    def _local(self) -> Tensor:
        """Training positions this process handles: all, or its rank's block inside a process group."""
        return distributed.local_positions(self.n_train, self.config["batch_size"])

    def _train_chunks(self) -> Iterator[tuple[Tensor, Tensor]]:
        est = self._fitted()
        local = self._local()
        if self._train_emb is not None and torch.equal(self._train_emb[0], local):
            yield self._train_emb
            return
        if self.run is None:
            chunks = self._chunks(self.train, est.train_embed, "training embeddings", local)
        else:
            chunks = self._shards(est, local)
        parts: list[Tensor] = []
        for pos, emb in chunks:
            if emb.shape[1] * len(local) * emb.element_size() <= self.cache_budget:
                parts.append(emb)
            yield pos, emb
        if parts and sum(len(p) for p in parts) == len(local):
            self._train_emb = (local, torch.cat(parts))

    def _shards(self, est: Estimator, local: Tensor) -> Iterator[tuple[Tensor, Tensor]]:
        assert self.run is not None
        with self.task.evaluating():
            yield from self.run.train_shards(
                local, self.config["batch_size"],
                lambda pos: est.train_embed(self.task.cast(take(self.train, pos), self.dtype)),
                self._bar("training embeddings", len(local)))

    def train_embeddings(self) -> Tensor:
        """``[n_train, d]``: the training-side embedding of every training example."""
        local = [emb for _, emb in self._train_chunks()]
        if not local:  # a rank left without batches still needs the embedding width to take part in the gather
            local = [emb[:0] for _, emb in self._chunks(self.train, self._fitted().train_embed, "width", torch.arange(1))]
        return distributed.gather_blocks(torch.cat(local), self.n_train, self.config["batch_size"])

    def query_embeddings(self, queries: Any) -> Tensor:
        """``[n_queries, d]``: the query-side embedding, so that ``scores = query_emb @ train_embᵀ``."""
        data = as_dataset(queries, "queries")
        est = self._fitted()
        ctx = est.ctx
        with self.task.evaluating():
            self.task.check(ctx.params, ctx.rest, self.task.cast(take(data, range(min(len(data), 8))), self.dtype),
                            "queries")
        return torch.cat([emb for _, emb in self._chunks(data, est.query_embed, "query embeddings")])

    def _direct_scores(self, queries: Any) -> Tensor:
        """Scores of an estimator that has no embeddings (``direct``, e.g. ``unrolled``), all queries at once."""
        data, ctx = as_dataset(queries, "queries"), self._fitted().ctx
        with self.task.evaluating():
            batch = self.task.cast(take(data, range(len(data))), self.dtype)  # type: ignore[arg-type]
            self.task.check(ctx.params, ctx.rest, batch, "queries")
        return self._fitted().scores(batch, None)  # type: ignore[attr-defined]

    def scores(self, queries: Any) -> Tensor:
        """``[n_queries, n_train]`` influence scores; positive = the training example helps the query."""
        if getattr(self._fitted(), "direct", False):
            return self._direct_scores(queries)
        q = self.query_embeddings(queries)
        local = self._local()
        start = int(local[0]) if len(local) else 0
        block = score_matrix(q, ((pos - start, emb) for pos, emb in self._train_chunks()), len(local))
        return distributed.gather_blocks(block, self.n_train, self.config["batch_size"], dim=1)

    def top(self, queries: Any, k: int = 10) -> TopInfluences:
        """The ``k`` strongest proponents and opponents of each query, streamed over the training set."""
        if not isinstance(k, int) or k < 1:
            raise ConfigError(f"k must be a positive integer, got {k!r}")
        k = min(k, self.n_train)
        if getattr(self._fitted(), "direct", False):  # identity queries against score columns: top_k reads S itself
            s = self._direct_scores(queries)
            cols = torch.arange(self.n_train).split(self.config["batch_size"])
            return top_k(torch.eye(len(s), dtype=s.dtype), ((pos, s[:, pos].T) for pos in cols), k)
        return distributed.merge_top(top_k(self.query_embeddings(queries), self._train_chunks(), k), k)

    def validity_horizon(self, queries: Any, steps: Any, **options: Any) -> Any:
        """Per query, the largest T of ``steps`` up to which this method ranks the training set like ``unrolled``
        (Spearman ≥ 0.9); options as :func:`ifscope.validity.validity_horizon`."""
        from .validity import validity_horizon
        return validity_horizon(self, queries, steps, **options)

    def self_influence(self) -> Tensor:
        """``[n_train]``: ``score(z, z)`` for each training example; large values flag outliers and mislabels."""
        est = self._fitted()

        def both(batch):
            q, t = est.self_embed(batch)
            return (q * t).sum(1)
        local = [s for _, s in self._chunks(self.train, both, "self-influence", self._local())]
        block = torch.cat(local) if local else torch.empty(0, dtype=self.dtype)
        return distributed.gather_blocks(block, self.n_train, self.config["batch_size"])
