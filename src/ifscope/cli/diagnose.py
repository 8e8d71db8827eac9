"""``ifscope diagnose``: the five assumptions of the run's influence scores, measured on its fitted estimator (no
refit); writes ``WORKDIR/diagnose.json`` and ``WORKDIR/report/diagnose_*.png``."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

import torch

from ..core.errors import ConfigError
from ..options import DiagnoseOptions
from . import add_options, common_arguments, fitted_for, influence_arguments, resolve_command, run_facts


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("diagnose", help="check the five assumptions behind the influence scores of a recipe's model",
                       description=__doc__)
    influence_arguments(common_arguments(p), exclude=tuple(f.name for f in dataclasses.fields(DiagnoseOptions)))
    add_options(p, (DiagnoseOptions,), "diagnose options (default: the run's last, the recipe's, then the library's)")
    return p


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ..core.contract import float32_fallback
    from ..experiments.diagnose import CHECKS, diagnose
    from ..experiments.sizing import DEFAULT_BUDGET_S, SIZED
    from . import recipe_for
    recipe = recipe_for(args)
    resolved = resolve_command(args, recipe, "diagnose")
    o, explicit = resolved.options, [k for k in SIZED if resolved.source.get(k) == "flag"]
    if o.n_checkpoints < 0:
        raise ConfigError(f"--n-checkpoints must be >= 0, got {o.n_checkpoints}")
    inf = fitted_for(args, recipe)
    fallback = float32_fallback(inf.task, inf.train, (o.truth_dtype,), "the ground truth and the references")
    if fallback:
        print(f"ifscope: {fallback}", file=sys.stderr)
    current = dict(recipe.task.model.named_parameters())
    earlier = [c for c in recipe.info.get("checkpoints") or []
               if not all(torch.equal(v, current[k].detach()) for k, v in _state(c).items() if k in current)]
    checkpoints = earlier[len(earlier) - o.n_checkpoints:] if o.n_checkpoints else []
    result = diagnose(inf, recipe.test, checks=o.checks or list(CHECKS), n_queries=o.n_queries,
                      n_train=o.n_train, n_ids=o.n_ids, steps=o.steps, epsilons=o.epsilons,
                      initial=recipe.info.get("initial"), checkpoints=checkpoints, refit=o.refit_variants,
                      epsilon_ids=o.epsilon_ids, train_batch_size=o.train_batch_size or None, lr=o.train_lr,
                      ground_truth_dtype=torch.float32 if fallback else getattr(torch, o.truth_dtype), krylov=o.krylov,
                      reference_hessian_samples=o.reference_hessian_samples, seed=args.seed,
                      budget_s=DEFAULT_BUDGET_S if o.budget_s is None else o.budget_s, explicit=explicit)
    result.settings["recipe"] = {"name": args.recipe, **{k: repr(v) for k, v in args.recipe_arg}}
    result.settings["dtype_fallback"] = fallback
    out = {**result.to_dict(), **run_facts(inf)}
    from ..report.diagnose_figures import diagnose_figures
    run = inf.run
    data = {**result.to_dict(), **run_facts(inf)}
    figures = [run.record(str(f.relative_to(run.path))) for f in diagnose_figures(data, run.file("report"))]
    out["files"] = [str(result.write(run.path, extra=run_facts(inf))), *(str(f) for f in figures)]
    out["summary"] = (result.table() + f"\nrun: {inf.method} {'reused' if inf.reused else 'fitted'}; "
                      f"{len(out['files'])} files in {inf.run.path}/ (diagnose.json, report/ figures); "
                      f"{result.seconds:.0f} s")
    return out


def _state(item: Any) -> dict[str, torch.Tensor]:
    return dict(item[0]) if isinstance(item, (tuple, list)) else dict(item)
