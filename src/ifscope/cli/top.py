"""``ifscope top``: the strongest proponents and opponents of a few test queries, saved as ``DIR/top.json``.

``top.json`` also carries what the report's gallery draws: each example's pixels (recipes whose ``info`` has
``image_shape``) or its text (``info["texts"] = {"train": [...], "test": [...]}``).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from ..options import TopOptions
from . import (
    add_options,
    common_arguments,
    fitted_for,
    influence_arguments,
    recipe_for,
    resolve_command,
    run_facts,
)
from .scores import query_subset

TOP = "top.json"


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("top", help="top-k proponents and opponents of test queries")
    influence_arguments(common_arguments(p))
    add_options(p, (TopOptions,), "top options")
    return p


def _view(recipe: Any, split: str, ds: Any, index: int) -> dict[str, Any]:
    """What the report draws for one example: pixels for image data, text for text data, nothing otherwise."""
    from ..core.data import take
    info = recipe.info
    texts = info.get("texts")
    if isinstance(texts, dict) and split in texts:
        return {"text": str(texts[split][index])}
    if "image_shape" in info:
        batch = take(ds, [index])
        x = batch[0] if isinstance(batch, (tuple, list)) else next(iter(batch.values()))
        return {"pixels": [round(float(v), 4) for v in x.reshape(-1)]}
    return {}


def _snippet(text: str, width: int = 80) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _labels(recipe: Any, ds: Any, indices: list[int]) -> tuple[list[int], list[int]]:
    """Gold labels and the model's predicted classes of the examples at ``indices``."""
    import torch

    from ..core.data import take
    task = recipe.task
    params, rest = task.state()
    batch = task.cast(take(ds, indices), next(iter(params.values())).dtype)  # onto the model's device
    with task.evaluating(), torch.no_grad():
        out = task.forward(params, rest, batch)
    gold = task.targets(batch).reshape(-1).tolist()
    pred = out.argmax(-1).reshape(-1).tolist() if out.dim() == 2 else [None] * len(indices)
    return [int(g) for g in gold], pred


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ..core.data import as_dataset
    recipe = recipe_for(args)
    o = resolve_command(args, recipe, "top").options
    t0 = time.time()
    inf = fitted_for(args, recipe)
    idx, queries = query_subset(args, recipe, o.queries, inf)
    top = inf.top(queries, k=o.k)
    test, train = as_dataset(recipe.test, "test"), inf.train
    gold, pred = _labels(recipe, test, idx)
    flipped = recipe.info.get("flipped")
    classes = recipe.info.get("classes")
    rows, lines = [], []

    def item(i: int, s: float) -> dict[str, Any]:
        label = _labels(recipe, train, [i])[0][0]
        out = {"index": i, "label": label, "score": s, **_view(recipe, "train", train, i)}
        if flipped is not None:
            out["flipped"] = bool(flipped[i])
        return out

    for q, qi in enumerate(idx):
        row = {"index": qi, "label": gold[q], "predicted": pred[q], **_view(recipe, "test", test, qi),
               "proponents": [item(int(i), float(s)) for i, s in zip(top.proponents[q], top.proponent_scores[q])],
               "opponents": [item(int(i), float(s)) for i, s in zip(top.opponents[q], top.opponent_scores[q])]}
        rows.append(row)
        lines.append(f"test #{qi}: label {row['label']}, predicted {row['predicted']}"
                     + (f": {_snippet(row['text'])}" if "text" in row else ""))
        for side in ("proponents", "opponents"):
            if "text" in row:  # text recipes: one training text per line, where indices alone say nothing
                lines.append(f"  {side}:")
                lines += [f"    {e['score']:+.3g}  #{e['index']} ({e['label']}) {_snippet(e['text'])}" for e in row[side]]
                continue
            lines.append(f"  {side + ':':12s} " + ", ".join(f"#{e['index']} ({e['label']}) {e['score']:+.3g}"
                                                            for e in row[side]))
    view = ("text" if isinstance(recipe.info.get("texts"), dict) else
            "image" if "image_shape" in recipe.info else "none")
    result = {"k": top.proponents.shape[1], "n_train": inf.n_train, "method": inf.method, "view": view,
              "image_shape": list(recipe.info.get("image_shape", [])), "classes": classes, "queries": rows}
    path = inf.run.save_json(TOP, result)
    lines.insert(0, f"top {result['k']} proponents and opponents of {len(idx)} test queries -> {path} "
                    f"({time.time() - t0:.1f} s)")
    return {**run_facts(inf), **result, "path": str(path), "summary": "\n".join(lines)}
