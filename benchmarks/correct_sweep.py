"""Sweep ``ifscope.correct``'s budget (strategy, k, steps, lr) on the digits recipe; print a markdown table.

Queries are every test image the trained model mis-predicts (recipe with all 797 images not used for training as
its test set); the held-out set is every other test image. The defaults in ``ifscope.correct`` were chosen on a
development seed (``--seed 1``) as the largest influence fix rate whose mean held-out accuracy drop is ≤ 0.5 point
(half the 1-point target, a margin for a new model), then reported on the default seed 0 (docs/correct.md).

    OMP_NUM_THREADS=1 python benchmarks/correct_sweep.py --seed 1
"""

from __future__ import annotations

import argparse
import itertools

from ifscope import Influence
from ifscope.correct import correct, split_mispredicted
from ifscope.data import as_dataset, take
from ifscope.recipes import load_recipe


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="digits-mlp")
    ap.add_argument("--n-test", type=int, default=797)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--strategies", default="proponents,opponents,both")
    ap.add_argument("--k", default="8,16,32,64")
    ap.add_argument("--steps", default="3,10")
    ap.add_argument("--lr", default="0.03,0.1,0.3")
    ap.add_argument("--anchor", default="0", help="other training examples added to each step (0 = none)")
    ap.add_argument("--max-drop", type=float, default=0.5,
                    help="held-out accuracy drop (points) the chosen setting may cost on this seed")
    ap.add_argument("--stop", default="0", help="stop a correction once its query is fixed: 0, 1 or 0,1")
    args = ap.parse_args()

    recipe = load_recipe(args.recipe, n_test=args.n_test, seed=args.seed)
    inf = Influence(recipe.task, recipe.train, method="arnoldi", rank=50, iterations=200,
                    weight_decay=recipe.info.get("weight_decay", 0.0), seed=args.seed, progress=False).fit()
    q_idx, h_idx = split_mispredicted(inf, recipe.test)
    test = as_dataset(recipe.test, "test")
    queries, heldout = take(test, q_idx), take(test, h_idx)
    print(f"{args.recipe} seed {args.seed}: {len(q_idx)} mis-predicted queries, {len(h_idx)} held-out images\n")
    print("| strategy | k | steps | lr | anchor | stop | fix influence | fix random | fix same-class | ratio | held-out acc drop (pts) "
          "| broken (mean) | s/correction |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    grid = itertools.product(args.strategies.split(","), [int(v) for v in args.k.split(",")],
                             [int(v) for v in args.steps.split(",")], [float(v) for v in args.lr.split(",")],
                             [int(v) for v in args.anchor.split(",")], [bool(int(v)) for v in args.stop.split(",")])
    best = None
    for strategy, k, steps, lr, anchor, stop in grid:
        d = correct(inf, queries, heldout=heldout, k=k, steps=steps, lr=lr, strategy=strategy, anchor=anchor, stop_when_fixed=stop,
                    baselines=["random", "random_same_class"], seed=args.seed, progress=False).to_dict()
        fr = d["fix_rate"]
        drop = 100 * (d["heldout_accuracy"]["before"] - d["heldout_accuracy"]["after"])
        ratio = fr["influence"] / fr["random"] if fr["random"] else float("inf")
        print(f"| {strategy} | {k} | {steps} | {lr:g} | {anchor} | {'yes' if stop else 'no'} | {fr['influence']:.2f} | {fr['random']:.2f} | "
              f"{fr['random_same_class']:.2f} | {ratio:.1f} | {drop:.2f} | {d['broken']:.1f} | "
              f"{d['seconds_per_correction']:.3f} |", flush=True)
        key = (fr["influence"], -drop)
        if drop <= args.max_drop and (best is None or key > best[0]):
            best = (key, strategy, k, steps, lr, anchor, stop)
    if best is not None:
        print(f"\nbest with held-out drop <= {args.max_drop:g} point: strategy={best[1]} k={best[2]} steps={best[3]} "
              f"lr={best[4]:g} anchor={best[5]} stop_when_fixed={best[6]}")
    else:
        print(f"\nno setting kept the held-out accuracy drop within {args.max_drop:g} point")


if __name__ == "__main__":
    main()
