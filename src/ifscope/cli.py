"""The ``ifscope`` command."""

from __future__ import annotations

import argparse
import sys
import time

from .errors import IfscopeError


def demo(args: argparse.Namespace) -> int:
    """ABIF scores on the digits default; print the top proponents and opponents of a few test digits."""
    from .influence import Influence
    from .recipes.digits import digits_mlp

    t0 = time.time()
    recipe = digits_mlp(seed=args.seed)
    x, y = recipe.test
    inf = Influence(recipe.task, recipe.train, method="arnoldi", rank=args.rank, iterations=args.iterations,
                    weight_decay=recipe.info["weight_decay"], seed=args.seed)
    inf.fit()
    queries = (x[: args.queries], y[: args.queries])
    top = inf.top(queries, k=args.k)
    ytr = recipe.train[1]
    preds = recipe.model(queries[0]).argmax(1)
    print(f"digits MLP ({sum(p.numel() for p in recipe.model.parameters())} parameters, {inf.n_train} training "
          f"images), ABIF rank {len(inf.estimator.eigenvalues)} from {args.iterations} Arnoldi iterations")
    for q in range(len(queries[1])):
        pro = ", ".join(f"#{int(i)} ({int(ytr[i])}) {float(s):+.3g}"
                        for i, s in zip(top.proponents[q], top.proponent_scores[q]))
        opp = ", ".join(f"#{int(i)} ({int(ytr[i])}) {float(s):+.3g}"
                        for i, s in zip(top.opponents[q], top.opponent_scores[q]))
        print(f"test digit {q}: label {int(queries[1][q])}, predicted {int(preds[q])}")
        print(f"  proponents: {pro}")
        print(f"  opponents:  {opp}")
    print(f"done in {time.time() - t0:.1f} s")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ifscope", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="run ifscope on the built-in digits model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rank", type=int, default=50)
    p.add_argument("--iterations", type=int, default=200)
    p.add_argument("--queries", type=int, default=4)
    p.add_argument("-k", type=int, default=5)
    p.set_defaults(func=demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except IfscopeError as exc:
        print(f"ifscope: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
