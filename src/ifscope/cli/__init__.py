"""The ``ifscope`` command: one module per subcommand, each with ``add_parser`` and ``run``.

A subcommand's ``run(args) -> dict`` does the work and returns its JSON-ready result; the dict's ``"summary"``
entry (a string, removed from the JSON) is what a person reads. ``--json`` prints the dict instead.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys

from ..errors import IfscopeError

SUBCOMMANDS = ["demo"]


def common_arguments(p: argparse.ArgumentParser, workdir: bool = True) -> argparse.ArgumentParser:
    """The options every recipe-driven subcommand shares: ``--recipe``, ``--workdir``, ``--seed``."""
    p.add_argument("--recipe", default="digits-mlp",
                   help="a built-in recipe name (digits-mlp, ...) or FILE.py:FUNCTION returning an ifscope Recipe")
    if workdir:
        p.add_argument("--workdir", default="runs/ifscope", help="run directory for artifacts")
    p.add_argument("--seed", type=int, default=0)
    return p


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
