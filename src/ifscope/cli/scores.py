"""``ifscope scores``: the score matrix ``scores[query, train]`` saved as ``DIR/scores.safetensors``."""

from __future__ import annotations

import argparse
import time
from typing import Any

from ..options import ScoresOptions
from . import (
    add_options,
    common_arguments,
    fitted_for,
    influence_arguments,
    parse_indices,
    recipe_for,
    resolve_command,
    run_facts,
)


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("scores", help="score every training example against test queries (resumable)")
    influence_arguments(common_arguments(p))
    add_options(p, (ScoresOptions,), "scores options")
    return p


def query_subset(args: argparse.Namespace, recipe: Any, spec: str | None, inf: Any) -> tuple[list[int], Any]:
    """The test examples named by ``spec``, after binding the test set's fingerprint to the run directory."""
    from torch.utils.data import Subset

    from ..core.data import as_dataset
    from ..core.fingerprint import data_fingerprint
    test = as_dataset(recipe.test, "test")
    if inf.run is not None:
        inf.run.bind({"test": data_fingerprint(test)})
    idx = parse_indices(spec, len(test), "--queries")
    return idx, Subset(test, idx)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from ..run.store import SCORES
    recipe = recipe_for(args)
    o = resolve_command(args, recipe, "scores").options
    t0 = time.time()
    inf = fitted_for(args, recipe)
    idx, queries = query_subset(args, recipe, o.queries, inf)
    s = inf.scores(queries)
    path = inf.run.save_tensors(SCORES, {"scores": s, "queries": torch.tensor(idx)})
    run_dir = inf.run
    seconds = time.time() - t0
    lines = [f"scores [{len(idx)} queries x {inf.n_train} training examples] -> {path}",
             f"curvature {'reused' if inf.reused else 'fitted'}; training-embedding shards: {run_dir.shards_reused} "
             f"reused, {run_dir.shards_computed} computed; {seconds:.1f} s",
             f"range {float(s.min()):+.4g} .. {float(s.max()):+.4g}; score/N = predicted change of the query loss "
             f"when that training example is removed (N = {inf.n_train})"]
    return {**run_facts(inf), "path": str(path), "shape": list(s.shape), "queries": idx, "reused_curvature": inf.reused,
            "shards_reused": run_dir.shards_reused, "shards_computed": run_dir.shards_computed,
            "min": float(s.min()), "max": float(s.max()), "seconds": seconds, "summary": "\n".join(lines)}
