"""End to end on a real model: build (or load from cache) a recipe, fit ABIF, score, rank and self-score.

    python benchmarks/models.py digits-cnn
    python benchmarks/models.py tweets-minilm --last-blocks 1

Prints fine-tune time, test accuracy, the selected parameter count, ABIF fit time, scoring times, the top
proponents/opponents of a few test examples (as text for text recipes) and the highest self-influence examples.
Set IFSCOPE_CACHE to an empty directory to measure fine-tuning from scratch.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

import ifscope
from ifscope.core.data import as_dataset, take
from ifscope.core.files import write_json
from ifscope.recipes import load_recipe


def describe(recipe, split: str, i: int, width: int = 90) -> str:
    data = recipe.train if split == "train" else recipe.test
    label = int(data["labels"][i] if isinstance(data, dict) else data[1][i])
    name = recipe.info.get("classes", [])[label] if recipe.info.get("classes") else str(label)
    texts = recipe.info.get("texts")
    if texts:
        text = " ".join(texts[split][i].split())
        return f"[{name}] {text[:width]}{'...' if len(text) > width else ''}"
    return f"[{name}]"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("recipe", help="built-in name or FILE.py:FUNCTION")
    p.add_argument("--last-blocks", type=int, default=None,
                   help="take influence over the last N transformer blocks + head (default: the recipe's task)")
    p.add_argument("--rank", type=int, default=20)
    p.add_argument("--iterations", type=int, default=60)
    p.add_argument("--hessian-samples", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--projection", default="auto", choices=["auto", "jvp", "vmap"])
    p.add_argument("--queries", type=int, default=3)
    p.add_argument("-k", type=int, default=3)
    p.add_argument("--recipe-args", default="{}", help='JSON keyword arguments for the recipe, e.g. \'{"n_train": 500}\'')
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = p.parse_args()
    torch.manual_seed(0)

    t0 = time.time()
    recipe = load_recipe(args.recipe, **json.loads(args.recipe_args))
    build = time.time() - t0
    task = recipe.task if args.last_blocks is None else ifscope.hf_classification(recipe.model,
                                                                                 last_blocks=args.last_blocks)
    selected = sum(p.numel() for n, p in recipe.model.named_parameters() if n in set(task.parameter_names))
    total = sum(p.numel() for p in recipe.model.parameters())
    inf = ifscope.Influence(task, recipe.train, method="arnoldi", rank=args.rank, iterations=args.iterations,
                            hessian_samples=args.hessian_samples, batch_size=args.batch_size,
                            projection=args.projection, weight_decay=recipe.info.get("weight_decay", 0.0))
    t = time.time()
    inf.fit()
    fit_s = time.time() - t
    queries = take(as_dataset(recipe.test), range(args.queries))
    t = time.time()
    top = inf.top(queries, k=args.k)
    top_s = time.time() - t
    t = time.time()
    selfinf = inf.self_influence()
    self_s = time.time() - t
    eig = inf.estimator.eigenvalues
    figures = {
        "recipe": args.recipe, "n_train": inf.n_train, "n_test": len(as_dataset(recipe.test)),
        "parameters": total, "selected_parameters": selected, "last_blocks": args.last_blocks,
        "fine_tune_seconds": recipe.info.get("train_seconds"), "from_cache": recipe.info.get("cached"),
        "build_seconds": build, "test_accuracy": recipe.info.get("test_accuracy"),
        "iterations": args.iterations, "rank": len(eig), "hessian_samples": args.hessian_samples,
        "eigenvalues": [float(eig.max()), float(eig.min())], "fit_seconds": fit_s,
        "top_seconds": top_s, "self_influence_seconds": self_s, "threads": torch.get_num_threads(),
    }
    print(json.dumps(figures, indent=1))
    for q in range(args.queries):
        print(f"\nquery {q}: {describe(recipe, 'test', q)}")
        for kind, idx, sc in (("+", top.proponents[q], top.proponent_scores[q]),
                              ("-", top.opponents[q], top.opponent_scores[q])):
            for i, s in zip(idx.tolist(), sc.tolist()):
                print(f"  {kind} {s:+.3g}  #{i} {describe(recipe, 'train', i)}")
    print("\nhighest self-influence (candidate mislabels / outliers):")
    for i in selfinf.argsort(descending=True)[:5].tolist():
        print(f"  {float(selfinf[i]):.3g}  #{i} {describe(recipe, 'train', i)}")
    if args.json:
        write_json(args.json, figures)


if __name__ == "__main__":
    main()
