"""``Influence``: fit an estimator at a checkpoint, then score, rank and self-score examples."""

from __future__ import annotations

import copy
import dataclasses
import sys
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

from .core.checks import check_finite_params, embed_located
from .core.contract import ModelContract, announced, check_model
from .core.data import as_dataset, batches, take
from .core.errors import ArtifactError, ConfigError
from .core.fingerprint import data_fingerprint, model_fingerprint
from .core.krylov import Spectrum, spectrum
from .core.progress import progress_bar
from .core.scores import TopInfluences, assemble, top_k_blocks
from .core.task import Task
from .estimators import METHODS, Context, Estimator
from .options import PROJECTION_DTYPES, FitOptions, build, from_json, to_json, values
from .run import distributed
from .run.store import CURVATURE, RunDir

FIT_FIELDS = frozenset(FitOptions.__dataclass_fields__)
SPEED_FIELDS = ("time_budget_s", "projection_dtype")  # shared options only some methods read (Estimator.reads)

SPECTRUM = "spectrum.safetensors"
SPECTRUM_ITERATIONS = 60  # Arnoldi steps for the spectrum of a method whose fit does not yield one
CACHE_BUDGET = 1 << 30  # bytes of training embeddings kept in memory


class Influence:
    """Influence of training examples on queries: ``scores[q, i] = ∇ℓ(q)ᵀ H⁻¹ ∇ℓ(zᵢ)`` (positive = proponent).

    The predicted change of query ``q``'s loss when training example ``i`` is removed from a mean over N
    examples is ``+scores[q, i] / N``. ``method`` is one of ``exact``, ``cg``, ``lissa``, ``arnoldi``,
    ``graddot``, ``tracin``, ``horizon`` (``horizon=T, lr=η``: the finite-horizon response
    ``∇ℓ(q)ᵀ H⁻¹(I − (I − ηH)^T) ∇ℓ(z)``), ``unrolled`` (``horizon=T, lr=η, optimizer=...``: the exact
    ``−N ∂ℓ(q, θ_T)/∂wᵢ`` through T steps of continued training), ``kfac`` and ``ekfac`` (Kronecker-factored Fisher
    of the Linear/Conv layers; ``ekfac`` with ``horizon=T, lr=η`` filters its eigenvalues by ``f_T``); shared options are
    :class:`ifscope.options.FitOptions`, method options
    (e.g. ``rank``, ``iterations`` for arnoldi) are listed by ``Influence.options(method)``.
    With ``workdir``, ``fit`` reuses the curvature saved there for the same model, data and options (and saves it
    otherwise), training embeddings stream to / resume from shards ``workdir/train/NNNNN.safetensors``, and
    :meth:`open` rebuilds the fitted object later without refitting. ``source`` records where the model and data
    come from (a recipe), so that :meth:`open` can rebuild them.
    """

    def __init__(self, task: Task, train: Any, method: str = "arnoldi", *, progress: bool = True,
                 workdir: Any = None, source: dict[str, Any] | None = None, device: Any = None,
                 **options: Any):
        if not isinstance(task, Task):
            raise ConfigError(f"task must be an ifscope.Task (e.g. ifscope.classification(model)), "
                              f"not {type(task).__name__}")
        if method not in METHODS:
            raise ConfigError(f"unknown method {method!r}; choose one of {sorted(METHODS)}")
        shared = {k: v for k, v in options.items() if k in FIT_FIELDS}
        own = {k: v for k, v in options.items() if k not in FIT_FIELDS}
        unknown = sorted(set(own) - set(METHODS[method].OPTIONS))
        if unknown:
            raise ConfigError(f"unknown option(s) {unknown} for method {method!r}; its own options are "
                              f"{sorted(METHODS[method].OPTIONS)}, shared ones are {sorted(FIT_FIELDS)}, progress")
        self.fit_options = build(FitOptions, shared, "Influence")
        if self.fit_options.damping is None:
            self.fit_options.damping = METHODS[method].default_damping
        unread = [k for k in SPEED_FIELDS
                  if getattr(self.fit_options, k) is not None and k not in METHODS[method].reads]
        if unread:
            raise ConfigError(f"method {method!r} does not read {unread}; they size and speed up "
                              f"{sorted(n for n, m in METHODS.items() if set(unread) <= m.reads)}")
        self.method_options = build(METHODS[method].Options, own, f"method {method!r}")
        self.task, self.method = task, method
        self.device = task.device if device is None else torch.device(device)  # where every product runs
        self.train = as_dataset(train, "train")
        self.config: dict[str, Any] = dict(method=method, **values(self.fit_options), **values(self.method_options))
        self.source = source
        self.show_progress = progress
        self.estimator: Estimator | None = None
        self.run: RunDir | None = None if workdir is None else RunDir(workdir)
        self.reused = False  # fit() loaded the curvature from workdir
        self.dropped: list[str] = []  # artifacts of an older config that fit() removed from workdir
        self._train_emb: tuple[Tensor, Tensor] | None = None
        self._spectrum: Spectrum | None = None
        self.contract: ModelContract | None = None  # what fit() found about the model (ifscope.check_model)
        self.cache_budget = CACHE_BUDGET  # 0 streams the training embeddings anew on every call (memory flat in N)

    @classmethod
    def open(cls, workdir: Any, task: Task | None = None, train: Any = None, progress: bool = True) -> Influence:
        """The fitted ``Influence`` of a run directory, rebuilt without refitting: its model and data from the
        recorded recipe (or the ``task`` and ``train`` given, checked against the recorded fingerprints), its
        options from the manifest, its estimator from ``curvature.safetensors``."""
        run = RunDir(workdir)
        if not run.config or not run.has(CURVATURE):
            raise ArtifactError(f"{run.path} holds no fitted run (no {CURVATURE} in its manifest); fit first: "
                                "`ifscope fit --workdir DIR` or Influence(..., workdir=DIR).fit()")
        source = run.manifest.get("source")
        if task is None or train is None:
            if not source or "recipe" not in source:
                raise ConfigError(f"{run.path} was fitted from the Python API: pass task= and train= to open it")
            from .recipes import is_file_recipe, load_recipe
            if is_file_recipe(source["recipe"]):
                raise ConfigError(f"{run.path} records the recipe file {source['recipe']!r}, which ifscope runs only "
                                  "when you name it: build it yourself (ifscope.load_recipe) and pass task= and "
                                  "train=")
            recipe = load_recipe(source["recipe"], optional={"seed": source.get("seed", 0)},
                                 **source.get("recipe_options", {}))
            task, train = recipe.task if task is None else task, recipe.train if train is None else train
        config = dict(run.config)
        method = config.pop("method")
        recorded = config.pop("parameters", None)
        if recorded is not None and list(recorded) != list(task.parameter_names):
            from .run.resolve import select_parameters
            task = select_parameters(task, names=list(recorded))  # the selection the run was fitted on
        options = {k: from_json(k, v) for k, v in config.items()}
        inf = cls(task, train, method, progress=progress, workdir=workdir, source=source, **options)
        inf.recorded_config = run.config  # tensor options (by hash) come back from the saved state
        return inf.fit()

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

    @property
    def shared_config(self) -> dict[str, Any]:
        """The options every method shares (:class:`FitOptions`), to build another method on the same footing (the
        speed settings of this fit, ``time_budget_s`` and ``projection_dtype``, left out)."""
        return {k: self.config[k] for k in FIT_FIELDS if k not in SPEED_FIELDS}

    @property
    def config_json(self) -> dict[str, Any]:
        """The configuration as the manifest records it (dtypes by name, tensor options by content hash)."""
        return getattr(self, "recorded_config", None) or to_json({**self.config,
                                                                  "parameters": self.task.parameter_names})

    @property
    def curvature_sha256(self) -> str | None:
        """The checksum of ``curvature.safetensors`` recorded in the manifest (None without a run directory)."""
        if self.run is None:
            return None
        return self.run.manifest.get("artifacts", {}).get(CURVATURE, {}).get("sha256")

    def _bar(self, desc: str, total: int):
        return progress_bar(desc, total, self.show_progress)

    def _context(self) -> Context:
        c = self.config
        params, rest = ({k: v.to(self.device) for k, v in d.items()} for d in self.task.state(c["dtype"]))
        return Context(task=self.task, params=params, rest=rest, train=self.train, batch_size=c["batch_size"],
                       dtype=c["dtype"], seed=c["seed"], weight_decay=c["weight_decay"], damping=c["damping"],
                       hessian_samples=c["hessian_samples"], curvature=c["curvature"], projection=c["projection"],
                       progress=self._bar, spectrum=self.spectrum, device=self.device,
                       projection_dtype=PROJECTION_DTYPES.get(c["projection_dtype"]), time_budget_s=c["time_budget_s"])

    def fit(self) -> Influence:
        """Fit the estimator at the model's current parameters (curvature, eigenbasis); returns ``self``."""
        torch.manual_seed(self.config["seed"])
        ctx = self._context()
        check_finite_params(ctx.params)
        with self.task.evaluating():
            self.task.check(ctx.params, ctx.rest, self.task.cast(take(self.train, range(min(self.n_train, 8))),
                                                                   ctx.dtype, self.device), "training set")
            self.contract = check_model(self.task, self.train, dtype=ctx.dtype)
            self._announce(self.contract.fallbacks)
            est = METHODS[self.method](ctx, **values(self.method_options))
            self.reused = False
            if self.run is None:
                est.fit()
            else:
                self._fit_in_run(est)
        self.chosen = est.chosen()  # what a time budget chose
        if self.chosen and self.show_progress and not self.reused:
            print(f"ifscope: {self.chosen['text']}", file=sys.stderr)
        self.estimator, self._train_emb = est, None
        return self

    def _fit_in_run(self, est: Estimator) -> None:
        """Load the run directory's curvature for this fit, or fit and save it holding the directory's lock: a
        second command that needs the same fit waits, then reuses it (a time budget's choice included)."""
        run = self.run
        assert run is not None
        fingerprints = {"model": model_fingerprint(self.task.model), "train": data_fingerprint(self.train)}
        self.dropped = run.bind(fingerprints, self.config_json, source=self.source)
        if not run.has(CURVATURE):
            with run.locked():
                self.dropped += run.bind(fingerprints, self.config_json, source=self.source)
                if not run.has(CURVATURE):
                    est.fit()
                    run.save_tensors(CURVATURE, est.state_dict())
                    return
        est.load_state_dict({k: v.to(self.device) for k, v in run.load_tensors(CURVATURE).items()})
        self.reused = True

    def _announce(self, lines: list[str]) -> None:
        """Say each fallback once per model and process: on stderr under progress, else as a warning."""
        for line in announced(self.task.model, lines):
            if self.show_progress:
                print(f"ifscope: {line}", file=sys.stderr)
            else:
                warnings.warn(line, stacklevel=3)

    def derive(self, *, task: Task | None = None, train: Any = None, refit: bool = False, **changes: Any) -> Influence:
        """A fitted ``Influence`` like this one with ``changes`` to its options.

        With ``task`` (and ``train``), the pair is an equivalent view of the same model and data (e.g. a cached
        frozen prefix: the same selected parameters and losses), so the fit carries over; ``train`` alone is other
        data, which refits. Changes the fitted state absorbs (the estimator's ``refit_free``, e.g. Arnoldi's
        ``horizon``, ``lr``, ``damping``) reuse the fit; anything else is a new fit sharing this run's spectrum (so
        default step sizes agree); ``refit=True`` always refits (e.g. the model was moved to another checkpoint).
        Nothing of this run is modified."""
        est = self._fitted()
        config = {k: v for k, v in self.config.items() if k != "method"}
        config.update(changes)
        same_data = train is None or task is not None
        v = Influence(self.task if task is None else task, self.train if train is None else train, self.method,
                      progress=self.show_progress, device=self.device, **config)
        if self._spectrum is not None or est.uses_curvature:
            v._spectrum = self.spectrum()
        if refit or not (same_data and set(changes) <= est.refit_free):
            return v.fit()
        copied = copy.copy(est)
        copied.ctx = v._context()
        own = {k: v for k, v in changes.items() if k in est.options}
        copied.opts = dataclasses.replace(est.opts, **own)
        copied.options = {**est.options, **own}
        copied.rebound()
        v.estimator, v.chosen, v.contract = copied, self.chosen, self.contract
        return v

    def spectrum(self) -> Spectrum:
        """The curvature's Ritz values (``λ_max`` first): from the fit when the method keeps them (Arnoldi), else
        from ``SPECTRUM_ITERATIONS`` Arnoldi steps once, saved in the run directory as ``spectrum.safetensors``."""
        if self._spectrum is None:
            est = self.estimator
            if est is not None and est.keeps_spectrum:
                self._spectrum = est.spectrum  # type: ignore[attr-defined]
            elif self.run is not None and self.run.has(SPECTRUM):
                self._spectrum = Spectrum.from_state(self.run.load_tensors(SPECTRUM))
            else:
                ctx = est.ctx if est is not None else self._context()
                op = ctx.curvature_operator(damping=0.0)
                bar = self._bar("spectrum (Arnoldi)", min(SPECTRUM_ITERATIONS, op.dim))
                self._spectrum = spectrum(op.matvec, op.dim, SPECTRUM_ITERATIONS, seed=self.config["seed"],
                                          dtype=self.dtype, progress=None if bar is None else (lambda j: bar.update(1)))
                if bar is not None:
                    bar.close()
                if self.run is not None and self.run.exists:
                    self.run.save_tensors(SPECTRUM, self._spectrum.state_dict())
        return self._spectrum

    @property
    def lambda_max(self) -> float:
        """The top eigenvalue of the fitted curvature (weight decay included, damping not)."""
        return self.spectrum().lambda_max

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
                batch = self.task.cast(batch, self.dtype, self.device)
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
            def embed(pos: Tensor) -> Tensor:  # a bad example (a label out of range) is named, as off the shard path
                batch = self.task.cast(take(self.train, pos), self.dtype, self.device)
                return embed_located(est.train_embed, self.task, est.ctx.params, est.ctx.rest, pos, batch,
                                     int(pos[0]) // self.config["batch_size"], "training set", "training embeddings")
            for pos, emb in self.run.train_shards(local, self.config["batch_size"], embed,
                                                  self._bar("training embeddings", len(local))):
                yield pos, emb.to(self.device)  # shards read back from disk are CPU tensors

    def train_embeddings(self, train_ids: Sequence[int] | Tensor | None = None) -> Tensor:
        """``[n_train, d]``: the training-side embedding of every training example (or of those at ``train_ids``)."""
        if train_ids is not None:
            return torch.cat([e for _, e in self._chunks(self.train, self._fitted().train_embed,
                                                         "training embeddings", self._train_ids(train_ids))])
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
            self.task.check(ctx.params, ctx.rest,
                            self.task.cast(take(data, range(min(len(data), 8))), self.dtype, self.device), "queries")
        return torch.cat([emb for _, emb in self._chunks(data, est.query_embed, "query embeddings")])

    def _direct_scores(self, queries: Any, train_ids: Tensor | None = None) -> Tensor:
        """Scores of an estimator that has no embeddings (``direct``, e.g. ``unrolled``), all queries at once."""
        data, ctx = as_dataset(queries, "queries"), self._fitted().ctx
        with self.task.evaluating():
            batch = self.task.cast(take(data, range(len(data))), self.dtype, self.device)  # type: ignore[arg-type]
            self.task.check(ctx.params, ctx.rest, batch, "queries")
        return self._fitted().scores(batch, train_ids)  # type: ignore[attr-defined]

    def scores(self, queries: Any, train_ids: Sequence[int] | Tensor | None = None) -> Tensor:
        """``[n_queries, n_train]`` influence scores (or ``[n_queries, len(train_ids)]`` for those training
        positions only); positive = the training example helps the query."""
        if self._fitted().direct:
            return self._direct_scores(queries, None if train_ids is None else self._train_ids(train_ids))
        q = self.query_embeddings(queries)
        if train_ids is not None:  # streamed: memory flat in the number of ids (raw gradients of a large model)
            return torch.cat([q @ e.T for _, e in self._chunks(self.train, self._fitted().train_embed,
                                                               "training embeddings", self._train_ids(train_ids))], 1)
        local = self._local()
        start = int(local[0]) if len(local) else 0
        block = assemble(((pos - start, s) for pos, s in self._score_blocks(q)), q, len(local))
        return distributed.gather_blocks(block, self.n_train, self.config["batch_size"], dim=1)

    def _score_blocks(self, q: Tensor) -> Iterator[tuple[Tensor, Tensor]]:
        """``(positions, S[:, positions])`` over this process's training positions: from the cached or sharded
        training embeddings, or straight from each batch when the estimator ``streams_scores`` and none are kept."""
        est = self._fitted()
        if est.streams_scores and self._train_emb is None and self.run is None:
            for pos, s in self._chunks(self.train, lambda b: est.train_scores(b, q), "training embeddings",
                                         self._local()):
                yield pos, s.T
            return
        for pos, emb in self._train_chunks():  # shards read back from disk are on CPU: score where the queries are
            yield pos, q @ emb.to(q.device).T

    def _train_ids(self, train_ids: Sequence[int] | Tensor) -> Tensor:
        ids = torch.as_tensor(train_ids, dtype=torch.long).reshape(-1)
        if len(ids) == 0 or int(ids.min()) < 0 or int(ids.max()) >= self.n_train:
            raise ConfigError(f"train_ids must be training positions in [0, {self.n_train}), got {ids.tolist()[:10]}")
        return ids

    def scores_over_horizons(self, queries: Any, train_ids: Sequence[int] | Tensor, steps: Sequence[int],
                             schedule: Any = None) -> Tensor:
        """``[len(steps), n_queries, len(train_ids)]``: scores at each horizon T for horizon-aware estimators (with
        the continued training's ``schedule`` where the method follows its batch order), the same scores repeated
        for the others."""
        est = self._fitted()
        ids = self._train_ids(train_ids)
        if not est.horizon_aware and not est.direct:
            return self.scores(queries, ids).unsqueeze(0).expand(len(steps), -1, -1)
        q_data = as_dataset(queries, "queries")
        q_batch = self.task.cast(take(q_data, range(len(q_data))), self.dtype, self.device)
        if est.direct:  # unrolled: exact through the continued training's own schedule
            return est.scores_over_horizons(q_batch, ids, steps, schedule=schedule)  # type: ignore[attr-defined]
        z_batch = self.task.cast(take(self.train, ids), self.dtype, self.device)
        with self.task.evaluating():
            if self.config.get("batch_order") == "schedule":
                if schedule is None:
                    raise ConfigError("batch_order='schedule' needs the schedule of the continued training: pass "
                                      "schedule=")
                return est.scores_for_schedule(q_batch, z_batch, ids, schedule, self.n_train, steps)  # type: ignore[attr-defined]
            return est.scores_over_horizons(q_batch, z_batch, steps)  # type: ignore[attr-defined]

    def top(self, queries: Any, k: int = 10) -> TopInfluences:
        """The ``k`` strongest proponents and opponents of each query, streamed over the training set."""
        if not isinstance(k, int) or k < 1:
            raise ConfigError(f"k must be a positive integer, got {k!r}")
        k = min(k, self.n_train)
        if self._fitted().direct:  # identity queries against score columns: top_k reads S itself
            s = self._direct_scores(queries)
            cols = torch.arange(self.n_train).split(self.config["batch_size"])
            return top_k_blocks(((pos, s[:, pos]) for pos in cols), s, k)
        q = self.query_embeddings(queries)
        return distributed.merge_top(top_k_blocks(self._score_blocks(q), q, k), k)

    def self_influence(self) -> Tensor:
        """``[n_train]``: ``score(z, z)`` for each training example; large values flag outliers and mislabels."""
        est = self._fitted()

        def both(batch):
            q, t = est.self_embed(batch)
            return (q * t).sum(1)
        local = [s for _, s in self._chunks(self.train, both, "self-influence", self._local())]
        block = torch.cat(local) if local else torch.empty(0, dtype=self.dtype, device=self.device)
        return distributed.gather_blocks(block, self.n_train, self.config["batch_size"])
