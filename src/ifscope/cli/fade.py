"""``ifscope fade``: correlation of each method's predictions with the actual effect of continued training, per T.

The run's fitted estimator is one of the methods (its label: its method name); the others are references built
with the run's shared options: ``horizon`` (and ``horizon_schedule`` under minibatches), ``arnoldi_horizon`` (the
run's own eigenpairs with the horizon filter, when the run is arnoldi), ``ekfac_horizon`` (when asked for: EK-FAC
with the filter, its own fit), ``graddot``, ``tracin`` along the actual continued trajectory, ``unrolled`` (the exact
derivative through the fade's own continued training, and the reference of each checkpoint method's horizon of
validity) and ``exact`` on small models. Options
(:class:`ifscope.options.FadeOptions`) left out come from the run's last fade, the recipe's ``defaults["fade"]``,
then the library.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from typing import Any

from ..options import FadeOptions
from . import add_options, common_arguments, fitted_for, influence_arguments, resolve_command, run_facts

REFERENCE_METHODS = ("horizon", "arnoldi_horizon", "ekfac_horizon", "exact", "graddot", "tracin", "unrolled",
                     "horizon_schedule", "arnoldi")
EXACT_LIMIT = 5000  # parameters above which the default method list leaves out the dense-Hessian `exact`
FLOAT64_LIMIT = 200_000  # parameters up to which the reference methods run in float64 by default


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("fade", help="how far ahead influence predicts continued training (fade.json, figures)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    influence_arguments(common_arguments(p), exclude=tuple(f.name for f in dataclasses.fields(FadeOptions)))
    add_options(p, (FadeOptions,), "fade options (default: the run's last, the recipe's, then the library's)")
    return p


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from ..core.contract import float64_failure
    from ..core.data import as_dataset, take
    from ..core.errors import ConfigError
    from ..experiments.fade import fade_curve, gd_schedule, method_label, plot_fade, reference_methods
    from ..experiments.validity import fade_validity, validity_lines
    from ..truth.groundtruth import actual_changes
    from ..truth.prefix import cache_prefix
    from . import recipe_for

    t0 = time.time()
    recipe = recipe_for(args)
    o = resolve_command(args, recipe, "fade").options
    inf = fitted_for(args, recipe)
    train, test = inf.train, as_dataset(recipe.test, "test")
    if o.n_ids > len(train) or o.n_queries > len(test):
        raise ConfigError(f"--n-ids {o.n_ids} / --n-queries {o.n_queries} exceed the recipe's {len(train)} "
                          f"training and {len(test)} test examples")
    gen = torch.Generator().manual_seed(args.seed + 7)
    ids = torch.randperm(len(train), generator=gen)[: o.n_ids].sort().values
    q_idx = torch.randperm(len(test), generator=gen)[: o.n_queries].sort().values
    queries = take(test, q_idx)
    steps = o.steps
    schedule = gd_schedule(inf, max(steps), o.train_lr, batch_size=o.train_batch_size, seed=args.seed)
    if o.ids_from == "first_batch":  # under SGD a random id waits N/batch steps on average before it acts at all
        first = schedule.batches[0]
        if o.n_ids > len(first):
            raise ConfigError(f"--ids-from first_batch samples --n-ids {o.n_ids} from the first minibatch of "
                              f"{len(first)} examples: lower --n-ids or raise --train-batch-size")
        ids = first[torch.randperm(len(first), generator=gen)[: o.n_ids]].sort().values
    # the frozen prefix of a text model is computed once: ground truth and every method replay only the selected part
    why = float64_failure(inf.task, train) if "float64" in (o.truth_dtype, o.reference_dtype or "float64") else None
    fallback = None if why is None else (f"{type(inf.task.model).__name__} does not run in float64 ({why}): the "
                                         "ground truth and the reference methods run in float32")
    if fallback:
        print(f"ifscope: {fallback}", file=sys.stderr)
    truth_name = "float32" if why else o.truth_dtype
    truth_dtype = getattr(torch, truth_name)
    prefix = cache_prefix(inf.task, inf.train, queries, dtype=truth_dtype, progress=True)
    task, (cached_train, queries) = prefix.task, prefix.datasets
    run_view = inf.derive(task=task, train=cached_train) if prefix.start is not None else inf
    t_truth = time.time()
    truth = actual_changes(task, cached_train, queries, ids, steps, schedule, mode=o.mode, epsilon=o.epsilon,
                           dtype=truth_dtype, batching=o.batching)
    t_truth = time.time() - t_truth
    names = o.methods
    dim = inf.estimator.ctx.space.dim
    ref_dtype = "float32" if why else (o.reference_dtype or ("float64" if dim <= FLOAT64_LIMIT
                                                              else str(inf.dtype).replace("torch.", "")))
    if names is None:
        names = ["run", "horizon", *(["arnoldi_horizon"] if inf.method == "arnoldi" else []),
                 *(["exact"] if dim <= EXACT_LIMIT and inf.method != "exact" else []), "graddot", "tracin", "unrolled",
                 *(["horizon_schedule"] if o.train_batch_size else [])]
    bad = [n for n in names if n != "run" and n not in REFERENCE_METHODS]
    if bad:
        raise ConfigError(f"unknown fade method(s) {bad}; choose from run,{','.join(REFERENCE_METHODS)}")
    methods = {method_label(inf): run_view} if "run" in names else {}
    methods.update(reference_methods(run_view, [n for n in names if n != "run" and n not in methods], schedule,
                                     max(steps), krylov=o.krylov, dtype=getattr(torch, ref_dtype),
                                     hessian_samples=o.reference_hessian_samples))
    result = fade_curve(methods, queries, ids, steps=steps, mode=o.mode, epsilon=o.epsilon, schedule=schedule,
                        truth=truth)
    validity = fade_validity(methods, queries, steps, schedule) if "unrolled" in methods else None
    out = {**run_facts(inf), **result.to_dict(), **({"validity_horizon": validity} if validity else {}),
           "recipe": args.recipe, "seed": args.seed, "reference_dtype": ref_dtype, "ids_from": o.ids_from, "query_ids": q_idx.tolist(),
           "train_batch_size": o.train_batch_size, "noise_floor": truth.noise_floor(), "truth_seconds": t_truth,
           "truth_dtype": truth_name, "dtype_fallback": fallback, "batching": truth.batching, "threads": torch.get_num_threads(),
           "prefix": {"cached": prefix.start is not None, "start_block": prefix.start, "seconds": prefix.seconds},
           "parameters": dim, "n_train": inf.n_train, "seconds": time.time() - t0}
    run_dir = inf.run
    path = run_dir.save_json("fade.json", out)
    figure = run_dir.record(str(plot_fade(result, run_dir.file("report/fade_curve.png"))
                                .relative_to(run_dir.path)))
    half = "beyond the grid" if result.horizon_half is None else f"{result.horizon_half:.3g}"
    how = "full-batch GD" if o.train_batch_size is None else f"SGD batch {o.train_batch_size}"
    summary = [f"fade ({o.mode}, {o.n_ids} training examples x {o.n_queries} queries, {how} "
               f"lr {schedule.lr:.3g}, recipe {args.recipe}; run: {method_label(inf)} "
               f"{'reused' if inf.reused else 'fitted'})", result.table("pearson"), result.table("spearman"),
               "gap:   " + " ".join(f"{g:.3g}" for g in result.gap),
               f"gap growth: rate r = {result.gap_rate:.3g} per step in c(e^rT - 1)/r, exponent "
               f"{result.gap_exponent:.2f} in T^a; T_1/2 ({result.reference}) = {half}",
               *validity_lines(out.get("validity_horizon", {})),
               *(["noise floor (|Δℓ| of a second unchanged replay on the other kernel / RMS actual change): "
                  + " ".join(f"{r:.2g}" for r in out["noise_floor"]["ratio"])] if out["noise_floor"] else []),
               f"wrote {path} and {figure} in {out['seconds']:.0f} s"]
    out["summary"] = "\n".join(summary)
    return out
