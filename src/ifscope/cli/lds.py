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
    retrain = o.retrain
    if retrain == "scratch" and recipe.retrain is None:
        if resolved.source["retrain"] != "library":
            raise ConfigError(f"recipe {args.recipe!r} declares no way to train from scratch (Recipe.retrain is "
                              "None); use --retrain continue, or give its Recipe retrain=(data, seed) -> state")
        retrain = "continue"
        print(f"ifscope: {command}: recipe {args.recipe!r} declares no training from scratch (Recipe.retrain): "
              f"continued training from the checkpoint instead ({o.steps} steps of full-batch GD)", file=sys.stderr)
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
        if retrain == "continue" else None
    gen = torch.Generator().manual_seed(args.seed + 11)
    q_order = torch.randperm(len(test), generator=gen)[:n_q]  # a smaller budget keeps the first ones
    q_idx = q_order.sort().values
    configs = {name: inf.config_json for name, inf in methods.items()}
    return {"recipe": recipe, "methods": methods, "configs": configs, "queries": take(test, q_idx),
            "query_ids": q_idx.tolist(), "query_order": q_order, "test": test, "resolved": resolved,
            "retrain": recipe.retrain if retrain == "scratch" else "continue", "seeds": seeds,
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


def sized(args: argparse.Namespace, setup: dict[str, Any]) -> Any:
    """What a time budget affords of the subsets, seeds and queries the user did not set (said on stderr); the
    setup's queries cut to the first of its sample."""
    from ..core.data import take
    from ..experiments.measure import size_lds
    from ..experiments.sizing_eval import LDS_SIZED, LDSSizes
    o, source = setup["options"], setup["resolved"].source
    kind = "scratch" if callable(setup["retrain"]) else "continue"
    wanted = LDSSizes(o.subsets, setup["seeds"] if kind == "scratch" else 1, len(setup["query_ids"]), o.steps, kind)
    chosen = size_lds(setup["methods"], setup["queries"], wanted, setup["retrain"], setup["schedule"], o.fraction,
                      o.budget_s, [k for k in LDS_SIZED if source.get(k) == "flag"], args.seed)
    print(f"ifscope: lds {chosen}", file=sys.stderr)
    if chosen.sizes.queries < wanted.queries:
        q_idx = setup["query_order"][:chosen.sizes.queries].sort().values
        setup.update(queries=take(setup["test"], q_idx), query_ids=q_idx.tolist())
    return chosen


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("lds", help="linear datamodeling score of each method on models retrained on subsets (lds.json)",
                       description=__doc__)
    return evaluation_arguments(p, "lds")


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ..experiments.evaluate import lds
    t0 = time.time()
    setup = prepare(args, "lds")
    o = setup["options"]
    chosen = sized(args, setup)
    s = chosen.sizes
    result = lds(setup["methods"], setup["queries"], subsets=s.subsets, fraction=o.fraction, seed=args.seed,
                 retrain=setup["retrain"], seeds=s.seeds, steps=setup["steps"], schedule=setup["schedule"])
    out, path = record(args, setup, result, "lds.json", t0)
    out["train_batch_size"] = o.train_batch_size
    out["chosen"] = chosen.as_dict()
    how = (f"retrained from scratch, {out['seeds']} seed(s) per subset" if out["retrain"] == "scratch"
           else f"continued {out['steps']} steps of " + ("full-batch GD" if o.train_batch_size is None else
                                                          f"SGD batch {o.train_batch_size}") + " from the checkpoint")
    agree = "" if result.seed_agreement is None else f"; two seeds' losses agree at Spearman {result.seed_agreement:.3f}"
    out["summary"] = "\n".join([
        f"LDS on {args.recipe}: {out['subsets']} subsets of {o.fraction:g} x {out['n_train']} training examples, "
        f"{how}; {out['n_queries']} queries{agree}", result.table(),
        f"wrote {path} in {out['seconds']:.0f} s"])
    return out
