"""On a CUDA machine: CUDA scores equal CPU scores (float64, small model), and tweets-minilm timed at 10k examples.

    python benchmarks/gpu.py                          # check, then tweets-minilm (last block + head) on 10k tweets
    python benchmarks/gpu.py --blocks all             # influence over all 22.7M parameters
    python benchmarks/gpu.py --check-only

Part 1 scores the 57-parameter float64 MLP of tests/test_cuda.py with each method on CPU and on CUDA and prints the largest difference
relative to the largest score (it fails above 1e-8). Part 2 loads the tweets-minilm recipe (weights from the cache,
else fine-tuned first), moves the model to the GPU, takes ``--n-train`` tweets of the corpus split as the training
set, and times the fit, the training-set embeddings and the top-k of ``--n-queries`` test tweets, with the peak GPU
memory. It exits with status 2 and says so when no CUDA device is present.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

import ifscope

ROOT = Path(__file__).resolve().parents[1]


def check() -> list[dict]:
    """Per method: the largest |CUDA − CPU| score difference over the largest |score|, on the model of the CUDA
    tests (tests/test_cuda.py)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from test_cuda import METHODS, problem
    model, train, test = problem()
    rows = []
    for method, options in METHODS.items():
        out = {}
        for device in ("cpu", "cuda"):
            inf = ifscope.Influence(ifscope.classification(model), train, method=method, dtype=torch.float64,
                                    damping=1e-3, weight_decay=1e-2, batch_size=16, progress=False, device=device,
                                    **options)
            out[device] = (inf.scores(test).cpu(), inf.self_influence().cpu())
        diff = max(float((a - b).abs().max() / b.abs().max()) for a, b in zip(out["cuda"], out["cpu"]))
        rows.append({"method": method, "relative_difference": diff, "ok": diff < 1e-8})
    return rows


def timed(fn):
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    torch.cuda.synchronize()
    return out, time.perf_counter() - t0


def tweets(n_train: int, n_queries: int, blocks: str, rank: int, iterations: int, hessian_samples: int,
           batch_size: int) -> dict:
    from ifscope.recipes import load_recipe
    from ifscope.recipes.tweets import tweets_texts
    recipe, load_s = timed(lambda: load_recipe("tweets-minilm"))
    model = recipe.model.cuda()
    if blocks == "all":
        for p in model.parameters():
            p.requires_grad_(True)
        task = ifscope.hf_classification(model)
    else:
        task = ifscope.hf_classification(model, last_blocks=int(blocks))
    (texts, labels), _ = tweets_texts(n_train=n_train, n_test=400)
    train = ifscope.encode_texts(recipe.info["tokenizer"], texts, labels, max_length=48)
    queries = {k: v[:n_queries] for k, v in recipe.test.items()}
    inf = ifscope.Influence(task, train, rank=rank, iterations=iterations, hessian_samples=hessian_samples,
                            batch_size=batch_size, weight_decay=recipe.info["weight_decay"], progress=False)
    torch.cuda.reset_peak_memory_stats()
    _, fit_s = timed(inf.fit)
    _, embed_s = timed(inf.train_embeddings)
    top, top_s = timed(lambda: inf.top(queries, k=5))
    dim = sum(p.numel() for n, p in model.named_parameters() if n in task.parameter_names)
    return {"n_train": n_train, "parameters": dim, "blocks": blocks, "rank": rank, "iterations": iterations,
            "hessian_samples": hessian_samples, "batch_size": batch_size, "path": inf.estimator.path_choice.path,
            "load_s": round(load_s, 1), "fit_s": round(fit_s, 2), "embed_s": round(embed_s, 2),
            "examples_per_s": round(n_train / embed_s, 1), "top_s": round(top_s, 2),
            "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
            "first_proponents": [texts[i][:60] for i in top.proponents[0].tolist()[:3]],
            "device": torch.cuda.get_device_name()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check-only", action="store_true")
    p.add_argument("--n-train", type=int, default=10_000)
    p.add_argument("--n-queries", type=int, default=100)
    p.add_argument("--blocks", default="1", help="'all' (every parameter) or N: the last N blocks and the head")
    p.add_argument("--rank", type=int, default=32)
    p.add_argument("--iterations", type=int, default=64)
    p.add_argument("--hessian-samples", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=128)
    args = p.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device (torch.cuda.is_available() is False): nothing measured", file=sys.stderr)
        return 2
    rows = check()
    for r in rows:
        print(f"{r['method']:8s} CUDA vs CPU, float64: max relative difference {r['relative_difference']:.2e} "
              f"{'ok' if r['ok'] else 'FAILED'}")
    if not all(r["ok"] for r in rows):
        return 1
    if not args.check_only:
        print(json.dumps(tweets(args.n_train, args.n_queries, args.blocks, args.rank, args.iterations,
                                args.hessian_samples, args.batch_size), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
