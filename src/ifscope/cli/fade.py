"""``ifscope fade``: correlation of each method's predictions with the actual effect of continued training, per T.

The run's fitted estimator is one of the methods (its label: its method name); the others are references built
with the run's shared options: ``horizon`` (and ``horizon_schedule`` under minibatches), ``arnoldi_horizon`` (the
run's own eigenpairs with the horizon filter, when the run is arnoldi), ``graddot``, ``tracin`` along the actual
continued trajectory, ``unrolled`` (the exact derivative through the fade's own continued training, and the
reference of each checkpoint method's horizon of validity) and ``exact`` on small models. Options left out come from the recipe's ``defaults["fade"]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from . import apply_defaults, common_arguments, fitted_for, influence_arguments, run_facts

REFERENCE_METHODS = ("horizon", "arnoldi_horizon", "exact", "graddot", "tracin", "unrolled", "horizon_schedule",
                     "arnoldi")
EXACT_LIMIT = 5000  # parameters above which the default method list leaves out the dense-Hessian `exact`
DEFAULTS: dict[str, Any] = dict(steps=[1, 3, 10, 30, 100, 300, 1000], mode="remove", epsilon=0.01, n_ids=40,
                                n_queries=20, methods=None, train_lr=None, train_batch_size=None, krylov=100,
                                truth_dtype="float64", reference_dtype=None, reference_hessian_samples=None,
                                batching="auto", ids_from="random", budget_s=None)
IDS_FROM = ("random", "first_batch")
FLOAT64_LIMIT = 200_000  # parameters up to which the reference methods run in float64 by default


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from exc


def _names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


FALLBACK = dict(steps=[1, 3, 10, 30, 100, 300, 1000], mode="remove", epsilon=0.01, n_ids=40, n_queries=20, methods=None,
                lr=None, train_batch_size=None, rank=100, iterations=200, krylov=100, batch_size=500,
                hessian_samples=None, dtype="float64", truth_dtype=None, last_blocks=None, batching="auto")
"""Option values when neither the command line nor the recipe's ``defaults["fade"]`` gives one."""


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("fade", help="how far ahead influence predicts continued training (fade.json, figures)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    influence_arguments(common_arguments(p), exclude=("lr", "krylov", "train_batch_size"))
    f = p.add_argument_group("fade options (default: the recipe's, then the library's)")
    f.add_argument("--steps", type=_ints, default=None, help="comma-separated horizons T (default 1,3,...,1000)")
    f.add_argument("--mode", choices=["remove", "upweight"], default=None, help="remove (default) or upweight")
    f.add_argument("--epsilon", type=float, default=None, help="up-weighting: the example's weight becomes 1 + ε")
    f.add_argument("--n-ids", type=int, default=None, help="training examples re-weighted (seeded sample; 40)")
    f.add_argument("--n-queries", type=int, default=None, help="test examples whose loss is tracked (20)")
    f.add_argument("--ids-from", choices=IDS_FROM, default=None,
                   help="where the re-weighted ids are sampled: the whole training set (random, default) or the first "
                        "minibatch of the continued training (first_batch: every id takes part from T = 1)")
    f.add_argument("--methods", type=_names, default=None,
                   help="comma-separated: 'run' (the fitted estimator) and references "
                        f"{','.join(REFERENCE_METHODS)} (default: run and every reference that costs no refit)")
    f.add_argument("--lr", dest="train_lr", type=float, default=None,
                   help="step size of the continued training (default 1/λ_max of the run's spectrum)")
    f.add_argument("--train-batch-size", type=int, default=None,
                   help="minibatch SGD for the continued training (0 or default: full-batch gradient descent)")
    f.add_argument("--krylov", type=int, default=None, help="Lanczos steps for the horizon method's query vectors")
    f.add_argument("--reference-dtype", choices=["float64", "float32"], default=None,
                   help="precision of the reference methods (default float64 up to 200k parameters, else the run's)")
    f.add_argument("--reference-hessian-samples", type=int, default=None,
                   help="training examples the reference methods' curvature averages over (default: the run's)")
    f.add_argument("--truth-dtype", choices=["float64", "float32"], default=None,
                   help="precision of the ground-truth replays (default float64: changes near the float32 floor)")
    f.add_argument("--budget-s", type=float, default=None,
                   help="seconds of replays (ground truth and unrolled) the ids, queries, horizons and reference "
                        "precision left out are chosen for, by measuring one replay step and one unrolled step (60)")
    f.add_argument("--batching", choices=["auto", "vmap", "loop"], default=None,
                   help="replicas of the ground truth and rows of curvature products by vmap or a loop "
                        "(auto: the faster, measured)")
    return p


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from ..core.data import as_dataset, take
    from ..core.errors import ConfigError
    from ..experiments.fade import fade_curve, gd_schedule, method_label, plot_fade, rebind, reference_methods
    from ..experiments.measure import size_to_budget
    from ..experiments.sizing import Sizes, explicit_sizes, fade_workload
    from ..experiments.validity import fade_validity, validity_lines
    from ..truth.groundtruth import actual_changes
    from ..truth.prefix import cache_prefix
    from . import recipe_for

    t0 = time.time()
    recipe = recipe_for(args)
    explicit = explicit_sizes({**vars(args), "steps": args.steps})
    apply_defaults(args, recipe, "fade", DEFAULTS)
    if args.train_batch_size == 0:
        args.train_batch_size = None
    if args.n_ids < 2 or args.n_queries < 1:
        raise ConfigError("--n-ids must be at least 2 and --n-queries at least 1")
    inf = fitted_for(args, recipe)
    train, test = inf.train, as_dataset(recipe.test, "test")
    if args.n_ids > len(train) or args.n_queries > len(test):
        raise ConfigError(f"--n-ids {args.n_ids} / --n-queries {args.n_queries} exceed the recipe's {len(train)} "
                          f"training and {len(test)} test examples")
    if args.train_batch_size is not None and args.train_batch_size < 1:
        raise ConfigError(f"--train-batch-size must be a positive integer, got {args.train_batch_size}")
    gen = torch.Generator().manual_seed(args.seed + 7)
    id_order = torch.randperm(len(train), generator=gen)[: args.n_ids]  # a smaller budget keeps the first ones
    q_order = torch.randperm(len(test), generator=gen)[: args.n_queries]
    q_idx = q_order.sort().values
    queries = take(test, q_idx)
    steps = sorted(set(args.steps))
    schedule = gd_schedule(inf, max(steps), args.train_lr, batch_size=args.train_batch_size, seed=args.seed)
    if args.ids_from == "first_batch":  # under SGD a random id waits N/batch steps on average before it acts at all
        first = schedule.batches[0]
        if args.n_ids > len(first):
            raise ConfigError(f"--ids-from first_batch samples --n-ids {args.n_ids} from the first minibatch of "
                              f"{len(first)} examples: lower --n-ids or raise --train-batch-size")
        id_order = first[torch.randperm(len(first), generator=gen)[: args.n_ids]]
    # the frozen prefix of a text model is computed once: ground truth and every method replay only the selected part
    truth_dtype = getattr(torch, args.truth_dtype)
    prefix = cache_prefix(inf.task, inf.train, queries, dtype=truth_dtype, progress=True)
    task, (cached_train, queries) = prefix.task, prefix.datasets
    run_view = rebind(inf, task, cached_train) if prefix.start is not None else inf
    names = args.methods
    dim = inf.estimator.ctx.space.dim
    ref_dtype = args.reference_dtype or ("float64" if dim <= FLOAT64_LIMIT else str(inf.dtype).replace("torch.", ""))
    if names is None:
        names = ["run", "horizon", *(["arnoldi_horizon"] if inf.method == "arnoldi" else []),
                 *(["exact"] if dim <= EXACT_LIMIT and inf.method != "exact" else []), "graddot", "tracin", "unrolled",
                 *(["horizon_schedule"] if args.train_batch_size else [])]
    chosen = size_to_budget(task, cached_train, queries, schedule, Sizes(args.n_ids, args.n_queries, tuple(steps),
                            ref_dtype), fade_workload(names), args.budget_s,
                            explicit, truth_dtype, args.batching)
    print(f"ifscope: fade {chosen}", file=sys.stderr)
    ids, q_keep = id_order[: chosen.sizes.n_ids].sort().values, q_order[: chosen.sizes.n_queries].sort().values
    queries = take(as_dataset(queries, "queries"), torch.searchsorted(q_idx, q_keep))
    q_idx, steps, ref_dtype = q_keep, list(chosen.sizes.steps), chosen.sizes.reference_dtype
    args.n_ids, args.n_queries = len(ids), len(q_idx)
    schedule = schedule.truncated(max(steps))
    t_truth = time.time()
    truth = actual_changes(task, cached_train, queries, ids, steps, schedule, mode=args.mode, epsilon=args.epsilon,
                           dtype=truth_dtype, batching=args.batching)
    t_truth = time.time() - t_truth
    bad = [n for n in names if n != "run" and n not in REFERENCE_METHODS]
    if bad:
        raise ConfigError(f"unknown fade method(s) {bad}; choose from run,{','.join(REFERENCE_METHODS)}")
    methods = {method_label(inf): run_view} if "run" in names else {}
    methods.update(reference_methods(run_view, [n for n in names if n != "run" and n not in methods], schedule,
                                     max(steps), krylov=args.krylov, dtype=getattr(torch, ref_dtype),
                                     hessian_samples=args.reference_hessian_samples))
    result = fade_curve(methods, queries, ids, steps=steps, mode=args.mode, epsilon=args.epsilon, schedule=schedule,
                        truth=truth)
    validity = fade_validity(methods, queries, steps, schedule) if "unrolled" in methods else None
    out = {**run_facts(inf), **result.to_dict(), **({"validity_horizon": validity} if validity else {}),
           "recipe": args.recipe, "seed": args.seed, "reference_dtype": ref_dtype, "ids_from": args.ids_from, "query_ids": q_idx.tolist(),
           "train_batch_size": args.train_batch_size, "noise_floor": truth.noise_floor(), "truth_seconds": t_truth,
           "truth_dtype": args.truth_dtype, "batching": truth.batching, "threads": torch.get_num_threads(),
           "prefix": {"cached": prefix.start is not None, "start_block": prefix.start, "seconds": prefix.seconds},
           "parameters": dim, "n_train": inf.n_train, "chosen": chosen.as_dict(), "seconds": time.time() - t0}
    run_dir = inf.run
    path = run_dir.save_json("fade.json", out)
    figure = run_dir.record(str(plot_fade(result, run_dir.path / "report" / "fade_curve.png")
                                .relative_to(run_dir.path)))
    half = "beyond the grid" if result.horizon_half is None else f"{result.horizon_half:.3g}"
    how = "full-batch GD" if args.train_batch_size is None else f"SGD batch {args.train_batch_size}"
    summary = [f"fade ({args.mode}, {args.n_ids} training examples x {args.n_queries} queries, {how} "
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
