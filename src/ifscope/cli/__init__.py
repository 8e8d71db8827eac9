"""The ``ifscope`` command: one module per subcommand, each with ``add_parser`` and ``run``.

A subcommand's ``run(args) -> dict`` does the work and returns its JSON-ready result; the dict's ``"summary"``
entry (a string, removed from the JSON) is what a person reads. ``--json`` prints the dict instead.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import Any

from ..errors import ConfigError, IfscopeError

SUBCOMMANDS = ["demo", "fit", "scores", "top", "report", "check", "correct", "diagnose", "fade", "lds",
               "counterfactual"]
DEFAULT_WORKDIR = "runs/ifscope"


def common_arguments(p: argparse.ArgumentParser, workdir: bool = True) -> argparse.ArgumentParser:
    """The options every recipe-driven subcommand shares: ``--recipe``, ``--workdir``, ``--seed``."""
    p.add_argument("--recipe", default="digits-mlp",
                   help="a built-in recipe name (digits-mlp, ...) or FILE.py:FUNCTION returning an ifscope Recipe")
    if workdir:
        p.add_argument("--workdir", default=DEFAULT_WORKDIR, help="run directory for artifacts")
    p.add_argument("--seed", type=int, default=0)
    return p


def influence_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Estimator options; any left out is taken from the run directory's manifest, then from the defaults."""
    p.add_argument("--method", default=None, help="arnoldi (default), exact, cg, lissa, graddot")
    p.add_argument("--rank", type=int, default=None, help="arnoldi: eigenpairs kept (default 50)")
    p.add_argument("--iterations", type=int, default=None, help="arnoldi: Arnoldi iterations (default 200)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="examples per batch, and per training-embedding shard (default 128)")
    p.add_argument("--hessian-samples", type=int, default=None,
                   help="training examples the curvature is averaged over (default: all)")
    p.add_argument("--damping", type=float, default=None, help="added to the curvature (default 0)")
    return p


_recipes: dict[tuple, Any] = {}


def recipe_for(args: argparse.Namespace, **options: Any) -> Any:
    """The recipe named by ``--recipe``, with ``options`` for its function (built once per process, so the demo's
    steps share it); ``--seed`` and a progress bar go to recipes that take them."""
    from ..recipes import load_recipe
    key = (args.recipe, args.seed, tuple(sorted(options.items())))
    if key not in _recipes:
        print(f"ifscope: building recipe {args.recipe} (seed {args.seed})", file=sys.stderr)
        _recipes[key] = load_recipe(args.recipe, optional={"seed": args.seed, "progress": True}, **options)
    return _recipes[key]


def influence_for(args: argparse.Namespace, recipe: Any) -> Any:
    """An ``Influence`` on the recipe bound to ``--workdir``, its options from the command line, else the manifest."""
    from ..estimators import METHODS
    from ..influence import Influence
    from ..store import RunDir
    saved = RunDir(args.workdir).config
    method = args.method or saved.get("method") or "arnoldi"
    if method not in METHODS:
        raise ConfigError(f"unknown --method {method!r}; choose one of {sorted(METHODS)}")
    keys = ["batch_size", "hessian_samples", "damping", *METHODS[method].OPTIONS]
    options = {k: saved[k] for k in keys if k in saved} if saved.get("method") == method else {}
    for key in ("rank", "iterations", "batch_size", "hessian_samples", "damping"):
        value = getattr(args, key, None)
        if value is None:
            continue
        if key not in keys:
            raise ConfigError(f"--{key.replace('_', '-')} is not an option of method {method!r}")
        options[key] = value
    return Influence(recipe.task, recipe.train, method=method, weight_decay=float(recipe.info.get("weight_decay", 0.0)),
                     seed=args.seed, workdir=args.workdir, **options)


def parse_indices(spec: str | None, n: int, what: str) -> list[int]:
    """``"0-3,7"`` → ``[0, 1, 2, 3, 7]``; ``None`` or ``"all"`` → every index below ``n``."""
    if spec is None or spec == "all":
        return list(range(n))
    out: list[int] = []
    try:
        for part in spec.split(","):
            lo, _, hi = part.strip().partition("-")
            out.extend(range(int(lo), int(hi or lo) + 1))
    except ValueError as exc:
        raise ConfigError(f"{what} {spec!r} is not a list of indices like 0-3,7") from exc
    bad = [i for i in out if not 0 <= i < n]
    if not out or bad:
        raise ConfigError(f"{what} {spec!r} names indices {bad[:5]} outside the {n} available; use 0-{n - 1}")
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ifscope", description="Influence functions that say what they predict.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        module = importlib.import_module(f".{name}", __name__)
        p = module.add_parser(sub)
        p.add_argument("--json", action="store_true", help="print a machine-readable JSON result on stdout")
        p.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .. import distributed

    args = build_parser().parse_args(argv)
    distributed.init_from_env()  # under torchrun: every rank runs the command on its block of the training set
    rank = distributed.world()[0]
    try:
        result = args.run(args)
    except BaseException as exc:
        distributed.shutdown(wait=False)  # a failed rank must not wait for the others at a barrier
        if not isinstance(exc, IfscopeError):
            raise
        print(f"ifscope: error: {exc}", file=sys.stderr)
        return 2
    distributed.shutdown()
    if rank != 0:  # the ranks hold the same result: one of them reports it
        return 0
    summary = result.pop("summary", "")
    if args.json:
        print(json.dumps(result, indent=2))
    elif summary:
        print(summary)
    return 0
