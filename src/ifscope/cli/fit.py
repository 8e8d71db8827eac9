"""``ifscope fit``: fit the estimator at the recipe's checkpoint and save it as ``DIR/curvature.safetensors``."""

from __future__ import annotations

import argparse
import time
from typing import Any

from . import common_arguments, influence_arguments, influence_for, recipe_for, run_facts


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("fit", help="fit the curvature / eigenbasis once and save it in the run directory")
    return influence_arguments(common_arguments(p))


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ..run.store import CURVATURE
    recipe = recipe_for(args)
    t0 = time.time()
    inf = influence_for(args, recipe).fit()
    est = inf.estimator
    eig = getattr(est, "eigenvalues", None)
    eigenvalues = [float(v) for v in eig] if eig is not None else None
    seconds = time.time() - t0
    what = f"{inf.method}" + (f", {len(eigenvalues)} eigenpairs" if eigenvalues else "")
    if inf.reused:
        head = f"reused the curvature in {args.workdir} ({what}; same model, data and options)"
    else:
        head = f"fit {what} in {seconds:.1f} s"
        if inf.run is not None and inf.run.has(CURVATURE):
            head += f" -> {inf.run.path / CURVATURE}"
    lines = [head, f"{inf.n_train} training examples, {est.ctx.space.dim} parameters"]
    if eigenvalues:
        lines.append(f"eigenvalues kept: {eigenvalues[0]:.4g} (largest) ... {eigenvalues[-1]:.4g} (smallest)")
    if inf.dropped:
        lines.append(f"options changed: dropped {len(inf.dropped)} artifacts made under the old ones")
    if inf.chosen:
        lines.append(inf.chosen["text"])
    checks = list(getattr(est, "sample_checks", None) or [])
    for c in checks:
        lines.append(f"Hessian sample of {c['hessian_samples']}: its top eigenvalues drift {c['drift']:.1%} on a "
                     "disjoint sample of the training set")
    return {**run_facts(inf), "workdir": str(args.workdir), "method": inf.method, "reused": inf.reused,
            "dropped": inf.dropped, "n_train": inf.n_train, "n_parameters": est.ctx.space.dim,
            "eigenvalues": eigenvalues, "seconds": seconds, "chosen": inf.chosen, "sample_checks": checks,
            "warnings": list(getattr(est, "warnings", None) or []), "summary": "\n".join(lines)}
