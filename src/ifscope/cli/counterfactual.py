"""``ifscope counterfactual``: remove each query's top-k proponents (or opponents, or k random examples) by each
method, retrain or continue, and report the rise of the query loss against k (counterfactual.json)."""

from __future__ import annotations

import argparse
import time
from typing import Any

from .lds import evaluation_arguments, prepare, record


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("counterfactual", help="leave-top-k-out: query-loss rise when top proponents are removed",
                       description=__doc__)
    return evaluation_arguments(p, "counterfactual")


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ..experiments.evaluate import leave_top_k_out
    t0 = time.time()
    setup = prepare(args, "counterfactual")
    result = leave_top_k_out(setup["methods"], setup["queries"], ks=setup["options"].k, retrain=setup["retrain"],
                             seeds=setup["seeds"], steps=setup["steps"], schedule=setup["schedule"], seed=args.seed)
    out, path = record(args, setup, result, "counterfactual.json", t0)
    how = (f"retrained from scratch ({out['seeds']} seed(s))" if out["retrain"] == "scratch"
           else f"continued {out['steps']} steps from the checkpoint")
    out["summary"] = "\n".join([
        f"leave-top-k-out on {args.recipe}: {out['n_queries']} queries, {how}; mean change of the query loss "
        f"(base {out['base_loss_mean']:.4f})", result.table(), f"wrote {path} in {out['seconds']:.0f} s"])
    return out
