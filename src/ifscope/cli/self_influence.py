"""``ifscope self-influence``: training examples ranked by self-influence ``score(z, z) = ∇ℓ(z)ᵀ H⁻¹ ∇ℓ(z)``, the
usual suspects for a wrong label; writes ``DIR/self_influence.json`` (the report's "Mislabel candidates" section).

When the recipe knows which labels it flipped (``info["flipped"]``, e.g. ``--recipe-arg flip=0.1`` on the digits
recipes), the ROC AUC of self-influence as a detector of those flips is reported as ``auc``.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from ..core.errors import ConfigError
from ..options import SelfInfluenceOptions
from . import (
    add_options,
    common_arguments,
    fitted_for,
    influence_arguments,
    recipe_for,
    resolve_command,
    run_facts,
)

SELF_INFLUENCE = "self_influence.json"


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("self-influence", help="rank training examples by self-influence (mislabel candidates)",
                       description=__doc__)
    influence_arguments(common_arguments(p))
    add_options(p, (SelfInfluenceOptions,), "self-influence options")
    return p


def flip_auc(scores: Any, flipped: Any) -> float | None:
    """ROC AUC of ``scores`` as a detector of ``flipped`` (``None`` when every label, or none, is flipped)."""
    from sklearn.metrics import roc_auc_score
    truth = [bool(f) for f in flipped]
    if len(truth) != len(scores):
        raise ConfigError(f"the recipe's info['flipped'] has {len(truth)} entries for {len(scores)} training examples")
    if all(truth) or not any(truth):
        return None
    return float(roc_auc_score(truth, [float(s) for s in scores]))


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from .top import _labels, _short, _snippet, _view
    recipe = recipe_for(args)
    o = resolve_command(args, recipe, "self-influence").options
    t0 = time.time()
    inf = fitted_for(args, recipe)
    scores = inf.self_influence().cpu()
    order = torch.argsort(scores, descending=True)[: min(o.k, inf.n_train)].tolist()
    labels = [r["label"] for r in _labels(recipe, inf.train, order, outputs=False)]
    flipped = recipe.info.get("flipped")
    auc = flip_auc(scores, flipped) if flipped is not None else None
    top = []
    for i, label in zip(order, labels):
        row = {"index": i, "score": float(scores[i]), "label": label, **_view(recipe, "train", inf.train, i)}
        if flipped is not None:
            row["flipped"] = bool(flipped[i])
        top.append(row)
    view = ("text" if isinstance(recipe.info.get("texts"), dict) else
            "image" if "image_shape" in recipe.info else "none")
    result = {"auc": auc, "top": top, "n_train": inf.n_train, "method": inf.method, "view": view,
              "image_shape": list(recipe.info.get("image_shape", [])), "classes": recipe.info.get("classes"),
              "n_flipped": int(sum(bool(f) for f in flipped)) if flipped is not None else None}
    path = inf.run.save_json(SELF_INFLUENCE, result)
    lines = [f"top {len(top)} of {inf.n_train} training examples by self-influence ({inf.method}) -> {path} "
             f"({time.time() - t0:.1f} s)"]
    if auc is not None:
        hits = sum(r.get("flipped", False) for r in top)
        lines.append(f"flipped labels: {result['n_flipped']}; ROC AUC of self-influence as their detector {auc:.4f}; "
                     f"{hits} of these {len(top)} suspects are flipped")
    names = recipe.info.get("classes")
    for r in top:
        named = names and isinstance(r["label"], int) and 0 <= r["label"] < len(names)
        label = names[r["label"]] if named else _short(r["label"])
        text = f"  {_snippet(r['text'])}" if "text" in r else ""
        flag = " (flipped)" if r.get("flipped") else ""
        lines.append(f"  #{r['index']:<6d} label {label}{flag}  self-influence {r['score']:.4g}{text}")
    return {**run_facts(inf), **result, "path": str(path), "summary": "\n".join(lines)}
