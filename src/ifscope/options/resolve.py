"""The one resolver: every option of a command from the first layer that gives it — the command-line flag, the run's
manifest, the recipe's defaults for the command, the library default — with the layer recorded.

A flag given as None was not given. The manifest layer is what the run recorded the last time (the fit's
configuration for estimator options, each command's resolved options for the others). An option a recipe declares
that the command does not take is an error naming the recipe; one the manifest holds that the command no longer
takes is ignored (an older run).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import ConfigError
from .fields import default_of, from_json, to_json

LAYERS = ("flag", "manifest", "recipe", "library")


@dataclass
class Resolved:
    """The options objects of one command (one per class, in order) and the layer each value came from."""

    objects: tuple[Any, ...]
    source: dict[str, str] = field(default_factory=dict)

    @property
    def options(self) -> Any:
        """The first (usually the only) options object."""
        return self.objects[0]

    def values(self) -> dict[str, Any]:
        """Every resolved value by name (JSON form), as recorded in the manifest."""
        return {f.name: to_json(getattr(o, f.name)) for o in self.objects for f in dataclasses.fields(o)}

    def describe(self) -> str:
        """``"steps [1, 10] (flag), n_ids 40 (library)"``: what was chosen, and where from."""
        return ", ".join(f"{k.replace('_', ' ')} {v} ({self.source[k]})" for k, v in self.values().items()
                         if k in self.source)

    def to_dict(self) -> dict[str, Any]:
        return {"values": self.values(), "source": dict(self.source)}


def _needs_arguments(fn: Any) -> bool:
    import inspect
    return any(p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
               for p in inspect.signature(fn).parameters.values())


def pick(names: Sequence[str], layers: Sequence[tuple[str, Mapping[str, Any]]],
         defaults: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """``(values, source)`` for ``names``: the first layer that gives each (a flag only when not None), else
    ``defaults`` (source ``library``); names absent everywhere are left out."""
    values: dict[str, Any] = {}
    source: dict[str, str] = {}
    for name in names:
        for layer, given in layers:
            if name in given and (given[name] is not None or layer != "flag"):
                values[name], source[name] = given[name], layer
                break
        else:
            if name in defaults:
                values[name], source[name] = defaults[name], "library"
    return values, source


def resolve(classes: Sequence[type], *, flag: Mapping[str, Any] | None = None,
            manifest: Mapping[str, Any] | None = None, recipe: Mapping[str, Any] | None = None,
            what: str = "the command", fixed: Mapping[str, Any] | None = None) -> Resolved:
    """Build each options dataclass of ``classes`` from the layers (flag > manifest > recipe > library), validated.

    ``manifest`` holds JSON values (read back with :func:`ifscope.options.fields.from_json`); ``fixed`` are values
    the command sets itself (e.g. the run's seed), recorded as ``flag``."""
    fields = [f for cls in classes for f in dataclasses.fields(cls)]
    names = [f.name for f in fields]
    recipe = dict(recipe or {})
    unknown = sorted(set(recipe) - set(names))
    if unknown:
        raise ConfigError(f"the recipe's defaults for {what} have unknown option(s) {unknown}; {what} takes {names}")
    saved = {k: from_json(k, v) for k, v in (manifest or {}).items() if k in names}
    flags = {**(flag or {}), **(fixed or {})}
    layers = [("flag", flags), ("manifest", saved), ("recipe", recipe)]
    values, source = pick(names, layers, {f.name: default_of(f) for f in fields})
    objects = []
    for cls in classes:
        own = {f.name: values[f.name] for f in dataclasses.fields(cls)}
        try:
            obj = cls(**own)
        except TypeError as exc:  # a wrong type reaching the constructor (a hand-written manifest or recipe)
            raise ConfigError(f"options of {what}: {exc}") from exc
        validate = getattr(obj, "validate", None)
        if validate is not None and not _needs_arguments(validate):  # e.g. CorrectOptions checks against n_train
            try:
                validate()
            except ConfigError as exc:
                bad = next((n for n in own if str(exc).startswith(n)), None)
                where = f" (from the {source[bad]})" if bad and source.get(bad) not in (None, "flag") else ""
                raise ConfigError(f"{exc}{where}") from None
        objects.append(obj)
    return Resolved(tuple(objects), source)
