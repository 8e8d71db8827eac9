"""How small the kept Arnoldi eigenvalues get on the built-in digits MLP, against the 1e-6 warning threshold.

Fits ABIF once with ``--rank`` eigenpairs and prints ``λ_k / λ_1`` at a few ranks k, and which warnings fired.
``PYTHONPATH=src python benchmarks/eigen_ratio.py --rank 150 --iterations 200 [--weight-decay 0]``
"""

from __future__ import annotations

import argparse
import json
import warnings

import ifscope
from ifscope.recipes import load_recipe


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--recipe", default="digits-mlp")
    ap.add_argument("--rank", type=int, default=150)
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--select", default="positive")
    ap.add_argument("--weight-decay", type=float, default=None, help="default: the recipe's (part of the Hessian)")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON instead")
    args = ap.parse_args()
    recipe = load_recipe(args.recipe)
    wd = float(recipe.info.get("weight_decay", 0.0)) if args.weight_decay is None else args.weight_decay
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ifscope.NumericalWarning)
        inf = ifscope.Influence(recipe.task, recipe.train, method="arnoldi", rank=args.rank,
                                iterations=args.iterations, select=args.select, progress=False,
                                weight_decay=wd).fit()
    vals = inf.estimator.eigenvalues.double().abs()
    ours = [str(w.message) for w in caught if issubclass(w.category, ifscope.NumericalWarning)]
    ks = [k for k in sorted({1, 10, 20, 50, 100, 150, 200, len(vals)}) if k <= len(vals)]
    if args.json:
        print(json.dumps({"kept": len(vals), "weight_decay": wd, "warnings": ours,
                          "rows": [{"k": k, "eigenvalue": float(vals[k - 1]), "ratio": float(vals[k - 1] / vals[0])}
                                   for k in ks]}))
        return
    print(f"{args.recipe}: {len(vals)} kept eigenvalues (rank={args.rank}, iterations={args.iterations}, "
          f"select={args.select}, weight_decay={wd:g}); largest {float(vals[0]):.4g}")
    print("| k | λ_k | λ_k / λ_1 |\n|---|---|---|")
    for k in ks:
        print(f"| {k} | {float(vals[k - 1]):.3g} | {float(vals[k - 1] / vals[0]):.2g} |")
    print("warnings:", ours if ours else "none")


if __name__ == "__main__":
    main()
