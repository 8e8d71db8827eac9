"""``ifscope fade``: correlation of each method's predictions with the actual effect of continued training, per T."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from . import common_arguments

DEFAULT_METHODS = ("horizon", "arnoldi", "arnoldi_horizon", "exact", "graddot", "tracin")
ALL_METHODS = (*DEFAULT_METHODS, "horizon_schedule")


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from exc


def _methods(text: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    bad = [n for n in names if n not in ALL_METHODS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown method(s) {bad}; choose from {','.join(ALL_METHODS)}")
    return names


FALLBACK = dict(steps=[1, 3, 10, 30, 100, 300, 1000], mode="remove", epsilon=0.01, n_ids=40, n_queries=20, methods=None,
                lr=None, train_batch_size=None, rank=100, iterations=200, krylov=100, batch_size=500,
                hessian_samples=None, dtype="float64", truth_dtype=None, last_blocks=None, batching="auto")
"""Option values when neither the command line nor the recipe's ``defaults["fade"]`` gives one."""


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("fade", help="how far ahead influence predicts continued training (fade.json, fade.png)")
    common_arguments(p)
    p.add_argument("--steps", type=_ints, default=None,
                   help="comma-separated horizons T (steps of continued training; default 1,3,...,1000 or the recipe's)")
    p.add_argument("--mode", choices=["remove", "upweight"], default=None)
    p.add_argument("--epsilon", type=float, default=None, help="up-weighting: the example's weight becomes 1 + ε")
    p.add_argument("--n-ids", type=int, default=None, help="training examples re-weighted (seeded random sample)")
    p.add_argument("--n-queries", type=int, default=None, help="test examples whose loss is tracked (seeded sample)")
    p.add_argument("--methods", type=_methods, default=None,
                   help=f"comma-separated subset of {','.join(ALL_METHODS)} (default: all but horizon_schedule, "
                        "which is added under --train-batch-size)")
    p.add_argument("--lr", type=float, default=None, help="step size of the continued training (default 1/λ_max)")
    p.add_argument("--train-batch-size", type=int, default=None,
                   help="minibatch SGD for the continued training (0 = full-batch gradient descent)")
    p.add_argument("--rank", type=int, default=None, help="Arnoldi eigenpairs kept")
    p.add_argument("--iterations", type=int, default=None, help="Arnoldi iterations")
    p.add_argument("--krylov", type=int, default=None, help="Lanczos steps for the horizon method's query vectors")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--hessian-samples", type=int, default=None, help="training examples the curvature averages over")
    p.add_argument("--dtype", choices=["float64", "float32"], default=None, help="the influence methods' precision")
    p.add_argument("--truth-dtype", choices=["float64", "float32"], default=None,
                   help="precision of the ground-truth replays (default: --dtype)")
    p.add_argument("--last-blocks", type=int, default=None,
                   help="text models: take influence over the last N transformer blocks and the head, and replay "
                        "only those on cached hidden states")
    p.add_argument("--batching", choices=["auto", "vmap", "loop"], default=None,
                   help="replicas of the ground truth and rows of curvature products by vmap or a loop "
                        "(auto: the faster, measured)")
    return p


EXACT_LIMIT = 5000  # parameters above which the default method list leaves out the dense-Hessian `exact`


