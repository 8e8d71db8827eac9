"""``Influence``: fit an estimator at a checkpoint (or reuse the run directory's fit), derive others from it."""

from __future__ import annotations

import copy
import dataclasses
import sys
import warnings
from typing import Any

import torch
from torch import Tensor

from ..core.checks import check_finite_params
from ..core.contract import ModelContract, announced, check_model
from ..core.data import as_dataset, take
from ..core.errors import ArtifactError, ConfigError
from ..core.fingerprint import data_fingerprint, model_fingerprint
from ..core.krylov import Spectrum, spectrum
from ..core.progress import progress_bar
from ..core.task import Task
from ..estimators import METHODS, Context, Estimator
from ..options import PROJECTION_DTYPES, FitOptions, build, from_json, to_json, values
from ..run.store import CURVATURE, RunDir
from .scoring import Scoring

FIT_FIELDS = frozenset(FitOptions.__dataclass_fields__)
SPEED_FIELDS = ("time_budget_s", "projection_dtype")  # shared options only some methods read (Estimator.reads)

SPECTRUM = "spectrum.safetensors"
SPECTRUM_ITERATIONS = 60  # Arnoldi steps for the spectrum of a method whose fit does not yield one
CACHE_BUDGET = 1 << 30  # bytes of training embeddings kept in memory


class Influence(Scoring):
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
            from ..recipes import is_file_recipe, load_recipe
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
            from ..run.resolve import select_parameters
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
