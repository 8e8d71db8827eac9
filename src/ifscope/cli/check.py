"""``ifscope check``: validate a recipe before a long run: every batch of both datasets through the model and loss."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_parser(sub) -> argparse.ArgumentParser:
    from . import common_arguments
    p = sub.add_parser("check", help="validate a recipe: the model contract, shapes, labels, finite losses and "
                                     "gradient on all data")
    common_arguments(p, workdir=False)
    p.add_argument("--batch-size", type=int, default=128)
    return p


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from ..core.checks import check_finite_params
    from ..core.contract import check_model
    from ..core.curvature import Curvature
    from ..core.data import as_dataset, batches
    from ..core.errors import ConfigError, NumericalError
    from ..recipes import load_recipe

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be a positive integer, got {args.batch_size}")
    recipe = load_recipe(args.recipe, **dict(args.recipe_arg))
    task = recipe.task
    params, rest = task.state()
    check_finite_params(params)
    contract = check_model(task, recipe.train, dtypes=(torch.float64,))
    for line in contract.fallbacks:
        print(f"ifscope: {line}", file=sys.stderr)
    out: dict[str, Any] = {"recipe": args.recipe, "parameters": sum(p.numel() for p in recipe.model.parameters()),
                           "selected_parameters": sum(p.numel() for p in params.values())}
    with task.evaluating():
        for name in ("train", "test"):
            ds = as_dataset(getattr(recipe, name), f"{name} set")
            total = 0.0
            for b, (pos, batch) in enumerate(batches(ds, args.batch_size)):
                what = f"{name} set, batch {b} (examples {int(pos[0])}..{int(pos[-1])})"
                total += float(task.check(params, rest, batch, what).sum())
            out[name] = {"examples": len(ds), "mean_loss": total / len(ds)}
        train_batches = [b for _, b in batches(as_dataset(recipe.train, "train set"), args.batch_size)]
        op = Curvature(task, params, rest, train_batches, weight_decay=float(recipe.info.get("weight_decay", 0.0)))
        _, g = op.loss_and_grad()
    if not bool(torch.isfinite(g).all()):
        raise NumericalError("the training-loss gradient is NaN or inf although every loss is finite; use float64 "
                          "or check the model's forward pass for non-differentiable points")
    out["train"]["grad_norm"] = float(g.norm())
    out["model_contract"] = contract.to_dict()
    held = "".join([", the model's own forward reproduced" if contract.forward_gap is not None else "",
                    f", {len(contract.fallbacks)} fallback(s)" if contract.fallbacks else ""])
    out["summary"] = (f"recipe {args.recipe}: {out['parameters']} parameters ({out['selected_parameters']} selected); "
                      f"train {out['train']['examples']} examples, mean loss {out['train']['mean_loss']:.4g}, "
                      f"|grad L| {out['train']['grad_norm']:.3g}; test {out['test']['examples']} examples, mean loss "
                      f"{out['test']['mean_loss']:.4g}; every batch passed the shape, label and finiteness checks; the "
                      f"model contract holds (per-example losses{held})")
    return out
