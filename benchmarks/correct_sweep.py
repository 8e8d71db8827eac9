"""Sweep ``ifscope.experiments.correct``'s budget (strategy, k, steps, lr, anchor, stop, guard) and the influence method on a recipe;
print a markdown table.

Queries are every test example the trained model mis-predicts (``--n-test 797``: all 797 unseen digits for ``digits-mlp``); the held-out set is every other test example. The influence is fitted once per
method with the recipe's correct defaults (``--method`` overrides), on the cached frozen prefix for text models, and
every budget of the grid is spent on the same fitted Influence. Budget defaults were chosen on a development seed
as the largest influence fix rate whose held-out drop stays within ``--max-drop`` (docs/experiments_correction.md).

    OMP_NUM_THREADS=1 python benchmarks/correct_sweep.py --recipe digits-cnn --seed 1 --lr 0.003,0.005 --stop 1
"""

from __future__ import annotations

import argparse
import itertools
import time

from ifscope.cli import build_parser, fitted_for, recipe_for
from ifscope.core.data import as_dataset, take
from ifscope.experiments.correct import correct, split_mispredicted
from ifscope.truth.prefix import cache_prefix


def fitted(recipe_name: str, seed: int, method: str | None, workdir: str, n_test: int | None):
    """``(recipe, influence on the cached prefix)`` as ``ifscope correct`` builds them (the run's fit reused)."""
    argv = ["correct", "--recipe", recipe_name, "--seed", str(seed), "--workdir", workdir,
            *(["--method", method] if method else []), *(["--n-test", str(n_test)] if n_test else [])]
    args = build_parser().parse_args(argv)
    recipe = recipe_for(args, **({"n_test": n_test} if n_test else {}))
    run_inf = fitted_for(args, recipe)
    pre = cache_prefix(run_inf.task, run_inf.train, recipe.test, batch_size=run_inf.config["batch_size"])
    inf = run_inf.derive(task=pre.task, train=pre.datasets[0]) if pre.start is not None else run_inf
    inf.show_progress = False
    return recipe, inf, as_dataset(pre.datasets[1], "test")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="digits-mlp")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--n-test", type=int, default=None, help="passed to the recipe (digits-mlp: 797, all unseen)")
    ap.add_argument("--methods", default=None, help="influence methods, e.g. arnoldi,graddot (default: the recipe's)")
    ap.add_argument("--queries", type=int, default=None, help="the first N mistakes (default: the recipe's, or all)")
    ap.add_argument("--strategies", default="proponents")
    ap.add_argument("--k", default="16,32,64")
    ap.add_argument("--steps", default="10,30")
    ap.add_argument("--lr", default="0.03,0.1,0.3")
    ap.add_argument("--anchor", default="0", help="other training examples added to each step (0 = none)")
    ap.add_argument("--stop", default="0", help="stop a correction once its query is fixed: 0, 1 or 0,1")
    ap.add_argument("--guard", default="0", help="guard sizes (training examples; 0 = none), e.g. 0,400")
    ap.add_argument("--guard-drop", default="0.01", help="accuracy the guard may lose, e.g. 0.01,0.02")
    ap.add_argument("--revert", default="0", help="return unfixed corrections to the checkpoint: 0, 1 or 0,1")
    ap.add_argument("--workdir", default="runs/sweep", help="run directories (one per method) under this prefix")
    ap.add_argument("--max-drop", type=float, default=0.5,
                    help="held-out accuracy drop (points) the chosen setting may cost on this seed")
    args = ap.parse_args()

    methods = args.methods.split(",") if args.methods else [None]
    print("| method | strategy | k | steps | lr | anchor | stop | guard | fix influence | fix random | fix same-class "
          "| ratio | held-out acc drop (pts) | broken (mean) | s/correction |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    best = None
    for name in methods:
        t0 = time.time()
        recipe, inf, test = fitted(args.recipe, args.seed, name, f"{args.workdir}-{args.recipe}-{args.seed}-{name}",
                                   args.n_test)
        method, defaults = inf.method, recipe.defaults.get("correct", {})
        q_idx, h_idx = split_mispredicted(inf, test, n=args.queries or defaults.get("queries"))
        queries, heldout = take(test, q_idx), take(test, h_idx)
        print(f"<!-- {args.recipe} seed {args.seed} {method}: {len(q_idx)} mis-predicted queries, {len(h_idx)} held "
              f"out, fit {time.time() - t0:.0f} s -->", flush=True)
        grid = itertools.product(args.strategies.split(","), [int(v) for v in args.k.split(",")],
                                 [int(v) for v in args.steps.split(",")], [float(v) for v in args.lr.split(",")],
                                 [int(v) for v in args.anchor.split(",")], [bool(int(v)) for v in args.stop.split(",")],
                                 [int(v) for v in args.guard.split(",")], [float(v) for v in args.guard_drop.split(",")],
                                 [bool(int(v)) for v in args.revert.split(",")])
        for strategy, k, steps, lr, anchor, stop, guard, guard_drop, revert in grid:
            d = correct(inf, queries, heldout=heldout, k=k, steps=steps, lr=lr, strategy=strategy, anchor=anchor,
                        stop_when_fixed=stop, guard=guard, guard_drop=guard_drop, revert_unfixed=revert,
                        baselines=["random", "random_same_class"], seed=args.seed, progress=False).to_dict()
            fr = d["fix_rate"]
            drop = 100 * (d["heldout_accuracy"]["before"] - d["heldout_accuracy"]["after"])
            ratio = fr["influence"] / fr["random"] if fr["random"] else float("inf")
            g = (f"{guard}/{guard_drop:g}" if guard else "-") + (" revert" if revert else "")
            print(f"| {method} | {strategy} | {k} | {steps} | {lr:g} | {anchor} | {'yes' if stop else 'no'} | {g} | "
                  f"{fr['influence']:.2f} | {fr['random']:.2f} | {fr['random_same_class']:.2f} | {ratio:.1f} | "
                  f"{drop:.2f} | {d['broken']:.1f} | {d['seconds_per_correction']:.3f} |", flush=True)
            key = (fr["influence"], -drop)
            if drop <= args.max_drop and (best is None or key > best[0]):
                best = (key, method, strategy, k, steps, lr, anchor, stop, guard, guard_drop, revert)
    if best is not None:
        print(f"\nbest with held-out drop <= {args.max_drop:g} point: method={best[1]} strategy={best[2]} k={best[3]} "
              f"steps={best[4]} lr={best[5]:g} anchor={best[6]} stop_when_fixed={best[7]} guard={best[8]} "
              f"guard_drop={best[9]:g} revert_unfixed={best[10]}")
    else:
        print(f"\nno setting kept the held-out accuracy drop within {args.max_drop:g} point")


if __name__ == "__main__":
    main()
