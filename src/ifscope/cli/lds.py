"""``ifscope lds``: the linear datamodeling score of each method, on models retrained on random subsets (lds.json).

Also the parts ``ifscope counterfactual`` shares: the method list, the query sample, the retraining and where the
result is written.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path
from typing import Any

from ..core.errors import ConfigError
from . import add_options, common_arguments, influence_arguments, influence_for, recipe_for, resolve_command


def evaluation_arguments(p: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    """The estimator flags and the command's own (:class:`ifscope.options.LDSOptions` or
    :class:`ifscope.options.CounterfactualOptions`), generated from the dataclass."""
    import dataclasses

    from ..options import COMMAND_OPTIONS
    classes = COMMAND_OPTIONS[command]
    influence_arguments(common_arguments(p), exclude=tuple(f.name for c in classes for f in dataclasses.fields(c)))
    return add_options(p, classes, f"{command} options (default: the run's last, the recipe's, then the library's)")


def _method_names(text: str | None) -> list[str | None]:
    if text is None:
        return [None]  # influence_for's choice: the run directory's method, else arnoldi
    names = [v.strip() for v in text.split(",") if v.strip()]
    if not names or len(set(names)) != len(names):
        raise ConfigError(f"--method {text!r} must be a comma-separated list of distinct methods, e.g. exact,arnoldi")
    return names  # type: ignore[return-value]


def prepare(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """The recipe, ``{name: Influence}``, the query sample and the retraining (``retrain``, ``seeds``, ``steps``)."""
    import torch

    from ..core.data import as_dataset, take
    from ..estimators import METHODS
    from ..experiments.fade import gd_schedule, method_label
    recipe = recipe_for(args)
    test = as_dataset(recipe.test, "test")
    resolved = resolve_command(args, recipe, command)
    o = resolved.options
    n_q, seeds = o.queries if resolved.source["queries"] == "flag" else min(len(test), o.queries), o.seeds
    if not 1 <= n_q <= len(test):
        raise ConfigError(f"--queries must lie in [1, {len(test)}] (the recipe's test examples), got {n_q}")
    if o.retrain == "scratch" and recipe.retrain is None:
        raise ConfigError(f"recipe {args.recipe!r} declares no way to train from scratch (Recipe.retrain is None); "
                          "use --retrain continue, or give its Recipe retrain=(data, seed) -> state")
    names = _method_names(args.method)
    methods: dict[str, Any] = {}
    for name in names:
        ns = copy.copy(args)
        ns.method = name
        if len(names) > 1:  # each method keeps its own fitted run, so that none overwrites another's curvature
            ns.workdir = str(Path(args.workdir) / name)
        own = METHODS[name].OPTIONS if name in METHODS else {}
        for key in ("rank", "iterations"):
            if getattr(ns, key) is not None and len(names) > 1 and key not in own:
                setattr(ns, key, None)  # --rank applies to the methods that take it
        if (name or "") == "horizon" and getattr(ns, "horizon", None) is None:
            ns.horizon = o.steps  # its T is the continued training's (its η is 1/λ_max, as gd_schedule's)
        inf = influence_for(ns, recipe)
        print(f"ifscope: {command}: method {inf.method}", file=sys.stderr)
        methods[method_label(inf)] = inf
    first = next(iter(methods.values()))
    schedule = gd_schedule(first, o.steps, batch_size=o.train_batch_size, seed=args.seed) \
        if o.retrain == "continue" else None
    gen = torch.Generator().manual_seed(args.seed + 11)
    q_idx = torch.randperm(len(test), generator=gen)[:n_q].sort().values
    configs = {name: inf.config_json for name, inf in methods.items()}
    return {"recipe": recipe, "methods": methods, "configs": configs, "queries": take(test, q_idx),
            "query_ids": q_idx.tolist(),
            "retrain": recipe.retrain if o.retrain == "scratch" else "continue", "seeds": seeds,
            "steps": o.steps, "schedule": schedule, "options": o}


def save(args: argparse.Namespace, methods: dict[str, Any], name: str, out: dict[str, Any]) -> Path:
    """Write ``name`` through the run directory when the one method is bound to ``--workdir``, else as plain JSON."""
    from ..core.files import write_json
    runs = [inf.run for inf in methods.values() if inf.run is not None and inf.run.path == Path(args.workdir)]
    if runs and runs[0].exists:
        return runs[0].save_json(name, out)
    return write_json(Path(args.workdir) / name, out)


def record(args: argparse.Namespace, setup: dict[str, Any], result: Any, name: str, t0: float) -> tuple[dict, Path]:
    """The result's JSON with the recipe, queries, each method's configuration and the duration, saved as ``name``."""
    out = result.to_dict()
    out.update(recipe=args.recipe, query_ids=setup["query_ids"], method_configs=setup["configs"],
               seconds=time.time() - t0)
    return out, save(args, setup["methods"], name, out)


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("lds", help="linear datamodeling score of each method on models retrained on subsets (lds.json)",
                       description=__doc__)
    return evaluation_arguments(p, "lds")


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ..experiments.evaluate import lds
    t0 = time.time()
    setup = prepare(args, "lds")
    o = setup["options"]
    result = lds(setup["methods"], setup["queries"], subsets=o.subsets, fraction=o.fraction, seed=args.seed,
                 retrain=setup["retrain"], seeds=setup["seeds"], steps=setup["steps"], schedule=setup["schedule"])
    out, path = record(args, setup, result, "lds.json", t0)
    out["train_batch_size"] = o.train_batch_size
    how = (f"retrained from scratch, {out['seeds']} seed(s) per subset" if out["retrain"] == "scratch"
           else f"continued {out['steps']} steps of " + ("full-batch GD" if o.train_batch_size is None else
                                                          f"SGD batch {o.train_batch_size}") + " from the checkpoint")
    agree = "" if result.seed_agreement is None else f"; two seeds' losses agree at Spearman {result.seed_agreement:.3f}"
    out["summary"] = "\n".join([
        f"LDS on {args.recipe}: {out['subsets']} subsets of {o.fraction:g} x {out['n_train']} training examples, "
        f"{how}; {out['n_queries']} queries{agree}", result.table(),
        f"wrote {path} in {out['seconds']:.0f} s"])
    return out
