"""ifscope's LDS beside dattri's own LDS routine (``dattri.metric.lds``) on the same subsets, the same retrained models
and the same score matrices; and the LDS of peers' attribution methods (dattri's influence functions) on them.

One set of random subsets is drawn, a model is trained on each (the recipe's own training from scratch, or continued
training from the checkpoint), and every method's ``[queries, train]`` score matrix (positive = proponent) is scored
twice: by ``ifscope.experiments.evaluate.lds_per_query`` and by ``dattri.metric.lds``. The two must agree to ``--tolerance``
(default 0.01); the script exits 1 otherwise. dattri correlates ``Σ_{i∈S} score`` with its target, so it is given the
negated loss (the model's "goodness"), and the margin as it is. Run in the benchmark environment
(benchmarks/setup_peers.sh):

    OMP_NUM_THREADS=1 .benchenv/bin/python benchmarks/lds.py --recipe digits-linear
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time

import numpy as np
import torch

import ifscope
from ifscope.core.data import as_dataset, take
from ifscope.experiments.evaluate import bootstrap_ci, lds_per_query
from ifscope.experiments.fade import gd_schedule
from ifscope.truth.subsets import Continue, Scratch, outcomes, random_masks

IFSCOPE_OPTIONS = {"exact": {}, "cg": {"cg_iterations": 100}, "lissa": {"depth": 100},
                   "arnoldi": {"rank": 50, "iterations": 100}, "graddot": {}, "horizon": {}, "kfac": {}, "ekfac": {},
                   "ekfac_horizon": {}}
HORIZON_AWARE = {"horizon": "horizon", "ekfac_horizon": "ekfac"}  # label -> method, given horizon = --steps
PEERS = ("explicit", "cg", "arnoldi", "lissa", "datainf", "kronfluence-ekfac")  # dattri's kinds, then kronfluence's


def dattri_lds(scores: torch.Tensor, masks: torch.Tensor, target: torch.Tensor) -> np.ndarray:
    """dattri's routine on our inputs: scores as (train, test), subsets as index rows, ``target`` [M, Q]."""
    from dattri.metric import lds
    indices = torch.stack([m.nonzero()[:, 0] for m in masks])  # every subset has the same size
    corr, _ = lds(scores.T.double(), (target.double(), indices))
    return corr.numpy()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default="digits-linear")
    ap.add_argument("--subsets", type=int, default=100)
    ap.add_argument("--fraction", type=float, default=0.5)
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--retrain", choices=["scratch", "continue"], default="scratch")
    ap.add_argument("--steps", type=int, default=100, help="continue: steps; horizon method: its T")
    ap.add_argument("--methods", default="exact,cg,arnoldi,lissa,graddot,horizon")
    ap.add_argument("--peers", default=",".join(PEERS),
                    help="dattri influence methods and kronfluence-<strategy> (kronfluence's defaults: true Fisher, "
                         "damping 0.1 x mean eigenvalue); '' for none")
    ap.add_argument("--tolerance", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="also write the rows here")
    args = ap.parse_args()

    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    from peers import dattri_method, kronfluence_method
    recipe = ifscope.load_recipe(args.recipe)
    wd = float(recipe.info.get("weight_decay", 0.0))
    test = as_dataset(recipe.test, "test")
    q_idx = torch.randperm(len(test), generator=torch.Generator().manual_seed(args.seed + 11))[: args.queries]
    queries = take(test, q_idx.sort().values)
    n = len(as_dataset(recipe.train, "train"))
    masks = random_masks(n, args.subsets, args.fraction, args.seed)

    def influence(label: str, **extra) -> ifscope.Influence:
        horizon = {"horizon": args.steps} if label in HORIZON_AWARE else {}
        return ifscope.Influence(recipe.task, recipe.train, method=HORIZON_AWARE.get(label, label), weight_decay=wd,
                                 seed=args.seed, progress=False, **IFSCOPE_OPTIONS[label], **horizon, **extra)
    how = (Scratch(recipe.retrain, args.seeds, args.seed) if args.retrain == "scratch"
           else Continue(gd_schedule(influence("graddot"), args.steps), args.steps))
    t0 = time.time()
    truth = outcomes(recipe.task, recipe.train, queries, masks, how)
    truth_s = time.time() - t0

    scores: dict[str, torch.Tensor] = {}
    seconds: dict[str, float] = {}
    errors: dict[str, str] = {}
    for m in [v for v in args.methods.split(",") if v]:
        t0 = time.time()
        scores[f"ifscope {m}"] = influence(m).scores(queries)
        seconds[f"ifscope {m}"] = time.time() - t0
    x_train = tuple(t.float() for t in take(as_dataset(recipe.train), range(n)))
    x_query = tuple(t.float() if t.is_floating_point() else t for t in queries)
    for kind in [v for v in args.peers.split(",") if v]:
        kron = kind.startswith("kronfluence-")
        name = kind.replace("-", " ") if kron else f"dattri {kind}"
        t0 = time.time()
        try:
            model = copy.deepcopy(recipe.model)
            labelled = (x_train[0], x_train[1].long())  # dattri takes float labels, kronfluence's loss class indices
            s = (kronfluence_method(model, labelled, x_query, None, kind.split("-", 1)[1]) if kron
                 else dattri_method(kind, model, x_train, x_query, wd, 50))()
            scores[name] = torch.as_tensor(s).detach().double()
        except Exception as exc:  # a peer's failure is a result to report
            errors[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}"
        seconds[name] = time.time() - t0

    rows, worst = [], 0.0
    targets = {"loss": (truth.mean_loss, -truth.mean_loss)}
    if truth.mean_margin is not None:
        targets["margin"] = (truth.mean_margin, truth.mean_margin)
    for name, s in scores.items():
        row: dict = {"method": name, "seconds": seconds[name]}
        for target, (ours_target, theirs_target) in targets.items():
            ours = lds_per_query(s, truth.masks, ours_target, target)
            theirs = dattri_lds(s.double(), truth.masks, theirs_target)
            diff = float(np.nanmax(np.abs(ours - theirs)))
            worst = max(worst, diff)
            row[target] = {"ifscope": float(np.nanmean(ours)), "ci": bootstrap_ci(ours, seed=args.seed),
                           "dattri": float(np.nanmean(theirs)), "max_abs_diff_per_query": diff}
        rows.append(row)
        print(json.dumps(row), flush=True)
    rows += [{"method": k, "error": v} for k, v in errors.items()]

    print(f"\n{args.recipe}: {args.subsets} subsets of {args.fraction:g} x {n}, {args.retrain} "
          f"({'seeds ' + str(args.seeds) if args.retrain == 'scratch' else str(args.steps) + ' steps'}, "
          f"{truth_s:.0f} s), {len(q_idx)} queries; torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    print("| method | LDS (ifscope) | 95% CI | LDS (dattri.metric.lds) | max per-query diff | LDS margin (ifscope / "
          "dattri) | seconds |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for r in rows:
        if "error" in r:
            print(f"| {r['method']} | failed: {r['error']} |")
            continue
        lo, hi = r["loss"]["ci"]
        margin = r.get("margin")
        print(f"| {r['method']} | {r['loss']['ifscope']:.3f} | [{lo:.3f}, {hi:.3f}] | {r['loss']['dattri']:.3f} | "
              f"{r['loss']['max_abs_diff_per_query']:.1e} | "
              + (f"{margin['ifscope']:.3f} / {margin['dattri']:.3f}" if margin else "-") + f" | {r['seconds']:.1f} |")
    ok = worst <= args.tolerance
    print(f"largest per-query difference between ifscope and dattri: {worst:.2e} "
          f"({'within' if ok else 'OUTSIDE'} {args.tolerance})")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "rows": rows, "worst_diff": worst}, fh, indent=2)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
