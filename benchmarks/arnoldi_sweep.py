"""ifscope's Arnoldi under several option sets on one checkpoint of benchmarks/peers.py: seconds, agreement with the
ground truth at each T, and agreement with the first option set's scores (the reference, e.g. rank 100 from 200
iterations). Which default costs the accuracy, and what the automatic choices keep:

    OMP_NUM_THREADS=2 PYTHONPATH=src python benchmarks/arnoldi_sweep.py --hidden 256 256 \\
        --configs "rank=100 iterations=200" "" "rank=50 iterations=400" --json

Each option set is ``key=value`` pairs separated by spaces ("" is the library's defaults). The checkpoint, the
queries and the ground truth are peers.py's (same seeds), so the rows compare with its table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # noqa: E402

from ifscope.truth.groundtruth import actual_changes  # noqa: E402
from ifscope.truth.training import Schedule, make_batches  # noqa: E402


def ground_truth(args, task, train_ds, queries, top: float):
    """``(ids, steps, delta)`` of peers.py's ground truth, read from ``--cache`` when it was computed before."""
    key = f"{args.data}-{'x'.join(map(str, args.hidden))}-{args.n_train}-{args.queries}-{args.ids}-{args.train_steps}"
    path = os.path.join(args.cache, f"gt-{key}.pt") if args.cache else None
    if path and os.path.exists(path):
        return torch.load(path)
    ids = torch.randperm(args.n_train, generator=torch.Generator().manual_seed(1))[: args.ids]
    sched = Schedule(make_batches(args.n_train, max(args.steps), None, 0), lr=1.0 / top, weight_decay=args.weight_decay)
    gt = actual_changes(task, train_ds, queries, ids, args.steps, sched, mode="remove", progress=False)
    out = (ids, list(gt.steps), gt.delta)
    if path:
        os.makedirs(args.cache, exist_ok=True)
        torch.save(out, path)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    ap.add_argument("--data", choices=tuple(peers.INPUTS), default="digits")
    ap.add_argument("--n-train", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--ids", type=int, default=40)
    ap.add_argument("--steps", type=int, nargs="+", default=[10, 100])
    ap.add_argument("--train-steps", type=int, default=1500)
    ap.add_argument("--weight-decay", type=float, default=1e-3)
    ap.add_argument("--configs", nargs="+", default=["rank=100 iterations=200", ""])
    ap.add_argument("--cache", default=None, help="a folder keeping the ground truth between runs")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = ap.parse_args()
    model, task, train_ds, queries, top = peers.checkpoint(args, args.n_train)
    ids, steps, delta = ground_truth(args, task, train_ds, queries, top)
    rows, reference = [], None
    for config in args.configs:
        opts = peers.parse_options(config.split())
        fn = peers.ifscope_method("arnoldi", task, train_ds, queries, args.weight_decay, 0.0, **opts)
        scores, seconds, _ = peers.run_measured(fn)
        est = fn.inf.estimator
        reference = scores if reference is None else reference
        row = {"options": config or "(defaults)", "seconds": seconds, "rank": len(est.eigenvalues),
               "iterations_used": int(est.iterations_used), "hessian_samples": int(est.hessian_samples_used),
               "vs_reference": peers.mean_spearman(scores, reference)}
        row.update({f"vs_gt_T{t}": peers.mean_spearman(scores[:, ids], delta[i].T) for i, t in enumerate(steps)})
        rel = (est.pairs.residuals / est.pairs.values.abs()).double()
        row.update({f"kept_residual_le_{tol:g}": int((rel <= tol).sum()) for tol in (0.3, 0.1, 0.01)})
        row.update(chosen=getattr(est, "rank_choice", None))
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    out = {"args": vars(args), "params": sum(p.numel() for p in model.parameters()), "threads": torch.get_num_threads(),
           "lr": 1 / top, "rows": rows, "date": time.strftime("%Y-%m-%d")}
    print(json.dumps(out, indent=1) if args.json else "\n".join(json.dumps(r) for r in rows))


if __name__ == "__main__":
    main()
