"""``ifscope demo``: ABIF on the digits default; the top proponents and opponents of a few test digits."""

from __future__ import annotations

import argparse
import time
from typing import Any


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("demo", help="run ifscope end to end on the built-in digits model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rank", type=int, default=50)
    p.add_argument("--iterations", type=int, default=200)
    p.add_argument("--queries", type=int, default=4)
    p.add_argument("-k", type=int, default=5)
    return p


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ..influence import Influence
    from ..recipes.digits import digits_mlp

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
    lines = [f"digits MLP ({sum(p.numel() for p in recipe.model.parameters())} parameters, {inf.n_train} training "
             f"images), ABIF rank {len(inf.estimator.eigenvalues)} from {args.iterations} Arnoldi iterations"]
    out = []
    for q in range(len(queries[1])):
        row = {"query": q, "label": int(queries[1][q]), "predicted": int(preds[q]),
               "proponents": [[int(i), int(ytr[i]), float(s)] for i, s in
                              zip(top.proponents[q], top.proponent_scores[q])],
               "opponents": [[int(i), int(ytr[i]), float(s)] for i, s in zip(top.opponents[q], top.opponent_scores[q])]}
        out.append(row)
        lines.append(f"test digit {q}: label {row['label']}, predicted {row['predicted']}")
        lines.append("  proponents: " + ", ".join(f"#{i} ({c}) {s:+.3g}" for i, c, s in row["proponents"]))
        lines.append("  opponents:  " + ", ".join(f"#{i} ({c}) {s:+.3g}" for i, c, s in row["opponents"]))
    lines.append(f"done in {time.time() - t0:.1f} s")
    return {"queries": out, "seconds": time.time() - t0, "summary": "\n".join(lines)}
