"""ifscope's methods beside the peers' on the field's yardstick, the linear datamodeling score (LDS): the same random
subsets, the same retrained models and the same LDS routine for every method, each method's seconds.

One set of random subsets is drawn and a model trained on each (the recipe's own training from scratch for
``--seeds`` seeds, or ``--steps`` T steps of full-batch gradient descent continued from the checkpoint at lr 1/λ_max).
Every method's ``[queries, train]`` score matrix (positive = proponent; ifscope's methods in ``benchmarks/lds_methods.py``,
dattri's influence functions and TRAK, kronfluence, pyDVL) is scored twice: by ifscope's LDS
(``ifscope.experiments.evaluate.lds_from_outcomes``, with its bootstrap interval and, with two seeds or more, the
retraining-seed agreement) and by ``dattri.metric.lds``. The two must agree to ``--tolerance`` (default 0.01); the
script exits 1 otherwise. dattri correlates ``Σ_{i∈S} score`` with its target, so it is given the negated loss (the
model's "goodness"), and the margin as it is. A peer that fails is a row with its error. Run in the benchmark
environment (benchmarks/setup_peers.sh):

    OMP_NUM_THREADS=2 .benchenv/bin/python benchmarks/lds.py --recipe digits-linear --methods exact,graddot --peers cg
"""

from __future__ import annotations

import argparse
import importlib
import json
import signal
import sys
import time

import numpy as np
import torch

import ifscope
from ifscope.core.data import as_dataset, take
from ifscope.experiments.evaluate import lds_from_outcomes
from ifscope.experiments.fade import gd_schedule
from ifscope.truth.subsets import Continue, Scratch, outcomes, random_masks

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from lds_methods import (  # noqa: E402
    IFSCOPE,
    PEER_MODULES,
    PEERS,
    Setting,
    covered,
    ifscope_options,
    ifscope_scores,
    peer_label,
    peer_scores,
    timed,
)


def dattri_lds(scores: torch.Tensor, masks: torch.Tensor, target: torch.Tensor) -> np.ndarray:
    """dattri's routine on our inputs: scores as (train, test), subsets as index rows, ``target`` [M, Q]."""
    from dattri.metric import lds
    indices = torch.stack([m.nonzero()[:, 0] for m in masks])  # every subset has the same size
    corr, _ = lds(scores.T.double(), (target.double(), indices))
    return corr.numpy()


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default="digits-linear")
    ap.add_argument("--subsets", type=int, default=100)
    ap.add_argument("--fraction", type=float, default=0.5)
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--seeds", type=int, default=1, help="scratch: trainings per subset (2 or more: seed agreement)")
    ap.add_argument("--retrain", choices=["scratch", "continue"], default="scratch")
    ap.add_argument("--steps", type=int, default=100, help="continue: steps; horizon-aware methods: their T")
    ap.add_argument("--methods", default="exact,cg,arnoldi,lissa,graddot,horizon", help=f"of {', '.join(IFSCOPE)}")
    ap.add_argument("--peers", default=",".join(PEERS),
                    help="dattri influence kinds and trak-K (TRAK over K models: the checkpoint and K-1 retrained "
                         "on all data), kronfluence-<strategy> (its defaults: true Fisher, damping 0.1 x mean "
                         "eigenvalue), pydvl-<cg|arnoldi|direct|ekfac>; '' for none")
    ap.add_argument("--damping", type=float, default=0.0,
                    help="added to H by ifscope's inverse-curvature methods (not kfac/ekfac) and to the peers' "
                         "regularization, beside the recipe's weight decay")
    ap.add_argument("--hessian-samples", type=int, default=None, help="ifscope's curvature sample (all methods)")
    ap.add_argument("--method-timeout", type=int, default=240, help="seconds a method may take (then a failed row)")
    ap.add_argument("--tolerance", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="also write the rows here")
    return ap.parse_args()


