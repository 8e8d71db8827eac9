"""``ifscope diagnose``: the five assumptions of the run's influence scores, measured on its fitted estimator (no
refit); writes ``WORKDIR/diagnose.json`` and ``WORKDIR/report/diagnose_*.png``."""

from __future__ import annotations

import argparse
from typing import Any

import torch

from ..core.errors import ConfigError
from . import apply_defaults, common_arguments, fitted_for, influence_arguments, run_facts

DEFAULTS: dict[str, Any] = dict(checks=None, n_queries=20, n_train=200, n_ids=40, epsilon_ids=8,
                                steps=[1, 3, 10, 30, 100, 300], epsilons=[0.1, 1.0], n_checkpoints=1,
                                refit_variants=False, train_batch_size=None, train_lr=None, truth_dtype="float64", krylov=100,
                                reference_hessian_samples=None, budget_s=None)


def add_parser(sub) -> argparse.ArgumentParser:
    from ..experiments.diagnose import CHECKS
    p = sub.add_parser("diagnose", help="check the five assumptions behind the influence scores of a recipe's model",
                       description=__doc__)
    influence_arguments(common_arguments(p), exclude=("steps", "krylov", "train_batch_size", "lr"))
    d = p.add_argument_group("diagnose options (default: the recipe's, then the library's)")
    d.add_argument("--checks", nargs="+", default=None, choices=CHECKS, help="which assumptions to check (all)")
    d.add_argument("--n-queries", type=int, default=None, help="test examples scored and tracked (20)")
    d.add_argument("--n-train", type=int, default=None, help="training examples scored for the agreement figures")
    d.add_argument("--n-ids", type=int, default=None,
                   help="training examples removed for the ground truth: divergence and first order (40)")
    d.add_argument("--epsilon-ids", type=int, default=None,
                   help="the first that many of them also up-weighted by each ε (8)")
    d.add_argument("--steps", type=int, nargs="+", default=None,
                   help="horizons T of continued training (GD, lr 1/λ_max of the run's spectrum)")
    d.add_argument("--train-batch-size", type=int, default=None,
                   help="minibatches of the continued training (default: full batch; 0 = full batch)")
    d.add_argument("--lr", dest="train_lr", type=float, default=None,
                   help="step size of the continued training (default 1/λ_max of the run's spectrum)")
    d.add_argument("--truth-dtype", choices=("float32", "float64"), default=None,
                   help="precision of the ground truth and of its references unrolled and horizon (float64)")
    d.add_argument("--krylov", type=int, default=None, help="Lanczos steps of the horizon reference (100)")
    d.add_argument("--reference-hessian-samples", type=int, default=None,
                   help="training examples the horizon reference's Hessian averages over (all)")
    d.add_argument("--epsilons", type=float, nargs="+", default=None,
                   help="up-weighting sizes ε checked for linearity, besides removal (0.1 1.0)")
    d.add_argument("--n-checkpoints", type=int, default=None,
                   help="latest earlier checkpoints (from the recipe's info['checkpoints']) to compare scores with")
    d.add_argument("--budget-s", type=float, default=None,
                   help="seconds of replays (ground truth and unrolled) the ids, queries and horizons left out are "
                        "chosen for, by measuring one replay step and one unrolled step (60)")
    d.add_argument("--refit-variants", action="store_const", const=True, default=None,
                   help="also run the agreement checks that need other fits (float64, rank 2k, half samples, "
                        "earlier checkpoints) of a method that keeps a spectrum")
    return p


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ..experiments.diagnose import CHECKS, diagnose
    from ..experiments.sizing import DEFAULT_BUDGET_S, explicit_sizes
    from . import recipe_for
    recipe = recipe_for(args)
    explicit = explicit_sizes(vars(args))
    apply_defaults(args, recipe, "diagnose", DEFAULTS)
    if args.n_checkpoints < 0:
        raise ConfigError(f"--n-checkpoints must be >= 0, got {args.n_checkpoints}")
    inf = fitted_for(args, recipe)
    current = dict(recipe.task.model.named_parameters())
    earlier = [c for c in recipe.info.get("checkpoints") or []
               if not all(torch.equal(v, current[k].detach()) for k, v in _state(c).items() if k in current)]
    checkpoints = earlier[len(earlier) - args.n_checkpoints:] if args.n_checkpoints else []
    result = diagnose(inf, recipe.test, checks=args.checks or list(CHECKS), n_queries=args.n_queries,
                      n_train=args.n_train, n_ids=args.n_ids, steps=args.steps, epsilons=args.epsilons,
                      initial=recipe.info.get("initial"), checkpoints=checkpoints, refit=args.refit_variants,
                      epsilon_ids=args.epsilon_ids, train_batch_size=args.train_batch_size or None, lr=args.train_lr,
                      ground_truth_dtype=getattr(torch, args.truth_dtype), krylov=args.krylov,
                      reference_hessian_samples=args.reference_hessian_samples, seed=args.seed,
                      budget_s=DEFAULT_BUDGET_S if args.budget_s is None else args.budget_s, explicit=explicit)
    result.settings["recipe"] = {"name": args.recipe, **{k: repr(v) for k, v in args.recipe_arg}}
    out = {**result.to_dict(), **run_facts(inf)}
    from ..report.diagnose_figures import diagnose_figures
    run = inf.run
    data = {**result.to_dict(), **run_facts(inf)}
    figures = [run.record(str(f.relative_to(run.path))) for f in diagnose_figures(data, run.path / "report")]
    out["files"] = [str(result.write(run.path, extra=run_facts(inf))), *(str(f) for f in figures)]
    out["summary"] = (result.table() + f"\nrun: {inf.method} {'reused' if inf.reused else 'fitted'}; "
                      f"{len(out['files'])} files in {inf.run.path}/ (diagnose.json, report/ figures); "
                      f"{result.seconds:.0f} s")
    return out


def _state(item: Any) -> dict[str, torch.Tensor]:
    return dict(item[0]) if isinstance(item, (tuple, list)) else dict(item)
