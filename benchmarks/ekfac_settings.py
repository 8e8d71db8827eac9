"""Why the LDS benchmark's EK-FAC rows differ between ifscope and kronfluence: the settings, not the method.

benchmarks/lds.py runs both with their defaults: the true Fisher (one label per training example drawn from the
model's softmax) and the damping heuristic (0.1 × each layer's mean eigenvalue); ifscope also adds the recipe's
weight decay to every eigenvalue, as the curvature of the objective the model was trained on, and kronfluence has
none. With the empirical Fisher and no weight decay the two give the same scores (benchmarks/ekfac_agreement.py).
This script measures, on one recipe's model and the same queries, the mean per-query Spearman correlation of the
score matrices between: two runs of each library's true Fisher with different label draws (the sampling noise), the
two libraries' true Fisher, and ifscope's empirical Fisher with and without the weight decay. Run in the benchmark
environment (benchmarks/setup_peers.sh):

    OMP_NUM_THREADS=2 PYTHONPATH=src .benchenv/bin/python benchmarks/ekfac_settings.py --recipe digits-mlp
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import nn

import ifscope
from ifscope.core.data import as_dataset, take


def mean_spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over queries (rows) of the Spearman correlation between two ``[Q, N]`` score matrices."""
    return float(np.mean([spearmanr(x, y)[0] for x, y in zip(a.double().numpy(), b.double().numpy())]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default="digits-mlp")
    ap.add_argument("--queries", type=int, default=30)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    from lds_methods import kronecker_task
    from peers import kronfluence_method

    recipe = ifscope.load_recipe(args.recipe)
    wd = float(recipe.info["weight_decay"])
    train, test = as_dataset(recipe.train, "train"), as_dataset(recipe.test, "test")
    queries = take(test, range(args.queries))
    task = kronecker_task(recipe)  # the layers both libraries factor, as in benchmarks/lds.py
    xt = tuple(t.float() for t in take(train, range(len(train))))
    xq = tuple(t.float() for t in queries)

    def theirs(draw: int, empirical: bool = False) -> torch.Tensor:
        torch.manual_seed(draw)  # kronfluence draws its labels from the global generator
        model = copy.deepcopy(recipe.model)  # a fresh copy: kronfluence rewires modules
        model = model if any(True for _ in model.children()) else nn.Sequential(model)
        return torch.as_tensor(kronfluence_method(model, (xt[0], xt[1].long()), (xq[0], xq[1].long()), None,
                                                  "ekfac", empirical=empirical)())

    def ours(seed: int, weight_decay: float, fisher: str = "true") -> torch.Tensor:
        return ifscope.Influence(task, recipe.train, "ekfac", fisher=fisher, weight_decay=weight_decay, seed=seed,
                                 progress=False).scores(queries)
    k0, k1, o0, o1 = theirs(0), theirs(1), ours(0, 0.0), ours(1, 0.0)
    rows: list[dict[str, Any]] = [
        {"pair": "kronfluence, true Fisher: two label draws", "spearman": mean_spearman(k0, k1)},
        {"pair": "ifscope, true Fisher (no weight decay): two label draws (seeds 0, 1)", "spearman": mean_spearman(o0, o1)},
        {"pair": "ifscope vs kronfluence, true Fisher (no weight decay), first draws", "spearman": mean_spearman(o0, k0)},
        {"pair": "ifscope vs kronfluence, empirical Fisher (no weight decay)",
         "spearman": mean_spearman(ours(0, 0.0, "empirical"), theirs(0, empirical=True))},
        {"pair": f"ifscope, empirical Fisher: weight decay {wd:g} vs none",
         "spearman": mean_spearman(ours(0, wd, "empirical"), ours(0, 0.0, "empirical"))},
        {"pair": f"ifscope with weight decay {wd:g} (as in benchmarks/lds.py) vs kronfluence, true Fisher",
         "spearman": mean_spearman(ours(0, wd), k0)},
    ]
    info = {"recipe": args.recipe, "weight_decay": wd, "n_train": len(train), "n_queries": args.queries,
            "parameters": sum(p.numel() for p in recipe.model.parameters()), "threads": torch.get_num_threads()}
    for r in rows:
        print(f"{r['spearman']:.3f}  {r['pair']}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), **info, "rows": rows}, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
