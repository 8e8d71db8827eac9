"""The fade as ``ifscope fade`` runs it on a fitted run: seeded ids and queries, the continued training, sizes cut to
a time budget, the ground truth (in float32 where the model refuses float64), the reference methods beside the
run's own, the curve of :func:`ifscope.experiments.fade.fade_curve` and, with ``unrolled``, the horizons of validity.

The run's fitted estimator is one of the methods (its label: its method name); the references are built with the
run's shared options (:func:`ifscope.experiments.fade.reference_methods`); ``exact`` joins the default list on small
models only, and the references run in float64 up to ``FLOAT64_LIMIT`` parameters.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..core.contract import float32_fallback
from ..core.data import as_dataset, take
from ..core.errors import ConfigError
from ..influence import Influence
from ..options import FadeOptions
from ..truth.groundtruth import actual_changes
from ..truth.prefix import cache_prefix
from ..truth.training import Schedule
from .fade import FadeResult, fade_curve, gd_schedule, method_label, reference_methods
from .measure import size_to_budget
from .sizing import Sizes, fade_workload
from .validity import fade_validity, validity_sample

REFERENCE_METHODS = ("horizon", "arnoldi_horizon", "ekfac_horizon", "exact", "graddot", "tracin", "unrolled",
                     "horizon_schedule", "arnoldi")
EXACT_LIMIT = 5000  # parameters above which the default method list leaves out the dense-Hessian `exact`
FLOAT64_LIMIT = 200_000  # parameters up to which the reference methods run in float64 by default


@dataclass
class FadeRun:
    """What one fade measured: the curve, the continued training, the ids and queries kept, and ``record`` (the
    content of ``fade.json`` but for the run's facts and the total seconds, which the command adds)."""

    result: FadeResult
    schedule: Schedule
    ids: Tensor
    query_ids: Tensor
    record: dict[str, Any]


def _samples(inf: Influence, test: Any, o: FadeOptions, schedule: Schedule, seed: int) -> tuple[Tensor, Tensor]:
    """The seeded orders of the ids and of the queries (a smaller budget keeps the first ones); with
    ``ids_from="first_batch"`` the ids come from the continued training's first minibatch."""
    gen = torch.Generator().manual_seed(seed + 7)
    id_order = torch.randperm(inf.n_train, generator=gen)[: o.n_ids]
    q_order = torch.randperm(len(test), generator=gen)[: o.n_queries]
    if o.ids_from == "first_batch":  # under SGD a random id waits N/batch steps on average before it acts at all
        first = schedule.batches[0]
        if o.n_ids > len(first):
            raise ConfigError(f"--ids-from first_batch samples --n-ids {o.n_ids} from the first minibatch of "
                              f"{len(first)} examples: lower --n-ids or raise --train-batch-size")
        id_order = first[torch.randperm(len(first), generator=gen)[: o.n_ids]]
    return id_order, q_order



def default_methods(inf: Influence, o: FadeOptions) -> list[str]:
    """``o.methods``, or the run and every reference that costs no refit (``exact`` on small models only)."""
    if o.methods is not None:
        names = list(o.methods)
    else:
        small = inf.estimator.ctx.space.dim <= EXACT_LIMIT and inf.method != "exact"
        names = ["run", "horizon", *(["arnoldi_horizon"] if inf.method == "arnoldi" else []),
                 *(["exact"] if small else []), "graddot", "tracin", "unrolled",
                 *(["horizon_schedule"] if o.train_batch_size else [])]
    bad = [n for n in names if n != "run" and n not in REFERENCE_METHODS]
    if bad:
        raise ConfigError(f"unknown fade method(s) {bad}; choose from run,{','.join(REFERENCE_METHODS)}")
    return names


def run_fade(inf: Influence, test: Any, o: FadeOptions, *, seed: int, explicit: list[str], recipe: str) -> FadeRun:
    """The fade of the fitted ``inf`` on ``test`` with the options ``o`` (``explicit``: the sizes the user gave,
    which the time budget leaves alone; ``recipe``: the name recorded in ``fade.json``)."""
    train, test = inf.train, as_dataset(test, "test")
    if o.n_ids > len(train) or o.n_queries > len(test):  # type: ignore[arg-type]
        raise ConfigError(f"--n-ids {o.n_ids} / --n-queries {o.n_queries} exceed the recipe's {len(train)} "  # type: ignore[arg-type]
                          f"training and {len(test)} test examples")
    schedule = gd_schedule(inf, max(o.steps), o.train_lr, batch_size=o.train_batch_size, seed=seed)
    id_order, q_order = _samples(inf, test, o, schedule, seed)
    q_idx = q_order.sort().values
    fallback = float32_fallback(inf.task, inf.train, (o.truth_dtype, o.reference_dtype or "float64"),
                                "the ground truth and the reference methods")
    if fallback:
        print(f"ifscope: {fallback}", file=sys.stderr)
    truth_name = "float32" if fallback else o.truth_dtype
    truth_dtype = getattr(torch, truth_name)
    # the frozen prefix of a text model is computed once: ground truth and every method replay only the selected part
    prefix = cache_prefix(inf.task, inf.train, take(test, q_idx), dtype=truth_dtype, progress=True)
    task, (cached_train, queries) = prefix.task, prefix.datasets
    run_view = inf.derive(task=task, train=cached_train) if prefix.start is not None else inf
    names, dim = default_methods(inf, o), inf.estimator.ctx.space.dim
    ref_dtype = "float32" if fallback else (o.reference_dtype or ("float64" if dim <= FLOAT64_LIMIT
                                                                  else str(inf.dtype).replace("torch.", "")))
    chosen = size_to_budget(task, cached_train, queries, schedule, Sizes(o.n_ids, o.n_queries, tuple(o.steps), ref_dtype),
                            fade_workload(names), o.budget_s, explicit, truth_dtype, o.batching)
    print(f"ifscope: fade {chosen}", file=sys.stderr)
    ids, q_keep = id_order[: chosen.sizes.n_ids].sort().values, q_order[: chosen.sizes.n_queries].sort().values
    queries = take(as_dataset(queries, "queries"), torch.searchsorted(q_idx, q_keep))
    steps, ref_dtype = list(chosen.sizes.steps), chosen.sizes.reference_dtype
    schedule = schedule.truncated(max(steps))
    t_truth = time.time()
    truth = actual_changes(task, cached_train, queries, ids, steps, schedule, mode=o.mode, epsilon=o.epsilon,
                           dtype=truth_dtype, batching=o.batching)
    t_truth = time.time() - t_truth
    methods = {method_label(inf): run_view} if "run" in names else {}
    methods.update(reference_methods(run_view, [n for n in names if n != "run" and n not in methods], schedule,
                                     max(steps), krylov=o.krylov, dtype=getattr(torch, ref_dtype),
                                     hessian_samples=o.reference_hessian_samples))
    result = fade_curve(methods, queries, ids, steps=steps, mode=o.mode, epsilon=o.epsilon, schedule=schedule,
                        truth=truth)
    validity = fade_validity(methods, queries, steps, schedule, train_ids=validity_sample(
        inf.n_train, o.validity_train, seed)) if "unrolled" in methods else None
    record = {**result.to_dict(), **({"validity_horizon": validity} if validity else {}),
              "recipe": recipe, "seed": seed, "reference_dtype": ref_dtype, "ids_from": o.ids_from,
              "query_ids": q_keep.tolist(), "train_batch_size": o.train_batch_size, "noise_floor": truth.noise_floor(),
              "truth_seconds": t_truth, "truth_dtype": truth_name, "dtype_fallback": fallback,
              "batching": truth.batching, "threads": torch.get_num_threads(),
              "prefix": {"cached": prefix.start is not None, "start_block": prefix.start, "seconds": prefix.seconds},
              "parameters": dim, "n_train": inf.n_train, "chosen": chosen.as_dict()}
    return FadeRun(result, schedule, ids, q_keep, record)
