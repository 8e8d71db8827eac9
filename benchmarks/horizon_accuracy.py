"""How faithful is the query-side vector f_T(H) g of method='horizon'? Lanczos/recursion vs the dense formula.

Usage: python benchmarks/horizon_accuracy.py [--recipe digits-mlp] [--queries 10]
Prints, per T and solver, the relative error ‖x − x_dense‖/‖x_dense‖ over the query gradients and the seconds taken.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from ifscope.core.curvature import Curvature
from ifscope.core.data import as_dataset, take
from ifscope.estimators.horizon import horizon_filter
from ifscope.experiments.fade import gd_schedule
from ifscope.influence import Influence
from ifscope.recipes import load_recipe


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipe", default="digits-mlp")
    ap.add_argument("--queries", type=int, default=10)
    ap.add_argument("--steps", default="10,100,1000")
    ap.add_argument("--krylov", default="25,50,100")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON instead")
    args = ap.parse_args()
    rows = []
    recipe = load_recipe(args.recipe)
    wd = float(recipe.info.get("weight_decay", 0.0))
    train = as_dataset(recipe.train, "train")
    queries = take(as_dataset(recipe.test, "test"), range(args.queries))
    shared = dict(weight_decay=wd, dtype="float64", batch_size=500, progress=False)
    lr = gd_schedule(Influence(recipe.task, train, method="graddot", **shared), 1).lr
    params, rest = recipe.task.state(torch.float64)
    op = Curvature(recipe.task, params, rest, [recipe.task.cast(take(train, range(len(train))), torch.float64)],
                   weight_decay=wd)
    t0 = time.time()
    vals, vecs = torch.linalg.eigh(op.dense())
    if not args.json:
        print(f"dense Hessian + eigh: {time.time() - t0:.1f} s; eigenvalues [{vals.min():.3g}, {vals.max():.3g}], "
              f"lr {lr:.4g}")
    for t in [int(s) for s in args.steps.split(",")]:
        probe = Influence(recipe.task, train, method="horizon", horizon=t, lr=lr, **shared).fit()
        g = probe.estimator.ctx.grads(recipe.task.cast(queries, torch.float64))
        dense = g @ (vecs * horizon_filter(vals, t, lr)) @ vecs.T
        runs = [("recursion", None)] if t <= 1000 else []
        runs += [("lanczos", int(k)) for k in args.krylov.split(",")]
        for solver, k in runs:
            inf = Influence(recipe.task, train, method="horizon", horizon=t, lr=lr, solver=solver,
                            **({"krylov": k} if k else {}), **shared).fit()
            t1 = time.time()
            x = inf.estimator.apply(g)
            err = float((x - dense).norm() / dense.norm())
            rows.append({"T": t, "solver": solver, "krylov": k, "relative_error": err, "seconds": time.time() - t1})
            if not args.json:
                print(f"T={t:5d} {solver:9s} krylov={k or '-':>4} rel.error {err:.2e}  {rows[-1]['seconds']:.1f} s")
    if args.json:
        print(json.dumps({"lr": lr, "rows": rows}))


if __name__ == "__main__":
    main()
