"""ABIF's cost against the floor: one forward+backward pass over the training set at the same batch size.

For each model it times, on the same training set and batch size:
  floor     one training epoch's forward + backward (autograd on the nn.Module, no optimiser step)
  fit       the one-off Arnoldi fit (reported in HVPs and seconds, not part of the ratio)
  embed     the training-set embeddings P·Λ⁻¹ by each projection path (jvp, vmap, and what auto picks)
  score     top-k proponents/opponents of the queries over the whole training set, streamed
and prints (embed + score) / floor. ``--scaling`` repeats embed + score for growing N on synthetic inputs.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/floor.py
"""

from __future__ import annotations

import argparse
import functools
import json
import time

import torch
import torch.nn.functional as F
from torch import nn

import ifscope
from ifscope.recipes.digits import digits_data

MODELS = {"mlp-2k": 32, "mlp-120k": 1600}  # hidden width of the digits MLP 64 → h → 10


def mlp(hidden: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, hidden), nn.Tanh(), nn.Linear(hidden, 10))


def floor_seconds(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int, repeats: int = 7) -> float:
    """Best of ``repeats`` timings of one epoch of forward + backward at ``batch_size``."""
    best = float("inf")
    for _ in range(repeats):  # best of several: the machine may be shared
        t0 = time.perf_counter()
        for s in range(0, len(x), batch_size):
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(x[s:s + batch_size]), y[s:s + batch_size]).backward()
        best = min(best, time.perf_counter() - t0)
    model.zero_grad(set_to_none=True)
    return best


def timed(fn, repeats: int = 5):
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def measure(name: str, hidden: int, train, queries, batch_size: int, rank: int, iterations: int, k: int,
            hessian_samples: int | None) -> dict:
    model = mlp(hidden)
    x, y = train
    # a short full-batch fit so the checkpoint is a trained model, not a random one
    res = ifscope.truth.training.train(ifscope.classification(model), train, steps=200, lr=0.02, optimizer="adam",
                                 weight_decay=1e-3)
    ifscope.truth.training.load_params(model, res.params)
    task = ifscope.classification(model)
    n_params = sum(p.numel() for p in model.parameters())
    floor = floor_seconds(model, x, y, batch_size)
    row: dict = {"model": name, "params": n_params, "n_train": len(x), "batch_size": batch_size, "floor_s": floor}
    t0 = time.perf_counter()
    inf = ifscope.Influence(task, train, method="arnoldi", rank=rank, iterations=iterations, weight_decay=1e-3,
                            batch_size=batch_size, hessian_samples=hessian_samples, progress=False).fit()
    row.update(fit_s=time.perf_counter() - t0, fit_hvps=inf.estimator.hvp_calls, rank=len(inf.estimator.eigenvalues))
    inf.cache_budget = 0  # every call embeds the training set anew: what is timed is the streamed path
    for path in ("jvp", "vmap", "auto"):
        inf.estimator.ctx.projection = path
        row[f"embed_{path}_s"], _ = timed(inf.train_embeddings)
    row["auto_picks"] = inf.estimator.path_choice.path  # measured on the first batch of the "auto" pass
    row["rule_picks"] = ifscope.core.projection.choose_path("auto", batch_size, inf.estimator.ctx.space.dim, 4,
                                                       rank=row["rank"])  # the fixed rank threshold it replaced
    row["score_topk_s"], _ = timed(lambda: inf.top(queries, k=k))  # includes embedding the training set
    row["query_embed_s"], _ = timed(lambda: inf.query_embeddings(queries))
    row["ratio_embed_auto"] = row["embed_auto_s"] / floor
    row["ratio_embed_and_score"] = row["score_topk_s"] / floor
    return row


