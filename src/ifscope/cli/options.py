"""Command-line flags generated from the options dataclasses, and each command's options resolved by the one resolver
(flag > the run's record of the command > the recipe > the library)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

# Three step sizes, three flags: --horizon-lr (the estimator's horizon step), --train-lr (the continued training of
# fade and diagnose), --correct-lr (the correction's). The old --lr stays an alias of the one each command had, so
# that recorded commands (docs/results/*.json) still run.
ESTIMATOR_FLAGS = {"lr": "horizon-lr"}
OLD_LR = "--lr"


def flag_table() -> dict[str, tuple[type, list[str]]]:
    """Every option a command line can set: ``{name: (type, methods that take it)}``, from the options dataclasses."""
    from ..estimators import METHODS
    from ..influence import SPEED_FIELDS
    from ..options import FitOptions, flag_fields
    table: dict[str, tuple[type, list[str]]] = {
        name: (kind, sorted(m for m, cls in METHODS.items() if name in cls.reads) if name in SPEED_FIELDS else ["all"])
        for name, (kind, _) in flag_fields(FitOptions).items() if name != "seed"}
    for method, cls in METHODS.items():
        for name, (kind, _) in flag_fields(cls.Options).items():
            table.setdefault(name, (kind, []))[1].append(method)
    return table


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def influence_arguments(p: argparse.ArgumentParser, exclude: tuple[str, ...] = ()) -> argparse.ArgumentParser:
    """Estimator flags generated from the options dataclasses (``--method``, the shared :class:`FitOptions` and every
    method's own, less ``exclude``: names the command uses for its own options); one left out is taken from the run
    directory's manifest, then the recipe's defaults."""
    from ..estimators import METHODS
    p.set_defaults(command_options=tuple(exclude))
    g = p.add_argument_group("influence options (default: the run's, then the recipe's, then the library's)")
    g.add_argument("--method", default=None, help=f"one of {', '.join(sorted(METHODS))} (default arnoldi)")
    for name, (kind, methods) in flag_table().items():
        if name in exclude:
            continue
        parse = _bool if kind is bool else kind
        who = "every method" if methods == ["all"] else ", ".join(methods)
        flag = ESTIMATOR_FLAGS.get(name, name.replace("_", "-"))
        alias = [OLD_LR] if name == "lr" and "train_lr" not in exclude else []  # a command's own step keeps --lr
        g.add_argument(f"--{flag}", *alias, dest=name, type=parse, default=None, help=f"{name} ({who})")
    g.add_argument("--last-blocks", type=int, default=None,
                   help="text models: take influence over the last N transformer blocks and the head only")
    return p


def _parse_list(kind: type, allowed: tuple | None = None):
    def parse(text: str) -> list:
        try:
            values = [kind(v) for v in text.split(",") if v.strip()]
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"expected comma-separated {kind.__name__}s, got {text!r}") from exc
        bad = [v for v in values if allowed is not None and v not in allowed]
        if bad:
            raise argparse.ArgumentTypeError(f"invalid choice(s) {bad}; choose from {', '.join(map(str, allowed))}")
        return values
    return parse


class _Extend(argparse.Action):
    """``--steps 1,3,10`` and ``--steps 1 3 10`` both give ``[1, 3, 10]``."""

    def __call__(self, parser, namespace, values, option_string=None):  # noqa: ANN001
        setattr(namespace, self.dest, [v for part in values for v in part])


def add_options(p: argparse.ArgumentParser, classes: tuple[type, ...], title: str,
                flags: dict[str, str] | None = None, helps: dict[str, str] | None = None,
                skip: tuple[str, ...] = ("seed",), choices: dict[str, tuple] | None = None) -> argparse.ArgumentParser:
    """Flags generated from the fields of options dataclasses: type, choices and help from each field (``flags``
    renames a field's flag, ``helps`` and ``choices`` complete fields that carry none); every default is None, so that the
    resolver sees what was typed. A step-size field (``train_lr``, the correction's ``lr``) also answers to the
    old ``--lr``."""
    import dataclasses
    import typing

    from ..options import optional_of
    g = p.add_argument_group(title)
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name in skip:
                continue
            base = optional_of(hints[f.name])
            meta = f.metadata
            name = (flags or {}).get(f.name) or meta.get("flag") or f"--{f.name.replace('_', '-')}"
            spec: dict[str, Any] = {"dest": f.name, "default": None,
                                    "help": (helps or {}).get(f.name) or meta.get("help") or f.name}
            allowed = meta.get("choices") or (choices or {}).get(f.name)
            if typing.get_origin(base) in (list, tuple):
                item = typing.get_args(base)[0]
                spec.update(type=_parse_list(item, allowed), nargs="+", action=_Extend, metavar=f.name.upper())
                allowed = None  # checked per item by the parser
            elif base is bool:
                spec.update(action=argparse.BooleanOptionalAction)
            else:
                spec.update(type=base)
            if allowed:
                spec["choices"] = allowed
            if spec["default"] is None and f.default is not dataclasses.MISSING and f.default is not None \
                    and not isinstance(f.default, bool):
                spec["help"] += f" (default {f.default})"
            alias = [OLD_LR] if f.name in ("train_lr", "lr") and name != OLD_LR else []
            g.add_argument(name, *alias, **spec)
    return p


def resolve_command(args: argparse.Namespace, recipe: Any, command: str, classes: tuple[type, ...] | None = None,
                    fixed: dict[str, Any] | None = None) -> Any:
    """The options objects of ``command`` by the one resolver: each flag typed, else what the run recorded for this
    command, else the recipe's ``defaults[command]``, else the library's; said once on stderr and recorded in the
    run's manifest when the command succeeds (:func:`main`)."""
    import dataclasses

    from ..options import COMMAND_OPTIONS, resolve
    classes = classes or COMMAND_OPTIONS[command]
    names = [f.name for cls in classes for f in dataclasses.fields(cls)]
    flag = {n: getattr(args, n, None) for n in names}
    saved = (saved_manifest(args).get("options") or {}).get(command) or {}
    resolved = resolve(classes, flag=flag, manifest=saved, recipe=getattr(recipe, "defaults", {}).get(command, {}),
                       what=f"`ifscope {command}`", fixed=fixed)
    args.resolved = (command, resolved)
    print(f"ifscope: {command} options: {resolved.describe()}", file=sys.stderr)
    return resolved


def record_options(args: argparse.Namespace, result: dict[str, Any]) -> None:
    """After a command succeeded: its resolved options in its JSON (``command_options``) and in the run's manifest
    (``options[command]``), the manifest layer of the next run of the same command."""
    from ..core.errors import IfscopeError
    from ..run.store import RunDir
    if getattr(args, "resolved", None) is None:
        return
    command, resolved = args.resolved
    result["command_options"] = resolved.to_dict()
    run = RunDir(args.workdir) if getattr(args, "workdir", None) else None
    if run is not None and run.exists and run.writer:
        try:
            run.record_options(command, resolved.values())
        except IfscopeError as exc:  # e.g. a finished run read on a read-only directory: the result stands
            print(f"ifscope: {command} options not recorded in the run directory: {exc}", file=sys.stderr)


def saved_manifest(args: argparse.Namespace) -> dict[str, Any]:
    """The manifest of ``--workdir`` (empty without one)."""
    from ..run.store import RunDir
    workdir = getattr(args, "workdir", None)
    return RunDir(workdir).manifest if workdir else {}
