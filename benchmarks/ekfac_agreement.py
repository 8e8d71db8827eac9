"""Same method, same answer: ifscope's ``ekfac`` against kronfluence's EK-FAC on one recipe's model.

Both fit the empirical Fisher (observed labels) over the whole training set with the same damping, and score the same
queries against every training example (fit + scores timed ``--repeats`` times, interleaved, the fastest kept); the scores are compared per query by Spearman correlation (the bar:
≥ 0.99 for every query, else exit 1) and by the relative difference of the matrices. Each side's fit + scores is timed
(wall clock after an untimed warm-up of both, the model's float32, no weight decay: kronfluence has none). Run in the benchmark environment
(benchmarks/setup_peers.sh), quiet machine, e.g.

    OMP_NUM_THREADS=2 PYTHONPATH=src .benchenv/bin/python benchmarks/ekfac_agreement.py --recipe mnist1d-mlp \\
        --json docs/results/ekfac-kronfluence.json
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr

import ifscope
from ifscope.core.data import as_dataset, take


def _compare(recipe: Any, train: Any, queries: Any, text: str, repeats: int) -> dict[str, Any]:
    """One damping value (``text``: a number or ``heuristic``): both sides' scores, their agreement, and the fastest
    of ``repeats`` interleaved timed runs of each side."""
    from peers import kronfluence_method
    damping = None if text == "heuristic" else float(text)

    def ours_run() -> torch.Tensor:
        return ifscope.Influence(recipe.task, recipe.train, "ekfac", fisher="empirical", damping=damping,
                                 batch_size=256, progress=False).scores(queries)

    def theirs_run() -> torch.Tensor:  # a fresh copy: kronfluence rewires modules
        return kronfluence_method(copy.deepcopy(recipe.model), train, queries, damping, "ekfac", empirical=True)()
    seconds: dict[str, list[float]] = {"ours": [], "theirs": []}
    for _ in range(repeats):  # interleaved, so that a burst of load on the machine hits both sides
        for side, fn in (("ours", ours_run), ("theirs", theirs_run)):
            t0 = time.perf_counter()
            out = fn()
            seconds[side].append(time.perf_counter() - t0)
            if side == "ours":
                ours = out.double()
            else:
                theirs = torch.as_tensor(out).double()
    ours_s, theirs_s = min(seconds["ours"]), min(seconds["theirs"])
    rho = np.array([spearmanr(a, b)[0] for a, b in zip(ours.numpy(), theirs.numpy())])
    rel = float((ours - theirs).norm() / theirs.norm())
    row = {"damping": text, "spearman_min": float(rho.min()), "spearman_median": float(np.median(rho)),
           "relative_difference": rel, "ifscope_seconds": ours_s, "kronfluence_seconds": theirs_s,
           "ratio": ours_s / theirs_s, "ifscope_runs_s": seconds["ours"], "kronfluence_runs_s": seconds["theirs"]}
    print(json.dumps(row), flush=True)
    return row


def _print_table(recipe: str, info: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    print(f"\n{recipe} ({info['parameters']} parameters), {info['n_train']} training examples x "
          f"{info['n_queries']} queries, empirical Fisher, {info['threads']} thread(s)")
    print("| damping | Spearman per query (min / median) | relative difference | ifscope s | kronfluence s | ratio |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['damping']} | {r['spearman_min']:.4f} / {r['spearman_median']:.4f} | "
              f"{r['relative_difference']:.1e} | {r['ifscope_seconds']:.1f} | {r['kronfluence_seconds']:.1f} | "
              f"{r['ratio']:.2f} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default="mnist1d-mlp")
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--damping", default="1e-3,heuristic",
                    help="comma-separated damping values to compare at; 'heuristic': 0.1 x each layer's mean eigenvalue")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bar", type=float, default=0.99, help="smallest per-query Spearman accepted")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of each side, interleaved; the fastest counts")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    from peers import kronfluence_method

    recipe = ifscope.load_recipe(args.recipe)
    test = as_dataset(recipe.test, "test")
    q_idx = torch.randperm(len(test), generator=torch.Generator().manual_seed(args.seed + 11))[: args.queries]
    queries = take(test, q_idx.sort().values)
    train = take(as_dataset(recipe.train, "train"), range(len(as_dataset(recipe.train))))
    warm = take(as_dataset(recipe.train, "train"), range(256))  # first calls pay one-time costs: not timed
    ifscope.Influence(recipe.task, warm, "ekfac", fisher="empirical", progress=False).scores(take(test, range(2)))
    kronfluence_method(copy.deepcopy(recipe.model), warm, take(test, range(2)), None, "ekfac", empirical=True)()
    rows = [_compare(recipe, train, queries, text, args.repeats) for text in args.damping.split(",")]
    worst = min([1.0, *(r["spearman_min"] for r in rows)])
    info = {"recipe": args.recipe, "n_train": len(train[0]), "n_queries": len(q_idx),
            "parameters": sum(p.numel() for p in recipe.model.parameters()), "threads": torch.get_num_threads(),
            "torch": torch.__version__}
    _print_table(args.recipe, info, rows)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), **info, "rows": rows}, fh, indent=2)
    return 0 if worst >= args.bar else 1


if __name__ == "__main__":
    raise SystemExit(main())