def fade_options(args: argparse.Namespace, recipe: Any) -> argparse.Namespace:
    """The command line's values, else the recipe's ``defaults["fade"]``, else :data:`FALLBACK`."""
    from ..errors import ConfigError
    declared = dict(getattr(recipe, "defaults", {}).get("fade", {}))
    unknown = sorted(set(declared) - set(FALLBACK))
    if unknown:
        raise ConfigError(f"the recipe's defaults['fade'] names unknown option(s) {unknown}; known: {sorted(FALLBACK)}")
    merged = {k: getattr(args, k) if getattr(args, k, None) is not None else declared.get(k, v)
              for k, v in FALLBACK.items()}
    if merged["train_batch_size"] == 0:
        merged["train_batch_size"] = None
    merged["truth_dtype"] = merged["truth_dtype"] or merged["dtype"]
    return argparse.Namespace(**{**vars(args), **merged})


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from ..data import as_dataset, take
    from ..errors import ConfigError
    from ..fade import fade_curve, gd_schedule, plot_fade, trajectory_checkpoints
    from ..groundtruth import actual_changes
    from ..influence import Influence
    from ..prefix import cache_prefix
    from ..store import write_json
    from . import recipe_for

    t0 = time.time()
    recipe = recipe_for(args)
    args = fade_options(args, recipe)
    if args.n_ids < 2 or args.n_queries < 1:
        raise ConfigError("--n-ids must be at least 2 and --n-queries at least 1")
    train, test = as_dataset(recipe.train, "train"), as_dataset(recipe.test, "test")
    if args.n_ids > len(train) or args.n_queries > len(test):
        raise ConfigError(f"--n-ids {args.n_ids} / --n-queries {args.n_queries} exceed the recipe's {len(train)} "
                          f"training and {len(test)} test examples")
    gen = torch.Generator().manual_seed(args.seed + 7)
    ids = torch.randperm(len(train), generator=gen)[: args.n_ids].sort().values
    q_idx = torch.randperm(len(test), generator=gen)[: args.n_queries].sort().values
    task = recipe.task
    if args.last_blocks is not None:
        from ..hf import hf_classification
        task = hf_classification(recipe.model, last_blocks=args.last_blocks)
    truth_dtype = getattr(torch, args.truth_dtype)
    prefix = cache_prefix(task, recipe.train, take(test, q_idx), dtype=truth_dtype, progress=True)
    task, (train, queries) = prefix.task, prefix.datasets
    train = as_dataset(train, "train")
    steps = sorted(set(args.steps))
    shared = dict(weight_decay=float(recipe.info.get("weight_decay", 0.0)), dtype=args.dtype, seed=args.seed,
                  batch_size=args.batch_size, hessian_samples=args.hessian_samples)
    if args.train_batch_size is not None and args.train_batch_size < 1:
        raise ConfigError(f"--train-batch-size must be a positive integer, got {args.train_batch_size}")
    schedule = gd_schedule(Influence(task, train, method="graddot", **shared), max(steps), args.lr,
                           batch_size=args.train_batch_size, seed=args.seed)
    t_truth = time.time()
    truth = actual_changes(task, train, queries, ids, steps, schedule, mode=args.mode, epsilon=args.epsilon,
                           dtype=truth_dtype, batching=args.batching)
    t_truth = time.time() - t_truth
    horizon = dict(horizon=max(steps), lr=schedule.lr)
    build = {
        "horizon": lambda: Influence(task, train, method="horizon", krylov=args.krylov, **horizon, **shared),
        "arnoldi": lambda: Influence(task, train, method="arnoldi", rank=args.rank,
                                     iterations=args.iterations, **shared),
        "arnoldi_horizon": lambda: Influence(task, train, method="arnoldi", rank=args.rank,
                                             iterations=args.iterations, **horizon, **shared),
        "horizon_schedule": lambda: Influence(task, train, method="horizon", krylov=args.krylov,
                                              batch_order="schedule", **horizon, **shared),
        "exact": lambda: Influence(task, train, method="exact", **shared),
        "graddot": lambda: Influence(task, train, method="graddot", **shared),
        "tracin": lambda: Influence(task, train, method="tracin", per_step=True, **shared,
                                    checkpoints=trajectory_checkpoints(task, train, schedule, max(steps),
                                                                       dtype=getattr(torch, args.dtype))),
    }
    names = args.methods or [*DEFAULT_METHODS, *(["horizon_schedule"] if args.train_batch_size else [])]
    dim = sum(p.numel() for n, p in task.model.named_parameters() if n in task.parameter_names)
    if args.methods is None and dim > EXACT_LIMIT:  # the dense Hessian would not fit: leave exact out by default
        names = [n for n in names if n != "exact"]
    methods = {name: build[name]() for name in names}
    result = fade_curve(methods, queries, ids, steps=steps, mode=args.mode, epsilon=args.epsilon, schedule=schedule,
                        truth=truth)
    out = result.to_dict()
    out.update(recipe=args.recipe, seed=args.seed, query_ids=q_idx.tolist(), seconds=time.time() - t0,
               noise_floor=truth.noise_floor(), truth_seconds=t_truth, truth_dtype=args.truth_dtype,
               dtype=args.dtype, batching=truth.batching, threads=torch.get_num_threads(),
               prefix={"cached": prefix.start is not None, "start_block": prefix.start, "seconds": prefix.seconds},
               parameters=dim, last_blocks=args.last_blocks, n_train=len(train), train_batch_size=args.train_batch_size)
    workdir = Path(args.workdir)
    write_json(workdir / "fade.json", out)
    plot_fade(result, workdir / "fade.png")
    half = "beyond the grid" if result.horizon_half is None else f"{result.horizon_half:.3g}"
    how = "full-batch GD" if args.train_batch_size is None else f"SGD batch {args.train_batch_size}"
    summary = [f"fade ({args.mode}, {args.n_ids} training examples x {args.n_queries} queries, {how} "
               f"lr {schedule.lr:.3g}, recipe {args.recipe})", result.table("pearson"), result.table("spearman"),
               "gap:   " + " ".join(f"{g:.3g}" for g in result.gap),
               f"gap growth: rate r = {result.gap_rate:.3g} per step in c(e^rT - 1)/r, exponent "
               f"{result.gap_exponent:.2f} in T^a; T_1/2 ({result.reference}) = {half}",
               "noise floor (|Δℓ| of a second unchanged replay on the other kernel / RMS actual change): "
               + " ".join(f"{r:.2g}" for r in out["noise_floor"]["ratio"]),
               f"wrote {workdir / 'fade.json'} and {workdir / 'fade.png'} in {out['seconds']:.0f} s"]
    out["summary"] = "\n".join(summary)
    return out