def path_sweep(widths: list[int], ranks: list[int], batch_size: int, n: int = 1000) -> list[dict]:
    """Seconds to project ``n`` examples on a random ``rank``-row basis by each path, against the floor."""
    from ifscope.core.projection import jvp_projections, per_example_grads
    x, y = synthetic(n)
    rows = []
    for hidden in widths:
        model = mlp(hidden)
        task = ifscope.classification(model)
        params, rest = task.state()
        dim = sum(p.numel() for p in params.values())
        floor = floor_seconds(model, x, y, batch_size)
        for k in ranks:
            basis = torch.randn(k, dim)
            paths = {"jvp": functools.partial(jvp_projections, task, params, rest, basis=basis),
                     "vmap": lambda b, t=task, p=params, r=rest, u=basis: per_example_grads(t, p, r, b) @ u.T}
            row = {"params": dim, "rank": k, "floor_s": floor}
            for name, fn in paths.items():
                row[name], _ = timed(lambda fn=fn: [fn((x[s:s + batch_size], y[s:s + batch_size]))
                                              for s in range(0, n, batch_size)])
            row["rule"] = ifscope.core.projection.choose_path("auto", batch_size, dim, 4, rank=k)  # fixed threshold
            t0 = time.perf_counter()
            row["auto"] = ifscope.core.projection.measure_paths(task, params, rest, (x[:batch_size], y[:batch_size]),
                                                           basis, batch_size)[0].path
            row["probe_s"] = time.perf_counter() - t0
            rows.append(row)
    return rows


def synthetic(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, 64, generator=gen), torch.randint(0, 10, (n,), generator=gen)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--rank", type=int, default=20)
    ap.add_argument("--iterations", type=int, default=60)
    ap.add_argument("--hessian-samples", type=int, default=512)
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--models", nargs="*", default=list(MODELS))
    ap.add_argument("--scaling", nargs="*", type=int, default=[],
                    help="also time embed + top-k on synthetic inputs of these N (mlp-2k)")
    ap.add_argument("--paths", action="store_true", help="only sweep the jvp/vmap projection paths over widths and ranks")
    ap.add_argument("--widths", nargs="*", type=int, default=[32, 128, 512, 1600], help="MLP widths for --paths")
    ap.add_argument("--ranks", nargs="*", type=int, default=[10, 20, 50, 100], help="basis sizes for --paths")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.paths:
        rows = path_sweep(args.widths, args.ranks, args.batch_size)
        print(json.dumps(rows, indent=2) if args.json else
              "| params | rank | floor s | jvp s | vmap s | faster | rank rule picks | measured picks (probe s) |\n"
              "|---|---|---|---|---|---|---|---|\n" +
              "\n".join(f"| {r['params']:,} | {r['rank']} | {r['floor_s']:.4f} | {r['jvp']:.4f} | {r['vmap']:.4f} "
                        f"| {'jvp' if r['jvp'] < r['vmap'] else 'vmap'} | {r['rule']} | {r['auto']} "
                        f"({r['probe_s']:.3f}) |" for r in rows))
        return
    train, test, _ = digits_data(1000, 300)
    queries = (test[0][: args.queries], test[1][: args.queries])
    rows = [measure(m, MODELS[m], train, queries, args.batch_size, args.rank, args.iterations, args.k,
                    args.hessian_samples) for m in args.models]
    for n in args.scaling:
        rows.append(measure("mlp-2k synthetic", MODELS["mlp-2k"], synthetic(n), queries, args.batch_size,
                            args.rank, args.iterations, args.k, args.hessian_samples))
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), batch size {args.batch_size}, "
          f"ABIF rank {args.rank} from {args.iterations} Arnoldi iterations on {args.hessian_samples} examples")
    print("| model | params | N | floor s | fit s (HVPs) | embed jvp s | embed vmap s | auto | embed (auto)/floor "
          "| embed+top-k s | (embed+top-k)/floor |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['params']:,} | {r['n_train']:,} | {r['floor_s']:.3f} | {r['fit_s']:.2f} "
              f"({r['fit_hvps']}) | {r['embed_jvp_s']:.3f} | {r['embed_vmap_s']:.3f} | {r['auto_picks']} "
              f"| {r['ratio_embed_auto']:.2f}× | {r['score_topk_s']:.3f} | {r['ratio_embed_and_score']:.2f}× |")


if __name__ == "__main__":
    main()
