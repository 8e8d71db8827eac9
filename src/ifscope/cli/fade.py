"""``ifscope fade``: correlation of each method's predictions with the actual effect of continued training, per T."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from . import common_arguments

DEFAULT_METHODS = ("horizon", "arnoldi", "arnoldi_horizon", "exact", "graddot", "tracin", "unrolled")
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


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("fade", help="how far ahead influence predicts continued training (fade.json, fade.png)")
    common_arguments(p)
    p.add_argument("--steps", type=_ints, default=[1, 3, 10, 30, 100, 300, 1000],
                   help="comma-separated horizons T (steps of continued full-batch gradient descent)")
    p.add_argument("--mode", choices=["remove", "upweight"], default="remove")
    p.add_argument("--epsilon", type=float, default=0.01, help="up-weighting: the example's weight becomes 1 + ε")
    p.add_argument("--n-ids", type=int, default=40, help="training examples re-weighted (seeded random sample)")
    p.add_argument("--n-queries", type=int, default=20, help="test examples whose loss is tracked (seeded sample)")
    p.add_argument("--methods", type=_methods, default=None,
                   help=f"comma-separated subset of {','.join(ALL_METHODS)} (default: all but horizon_schedule, "
                        "which is added under --train-batch-size)")
    p.add_argument("--lr", type=float, default=None, help="step size of the continued training (default 1/λ_max)")
    p.add_argument("--train-batch-size", type=int, default=None,
                   help="minibatch SGD for the continued training (default: full-batch gradient descent)")
    p.add_argument("--rank", type=int, default=100, help="Arnoldi eigenpairs kept")
    p.add_argument("--iterations", type=int, default=200, help="Arnoldi iterations")
    p.add_argument("--krylov", type=int, default=100, help="Lanczos steps for the horizon method's query vectors")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    return p


EXACT_LIMIT = 5000  # parameters above which the default method list leaves out the dense-Hessian `exact`


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from ..data import as_dataset, take
    from ..errors import ConfigError
    from ..fade import fade_curve, gd_schedule, plot_fade, trajectory_checkpoints
    from ..influence import Influence
    from ..store import write_json
    from ..validity import fade_validity, validity_lines
    from . import recipe_for

    t0 = time.time()
    if args.n_ids < 2 or args.n_queries < 1:
        raise ConfigError("--n-ids must be at least 2 and --n-queries at least 1")
    recipe = recipe_for(args)
    train, test = as_dataset(recipe.train, "train"), as_dataset(recipe.test, "test")
    if args.n_ids > len(train) or args.n_queries > len(test):
        raise ConfigError(f"--n-ids {args.n_ids} / --n-queries {args.n_queries} exceed the recipe's {len(train)} "
                          f"training and {len(test)} test examples")
    gen = torch.Generator().manual_seed(args.seed + 7)
    ids = torch.randperm(len(train), generator=gen)[: args.n_ids].sort().values
    q_idx = torch.randperm(len(test), generator=gen)[: args.n_queries].sort().values
    queries = take(test, q_idx)
    steps = sorted(set(args.steps))
    shared = dict(weight_decay=float(recipe.info.get("weight_decay", 0.0)), dtype=args.dtype, seed=args.seed,
                  batch_size=args.batch_size)
    if args.train_batch_size is not None and args.train_batch_size < 1:
        raise ConfigError(f"--train-batch-size must be a positive integer, got {args.train_batch_size}")
    schedule = gd_schedule(Influence(recipe.task, train, method="graddot", **shared), max(steps), args.lr,
                           batch_size=args.train_batch_size, seed=args.seed)
    horizon = dict(horizon=max(steps), lr=schedule.lr)
    build = {
        "horizon": lambda: Influence(recipe.task, train, method="horizon", krylov=args.krylov, **horizon, **shared),
        "arnoldi": lambda: Influence(recipe.task, train, method="arnoldi", rank=args.rank,
                                     iterations=args.iterations, **shared),
        "arnoldi_horizon": lambda: Influence(recipe.task, train, method="arnoldi", rank=args.rank,
                                             iterations=args.iterations, **horizon, **shared),
        "horizon_schedule": lambda: Influence(recipe.task, train, method="horizon", krylov=args.krylov,
                                              batch_order="schedule", **horizon, **shared),
        "exact": lambda: Influence(recipe.task, train, method="exact", **shared),
        "graddot": lambda: Influence(recipe.task, train, method="graddot", **shared),
        "unrolled": lambda: Influence(recipe.task, train, method="unrolled", train_batch_size=args.train_batch_size,
                                      **horizon, **shared),
        "tracin": lambda: Influence(recipe.task, train, method="tracin", per_step=True, **shared,
                                    checkpoints=trajectory_checkpoints(recipe.task, train, schedule, max(steps),
                                                                       dtype=getattr(torch, args.dtype))),
    }
    names = args.methods or [*DEFAULT_METHODS, *(["horizon_schedule"] if args.train_batch_size else [])]
    dim = sum(p.numel() for n, p in recipe.model.named_parameters() if n in recipe.task.parameter_names)
    if args.methods is None and dim > EXACT_LIMIT:  # the dense Hessian would not fit: leave exact out by default
        names = [n for n in names if n != "exact"]
    methods = {name: build[name]() for name in names}
    result = fade_curve(methods, queries, ids, steps=steps, mode=args.mode, epsilon=args.epsilon, schedule=schedule)
    out = result.to_dict()
    if "unrolled" in methods:
        out["validity_horizon"] = fade_validity(methods, queries, steps, schedule)
    out.update(recipe=args.recipe, seed=args.seed, query_ids=q_idx.tolist(), seconds=time.time() - t0)
    workdir = Path(args.workdir)
    write_json(workdir / "fade.json", out)
    plot_fade(result, workdir / "fade.png")
    half = "beyond the grid" if result.horizon_half is None else f"{result.horizon_half:.3g}"
    how = "full-batch GD" if args.train_batch_size is None else f"SGD batch {args.train_batch_size}"
    out["train_batch_size"] = args.train_batch_size
    summary = [f"fade ({args.mode}, {args.n_ids} training examples x {args.n_queries} queries, {how} "
               f"lr {schedule.lr:.3g}, recipe {args.recipe})", result.table("pearson"), result.table("spearman"),
               "gap:   " + " ".join(f"{g:.3g}" for g in result.gap),
               f"gap growth: rate r = {result.gap_rate:.3g} per step in c(e^rT - 1)/r, exponent "
               f"{result.gap_exponent:.2f} in T^a; T_1/2 ({result.reference}) = {half}",
               *validity_lines(out.get("validity_horizon", {})),
               f"wrote {workdir / 'fade.json'} and {workdir / 'fade.png'} in {out['seconds']:.0f} s"]
    out["summary"] = "\n".join(summary)
    return out
