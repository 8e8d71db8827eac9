"""``ifscope correct``: fix the recipe's mis-predicted test examples by a few steps on influential training examples."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from . import common_arguments, fitted_for, influence_arguments, run_facts


def add_parser(sub) -> argparse.ArgumentParser:
    from ..correct import (
        DEFAULT_ANCHOR,
        DEFAULT_K,
        DEFAULT_LR,
        DEFAULT_STEPS,
        DEFAULT_STRATEGY,
        METHODS,
        STRATEGIES,
    )
    p = sub.add_parser("correct", help="fix mis-predictions with a few fine-tuning steps on influential examples",
                       description="Queries are the test examples the model mis-predicts (or --indices); the "
                                   "held-out set for side effects is every other test example.")
    influence_arguments(common_arguments(p), exclude=("steps", "lr"))
    p.add_argument("--n-test", type=int, default=None,
                   help="passed to the recipe as n_test (digits recipes: up to 797, all images not used for training)")
    p.add_argument("--k", type=int, default=DEFAULT_K, help="training examples per correction")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="SGD steps per correction")
    p.add_argument("--lr", type=float, default=None,
                   help=f"SGD learning rate (default {DEFAULT_LR}, capped at 1/λ_max so that steps do not diverge)")
    p.add_argument("--strategy", choices=STRATEGIES, default=DEFAULT_STRATEGY,
                   help="descend on proponents, ascend on opponents, or both")
    p.add_argument("--anchor", type=int, default=DEFAULT_ANCHOR,
                   help="other random training examples kept in each step to hold the model in place (0 = none)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--queries", type=int, default=None, metavar="N",
                       help="correct the first N mis-predicted test examples (default: all)")
    which.add_argument("--indices", type=int, nargs="+", default=None,
                       help="test positions to correct (already-correct ones are skipped unless --include-correct)")
    p.add_argument("--stop-when-fixed", action="store_true",
                   help="stop each correction at the first step after which its query is predicted correctly")
    p.add_argument("--include-correct", action="store_true", help="also fine-tune queries already predicted correctly")
    p.add_argument("--group", action="store_true", help="one correction for all queries at once (summed scores)")
    p.add_argument("--baselines", nargs="*", default=list(METHODS[1:]), choices=METHODS[1:])
    p.add_argument("--save", action="store_true", help="write the corrected parameters to DIR/corrected.safetensors")
    return p


def _recipe(args: argparse.Namespace):
    from . import recipe_for
    return recipe_for(args, **({"n_test": args.n_test} if args.n_test is not None else {}))


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ..correct import correct, save_params, split_mispredicted
    from ..data import as_dataset, take

    t0 = time.time()
    recipe = _recipe(args)
    test = as_dataset(recipe.test, "test")
    t_fit = time.time()
    inf = fitted_for(args, recipe)
    fit_seconds = time.time() - t_fit
    q_idx, h_idx = split_mispredicted(inf, test, n=args.queries, indices=args.indices)
    workdir = Path(args.workdir)
    result = correct(inf, test, heldout=take(test, h_idx) if h_idx else None, indices=q_idx, k=args.k,
                     steps=args.steps, lr=args.lr, strategy=args.strategy, anchor=args.anchor,
                     stop_when_fixed=args.stop_when_fixed, baselines=args.baselines, group=args.group,
                     include_correct=args.include_correct, seed=args.seed)
    out = result.to_dict()
    out["settings"] = out.pop("config")  # the correction's own settings; `config` is the run's fit
    out.update(run_facts(inf))
    if args.save and result.params:
        out["saved"] = save_params(result, workdir / "corrected.safetensors").name
    out["recipe"] = args.recipe
    out["n_test"], out["n_heldout"] = len(test), len(h_idx)
    out["fit_seconds"] = fit_seconds
    out["heldout"] = "every test example not used as a query"
    out["seconds"] = time.time() - t0
    inf.run.save_json("correct.json", out)
    out["summary"] = _summary(out, workdir)
    return out


def _summary(d: dict[str, Any], workdir: Path) -> str:
    c = d["settings"]
    lines = [f"{d['recipe']}: corrected {d['n_queries']} mis-predicted test examples ({len(d['skipped'])} already "
             f"correct, left alone) with {c['steps']} SGD steps, lr {c['lr']:g}, on k={c['k']} training examples "
             f"({c['strategy']}, anchor {c['anchor']}); held-out set: {d['n_heldout']} other test examples"]
    if d["n_queries"]:
        lines.append(f"{'selection':<20} {'fix rate':>8} {'held-out acc':>12} {'broken':>7} {'s/corr':>7}")
        acc0 = d["heldout_accuracy"]["before"]
        for m, s in d["methods"].items():
            acc = "-" if s["heldout_accuracy_after"] is None else f"{100 * s['heldout_accuracy_after']:.2f}%"
            broken = "-" if s["broken"] is None else f"{s['broken']:.1f}"
            ref = " (reference)" if m in d["reference_only"] else ""
            lines.append(f"{m + ref:<20} {d['fix_rate'][m]:>8.2f} {acc:>12} {broken:>7} {s['seconds']:>7.3f}")
        if acc0 is not None:
            lines.append(f"held-out accuracy before: {100 * acc0:.2f}%; side effects are means over corrections")
    lines.append(f"wrote {workdir / 'correct.json'} in {d['seconds']:.1f} s")
    return "\n".join(lines)
