"""The ``ifscope`` command: one module per subcommand, each with ``add_parser`` and ``run``.

A subcommand's ``run(args) -> dict`` does the work and returns its JSON-ready result; the dict's ``"summary"``
entry (a string, removed from the JSON) is what a person reads. ``--json`` prints the dict instead.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import json
import sys
from typing import Any

from ..core.errors import ConfigError, IfscopeError
from .options import (  # noqa: F401 (the subcommands' shared helpers)
    ESTIMATOR_FLAGS,
    add_options,
    flag_table,
    influence_arguments,
    record_options,
    resolve_command,
    saved_manifest,
)

SUBCOMMANDS = ["demo", "fit", "scores", "top", "report", "check", "correct", "diagnose", "fade", "self-influence",
               "lds", "counterfactual"]
DEFAULT_WORKDIR = "runs/ifscope"
def recipe_arg(text: str) -> tuple[str, Any]:
    """``"flip=0.1"`` → ``("flip", 0.1)``: a Python literal where the value parses as one, else the string."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--recipe-arg needs KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def common_arguments(p: argparse.ArgumentParser, workdir: bool = True) -> argparse.ArgumentParser:
    """The options every recipe-driven subcommand shares: ``--recipe``, ``--recipe-arg``, ``--workdir``, ``--seed``."""
    p.add_argument("--recipe", default=None,
                   help="a built-in recipe name (digits-mlp, ...) or FILE.py:FUNCTION returning an ifscope Recipe "
                        "(default: the run directory's recipe if it is built in, else digits-mlp; a recipe file "
                        "recorded there runs only when named here)")
    p.add_argument("--recipe-arg", type=recipe_arg, action="append", default=[], metavar="KEY=VALUE",
                   help="keyword argument for the recipe function, e.g. flip=0.1 (repeatable; default: the run's)")
    if workdir:
        p.add_argument("--workdir", default=DEFAULT_WORKDIR, help="run directory for artifacts")
    p.add_argument("--seed", type=int, default=None, help="seed (default: the run's, else 0)")
    return p


_recipes: dict[tuple, Any] = {}


def resolve_source(args: argparse.Namespace, **options: Any) -> dict[str, Any]:
    """The recipe, its options and the seed: from the command line, else from the run directory, else defaults."""
    source = saved_manifest(args).get("source") or {}
    given = dict(getattr(args, "recipe_arg", []) or [])
    spec = args.recipe or source.get("recipe") or "digits-mlp"
    if not args.recipe:
        refuse_recorded_file(spec, getattr(args, "workdir", None))
    same = spec == source.get("recipe")
    recipe_options = {**(source.get("recipe_options", {}) if same and not given else {}), **given, **options}
    seed = args.seed if args.seed is not None else source.get("seed", 0) if same else 0
    return {"recipe": spec, "recipe_options": recipe_options, "seed": seed}


def refuse_recorded_file(spec: str, workdir: Any) -> None:
    """A recipe file recorded in a run directory is code from data: run only when the user names it (``--recipe``)."""
    from ..recipes import is_file_recipe
    if is_file_recipe(spec):
        raise ConfigError(f"run directory {workdir} records the recipe file {spec!r}; ifscope runs a recipe file only "
                          f"when you name it: read it, then add --recipe {spec}")


def recipe_for(args: argparse.Namespace, **options: Any) -> Any:
    """The recipe named by ``--recipe`` (or the run's), with ``options`` for its function (built once per process, so
    the demo's steps share it); ``--seed`` and a progress bar go to recipes that take them."""
    from ..recipes import load_recipe
    src = resolve_source(args, **options)
    args.recipe, args.seed = src["recipe"], src["seed"]
    key = (src["recipe"], src["seed"], tuple(sorted((k, repr(v)) for k, v in src["recipe_options"].items())))
    if key not in _recipes:
        print(f"ifscope: building recipe {src['recipe']} (seed {src['seed']})", file=sys.stderr)
        _recipes[key] = load_recipe(src["recipe"], optional={"seed": src["seed"], "progress": True},
                                    **src["recipe_options"])
        _recipes[key].source = src
    return _recipes[key]


def influence_for(args: argparse.Namespace, recipe: Any) -> Any:
    """An ``Influence`` on the recipe bound to ``--workdir``: each option from the command line, else the run's
    manifest (same method), else the recipe's defaults (:func:`ifscope.run.resolve.resolve`); says on stderr what it
    chose, and ``.refit_reason`` why it will not reuse the run's fit."""
    from ..influence import Influence
    from ..run.resolve import resolve
    saved = dict(saved_manifest(args).get("config") or {})
    own = getattr(args, "command_options", ())
    flags = {name: getattr(args, name, None) for name in [*flag_table(), "last_blocks"] if name not in own}
    defaults = {"weight_decay": float(recipe.info.get("weight_decay", 0.0)),
                **getattr(recipe, "defaults", {}).get("influence", {})}
    chosen = resolve(flags, saved, defaults, recipe.task, getattr(args, "method", None),
                     unsized="influence" not in getattr(recipe, "defaults", {}))
    print(f"ifscope: {chosen.method}: {chosen.describe()}", file=sys.stderr)
    inf = Influence(chosen.task, recipe.train, method=chosen.method, seed=args.seed, workdir=args.workdir,
                    source=getattr(recipe, "source", None), **chosen.options)
    changed = sorted(k for k, v in inf.config_json.items() if saved and saved.get(k) != v)
    inf.refit_reason = (f"options differ from the run's ({', '.join(changed)}): refitting, and the artifacts of the "
                        "old fit are dropped") if saved and changed else None
    if inf.refit_reason:
        print(f"ifscope: {inf.refit_reason}", file=sys.stderr)
    return inf


def fitted_for(args: argparse.Namespace, recipe: Any) -> Any:
    """:func:`influence_for`, fitted (or the run's fit reused)."""
    return influence_for(args, recipe).fit()


def run_facts(inf: Any) -> dict[str, Any]:
    """What every command's JSON carries about the fit it used: ``config`` (the fitted estimator's configuration as
    recorded in manifest.json), ``curvature_sha256`` (the checksum of curvature.safetensors in the manifest),
    ``model_contract`` (what the model contract found at the fit: ``ifscope.check_model``) and ``fallbacks`` (every
    transform fallback taken on the model so far, e.g. by float64 reference methods)."""
    from ..core.capabilities import known_capabilities
    contract = getattr(inf, "contract", None)
    return {"config": inf.config_json, "curvature_sha256": inf.curvature_sha256, "reused_fit": inf.reused,
            "refit_reason": getattr(inf, "refit_reason", None),
            "model_contract": contract.to_dict() if contract is not None else None,
            "fallbacks": [line for c in known_capabilities(inf.task.model) for line in c.fallbacks()]}


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
        module = importlib.import_module(f".{name.replace('-', '_')}", __name__)
        p = module.add_parser(sub)
        p.add_argument("--json", action="store_true", help="print a machine-readable JSON result on stdout")
        p.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    from ..run import distributed

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
    record_options(args, result)
    summary = result.pop("summary", "")
    if args.json:
        print(json.dumps(result, indent=2))
    elif summary:
        print(summary)
    return 0
