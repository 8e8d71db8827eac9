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


def _short(value: Any) -> str:
    """A target as shown beside a training example's index: a real value to four significant digits."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _snippet(text: str, width: int = 80) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _labels(recipe: Any, ds: Any, indices: list[int], outputs: bool = True) -> list[dict[str, Any]]:
    """Per example at ``indices``: its target (``label``) and, with ``outputs``, the model's prediction
    (``predicted``), as the task's judge gives them (class indices, real values or text), and both as text
    (``target``, ``prediction``). Targets alone need no judge (the raw target then)."""
    import torch

    from ..core.data import take
    from ..core.judges import prediction_value, require_judge, target_value
    task = recipe.task
    judge = require_judge(task.judge, "top") if outputs or task.judge is not None else None
    dtype = next(p for n, p in task.model.named_parameters() if n in task.parameter_names).dtype
    batch = task.cast(take(ds, indices), dtype)  # onto the model's device
    if judge is None:
        raw = task.targets(batch)
        return [{"label": raw[j].tolist(), "target": f"target {raw[j].tolist()}"} for j in range(len(indices))]
    rows = [{"label": target_value(judge, batch, j), "target": judge.show_target(batch, j)}
            for j in range(len(indices))]
    if outputs:
        params, rest = task.state()
        with task.evaluating(), torch.no_grad():
            out = task.forward(params, rest, batch)
        for j, row in enumerate(rows):
            row.update(predicted=prediction_value(judge, out, batch, j),
                       prediction=judge.show_prediction(out, batch, j))
    return rows


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ..core.data import as_dataset, take
    recipe = recipe_for(args)
    o = resolve_command(args, recipe, "top").options
    t0 = time.time()
    inf = fitted_for(args, recipe)
    idx, queries = query_subset(args, recipe, o.queries, inf)
    top = inf.top(queries, k=o.k)
    test, train = as_dataset(recipe.test, "test"), inf.train
    shown = _labels(recipe, test, idx)
    flipped = recipe.info.get("flipped")
    classes = recipe.info.get("classes")
    rows, lines = [], []

    def item(i: int, s: float) -> dict[str, Any]:
        out = {"index": i, **_labels(recipe, train, [i], outputs=False)[0], "score": s,
               **_view(recipe, "train", train, i)}
        if flipped is not None:
            out["flipped"] = bool(flipped[i])
        return out

    for q, qi in enumerate(idx):
        row = {"index": qi, **shown[q], **_view(recipe, "test", test, qi),
               # k can exceed the examples of one sign (k >= N): a proponent has a positive score, an opponent a negative
               "proponents": [item(int(i), float(s)) for i, s in zip(top.proponents[q], top.proponent_scores[q]) if s > 0],
               "opponents": [item(int(i), float(s)) for i, s in zip(top.opponents[q], top.opponent_scores[q]) if s < 0]}
        rows.append(row)
        lines.append(f"test #{qi}: {row['target']}, {row['prediction']}"
                     + (f": {_snippet(row['text'])}" if "text" in row else ""))
        for side in ("proponents", "opponents"):
            if "text" in row:  # text recipes: one training text per line, where indices alone say nothing
                lines.append(f"  {side}:")
                lines += [f"    {e['score']:+.3g}  #{e['index']} ({_short(e['label'])}) {_snippet(e['text'])}"
                          for e in row[side]]
                continue
            lines.append(f"  {side + ':':12s} " + ", ".join(f"#{e['index']} ({_short(e['label'])}) {e['score']:+.3g}"
                                                            for e in row[side]))
    view = ("text" if isinstance(recipe.info.get("texts"), dict) else
            "image" if "image_shape" in recipe.info else "none")
    result = {"k": top.proponents.shape[1], "n_train": inf.n_train, "method": inf.method, "view": view,
              "image_shape": list(recipe.info.get("image_shape", [])), "classes": classes,
              "grouped": recipe.task.judge.group(take(test, idx[:1])) is not None, "queries": rows}
    path = inf.run.save_json(TOP, result)
    lines.insert(0, f"top {result['k']} proponents and opponents of {len(idx)} test queries -> {path} "
                    f"({time.time() - t0:.1f} s)")
    return {**run_facts(inf), **result, "path": str(path), "summary": "\n".join(lines)}
