"""``ifscope diagnose``: the five assumptions of an influence score, measured on a recipe's model; writes
``WORKDIR/diagnose.json`` and ``WORKDIR/diagnose_*.png``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError
from . import common_arguments


def add_parser(sub) -> argparse.ArgumentParser:
    from ..diagnose import CHECKS
    p = sub.add_parser("diagnose", help="check the five assumptions behind the influence scores of a recipe's model",
                       description=__doc__)
    common_arguments(p)
    p.add_argument("--method", default="arnoldi", help="influence method to diagnose (default arnoldi)")
    p.add_argument("--rank", type=int, default=50, help="arnoldi: eigenpairs kept")
    p.add_argument("--iterations", type=int, default=200, help="arnoldi: Arnoldi iterations")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--damping", type=float, default=0.0)
    p.add_argument("--checks", nargs="+", default=list(CHECKS), choices=CHECKS, help="which assumptions to check")
    p.add_argument("--n-queries", type=int, default=20, help="test examples scored and tracked")
    p.add_argument("--n-train", type=int, default=200, help="training examples scored for the agreement figures")
    p.add_argument("--n-ids", type=int, default=8, help="training examples removed / up-weighted for ground truth")
    p.add_argument("--steps", type=int, nargs="+", default=[1, 3, 10, 30, 100, 300],
                   help="horizons T of continued training (full-batch GD, lr 1/λ_max)")
    p.add_argument("--epsilons", type=float, nargs="+", default=[0.1, 1.0],
                   help="up-weighting sizes ε checked for linearity, besides removal")
    p.add_argument("--spectrum-iterations", type=int, default=100, help="Arnoldi iterations on H and on -H")
    p.add_argument("--n-checkpoints", type=int, default=1,
                   help="latest earlier checkpoints (from the recipe's info['checkpoints']) to compare scores with")
    return p


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ..diagnose import diagnose
    from ..influence import Influence
    from . import recipe_for

    recipe = recipe_for(args)
    options: dict[str, Any] = {"rank": args.rank, "iterations": args.iterations} if args.method == "arnoldi" else {}
    inf = Influence(recipe.task, recipe.train, method=args.method, weight_decay=recipe.info.get("weight_decay", 0.0),
                    damping=args.damping, dtype=args.dtype, seed=args.seed, **options)
    if args.n_checkpoints < 0:
        raise ConfigError(f"--n-checkpoints must be >= 0, got {args.n_checkpoints}")
    current = dict(recipe.task.model.named_parameters())
    earlier = [c for c in recipe.info.get("checkpoints") or []
               if not all(torch.equal(v, current[k].detach()) for k, v in _state(c).items() if k in current)]
    checkpoints = earlier[len(earlier) - args.n_checkpoints:] if args.n_checkpoints else []
    result = diagnose(inf, recipe.test, checks=args.checks, n_queries=args.n_queries, n_train=args.n_train,
                      n_ids=args.n_ids, steps=args.steps, epsilons=args.epsilons,
                      spectrum_iterations=args.spectrum_iterations, initial=recipe.info.get("initial"),
                      checkpoints=checkpoints, seed=args.seed)
    result.config["recipe"] = {"name": args.recipe, **{k: repr(v) for k, v in args.recipe_arg}}
    workdir = Path(args.workdir)
    out = result.to_dict()
    out["files"] = [str(p) for p in result.write(workdir)]
    out["summary"] = (result.table() + f"\n{len(out['files'])} files in {workdir}/ (diagnose.json, figures); "
                      f"{result.seconds:.0f} s")
    return out


def _state(item: Any) -> dict[str, torch.Tensor]:
    return dict(item[0]) if isinstance(item, (tuple, list)) else dict(item)