def score_all(args: argparse.Namespace, s: Setting, queries) -> tuple[dict, dict, dict]:
    """Every method's scores, seconds, and the errors of those that failed."""
    scores, seconds, errors = {}, {}, {}

    def attempt(name: str, fn) -> None:  # a failure (a refusal, an exception, the time limit) is a result to report
        t0 = time.perf_counter()
        signal.alarm(args.method_timeout)
        try:
            scores[name], seconds[name] = timed(fn)
        except Exception as exc:
            errors[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
            seconds[name] = time.perf_counter() - t0
        finally:
            signal.alarm(0)
        print(f"{name}: {seconds[name]:.1f} s{' (failed)' if name in errors else ''}", file=sys.stderr, flush=True)
    for m in [v for v in args.methods.split(",") if v]:
        attempt(f"ifscope {m}", lambda m=m: ifscope_scores(m, s, queries))
    n = len(as_dataset(s.recipe.train))
    x_train = tuple(t.float() for t in take(as_dataset(s.recipe.train), range(n)))
    x_query = tuple(t.float() for t in queries)
    models: list = [s.recipe.model.state_dict()]

    def trak_models(k: int) -> list:  # TRAK's ensemble: the checkpoint and models retrained on all data (timed)
        while len(models) < k:
            models.append(s.recipe.retrain(s.recipe.train, len(models)))
        return models[:k]
    kinds = [v for v in args.peers.split(",") if v]
    for module in PEER_MODULES if kinds else ():  # imports are not a method's cost
        importlib.import_module(module)
    for kind in kinds:
        attempt(peer_label(kind), lambda k=kind: peer_scores(k, s, x_train, x_query, trak_models))
    return scores, seconds, errors


def _too_slow(signum, frame):
    raise TimeoutError("stopped at the time limit (--method-timeout)")


def main() -> int:
    args = parse()
    signal.signal(signal.SIGALRM, _too_slow)
    recipe = ifscope.load_recipe(args.recipe)
    wd = float(recipe.info.get("weight_decay", 0.0))
    test = as_dataset(recipe.test, "test")
    q_idx = torch.randperm(len(test), generator=torch.Generator().manual_seed(args.seed + 11))[: args.queries]
    queries = take(test, q_idx.sort().values)
    n = len(as_dataset(recipe.train, "train"))
    masks = random_masks(n, args.subsets, args.fraction, args.seed)
    samples = {} if args.hessian_samples is None else {"hessian_samples": args.hessian_samples}
    schedule = gd_schedule(ifscope.Influence(recipe.task, recipe.train, method="graddot", weight_decay=wd,
                                             progress=False, **samples), args.steps)  # lr 1/λ_max of the curvature
    setting = Setting(recipe, wd, schedule, args.steps, args.damping, args.hessian_samples, args.seed)
    how = (Scratch(recipe.retrain, args.seeds, args.seed) if args.retrain == "scratch"
           else Continue(schedule, args.steps))
    t0 = time.time()
    truth = outcomes(recipe.task, recipe.train, queries, masks, how, progress=False)
    truth_s = time.time() - t0
    scores, seconds, errors = score_all(args, setting, queries)

    res = lds_from_outcomes(scores, truth, args.fraction, args.seed)
    rows, worst = [], 0.0
    targets = {"loss": ("lds", "ci", -truth.mean_loss)}
    if truth.mean_margin is not None:
        targets["margin"] = ("lds_margin", "ci_margin", truth.mean_margin)
    for name, s in scores.items():
        row: dict = {"method": name, "seconds": seconds[name], "parameters": covered(name, setting)}
        if name.startswith("ifscope "):
            method, opts = ifscope_options(name.split(" ", 1)[1], setting)
            row["options"] = {"method": method, **{k: v for k, v in opts.items() if k not in ("seed", "weight_decay")}}
        for target, (key, ci, theirs_target) in targets.items():
            theirs = dattri_lds(s, truth.masks, theirs_target)
            ours = np.array(res.methods[name]["per_query" if target == "loss" else "per_query_margin"])
            diff = float(np.nanmax(np.abs(ours - theirs)))
            worst = max(worst, diff)
            row[target] = {"ifscope": res.methods[name][key], "ci": res.methods[name][ci],
                           "dattri": float(np.nanmean(theirs)), "max_abs_diff_per_query": diff}
        rows.append(row)
        print(json.dumps(row), flush=True)
    rows += [{"method": k, "error": v, "seconds": seconds[k]} for k, v in errors.items()]
    ok = worst <= args.tolerance
    print(f"{args.recipe}: {args.subsets} subsets of {args.fraction:g} x {n}, {args.retrain} ({truth_s:.0f} s), "
          f"{len(q_idx)} queries, seed agreement {res.seed_agreement}; largest per-query difference between ifscope's "
          f"and dattri's LDS {worst:.2e} ({'within' if ok else 'OUTSIDE'} {args.tolerance}); errors: {errors}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "rows": rows, "worst_diff": worst, "seed_agreement": res.seed_agreement,
                       "truth_seconds": truth_s, "n_train": n, "lr": schedule.lr,
                       "parameters": sum(p.numel() for p in recipe.model.parameters()),
                       "test_accuracy": recipe.info.get("test_accuracy"), "threads": torch.get_num_threads()},
                      fh, indent=2)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
