"""Estimator options for a recipe-driven command: a flag given on the command line, else the run directory's
manifest, else the recipe's ``defaults["influence"]`` (sized to its model), else the estimator's own defaults.

``defaults["influence"]`` may also hold ``method`` and ``last_blocks`` (the parameter selection of a text model:
the last N transformer blocks and everything after them); the manifest records the selection as ``parameters``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..core.budget import UNSIZED_FIT_BUDGET_S
from ..core.errors import ConfigError
from ..core.task import Task

FIT_SIZES = ("iterations", "hessian_samples", "time_budget_s")  # flags that size a fit themselves
SELECTION = ("last_blocks",)  # recipe defaults that choose parameters, not estimator options


@dataclass
class FitChoice:
    """What a command builds its ``Influence`` from, and where each option came from (``flag``, ``manifest``,
    ``recipe``)."""

    method: str
    options: dict[str, Any]
    task: Task
    source: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """``"rank 8 (recipe), iterations 24 (flag)"``: one line saying what was chosen and why."""
        return ", ".join(f"{k.replace('_', ' ')} {v} ({self.source.get(k, '?')})" for k, v in self.options.items())


def select_parameters(task: Task, last_blocks: int | None = None, names: list[str] | None = None) -> Task:
    """``task`` restricted to the last ``last_blocks`` transformer blocks and what follows them, or to ``names``."""
    if last_blocks is None and names is None:
        return task
    if names is None:
        from ..core.hf import last_blocks_params
        names = last_blocks_params(task.model, last_blocks)  # type: ignore[arg-type]
    if list(names) == task.parameter_names:
        return task
    return dataclasses.replace(task, params=list(names))


def resolve(flags: Mapping[str, Any], saved: Mapping[str, Any], recipe_defaults: Mapping[str, Any], task: Task,
            method_flag: str | None = None, unsized: bool = False) -> FitChoice:
    """Merge the layers (flags > manifest > recipe > library) with the one resolver's :func:`ifscope.options.pick`
    into one method, its options and the task. ``saved``
    is the manifest's config (JSON form, read back with :func:`ifscope.options.from_json`); a flag that the method
    does not take is an error, a recipe default it does not take is skipped. ``unsized`` (a recipe with no influence
    defaults): unless a flag sizes the fit (iterations, Hessian sample, time budget), an arnoldi fit gets the time
    budget ``UNSIZED_FIT_BUDGET_S`` (source ``unsized recipe``), which shrinks its Hessian sample only where the
    library's sizes would not fit (:mod:`ifscope.core.budget`)."""
    from ..estimators import METHODS
    from ..options import FitOptions, default_of, from_json, pick
    recipe = dict(recipe_defaults)
    every = {"method", *SELECTION, *FitOptions.__dataclass_fields__, *(k for m in METHODS.values() for k in m.OPTIONS)}
    unknown = sorted(set(recipe) - every)
    if unknown:
        raise ConfigError(f"the recipe's defaults['influence'] has unknown option(s) {unknown}")
    method = method_flag or saved.get("method") or recipe.get("method") or "arnoldi"
    if method not in METHODS:
        raise ConfigError(f"unknown --method {method!r}; choose one of {sorted(METHODS)}")
    keys = [k for k in (*FitOptions.__dataclass_fields__, *METHODS[method].OPTIONS) if k != "seed"]
    same = saved.get("method") == method
    manifest = {k: from_json(k, v) for k, v in saved.items()} if same else {}
    library = {**{f.name: default_of(f) for f in dataclasses.fields(FitOptions)},
               **METHODS[method].OPTIONS}
    layers = [("flag", flags), ("manifest", manifest), ("recipe", {k: v for k, v in recipe.items() if v is not None})]
    if unsized and method == "arnoldi" and all(flags.get(k) is None for k in FIT_SIZES):
        layers.append(("unsized recipe", {"time_budget_s": UNSIZED_FIT_BUDGET_S}))
    options, source = pick(keys, layers, library)
    bad = [k for k, v in flags.items() if v is not None and k not in keys and k not in SELECTION]
    if bad:
        raise ConfigError(f"--{bad[0].replace('_', '-')} is not an option of method {method!r}")
    if flags.get("last_blocks") is not None:
        task = select_parameters(task, last_blocks=flags["last_blocks"])
    elif same and saved.get("parameters"):
        task = select_parameters(task, names=list(saved["parameters"]))
    elif recipe.get("last_blocks") is not None:
        task = select_parameters(task, last_blocks=recipe["last_blocks"])
    return FitChoice(method, options, task, source)
