"""Peak memory of streamed top-k against N: the training set is embedded batch by batch and never held whole.

The inputs are synthetic and made on the fly from their index, so the dataset itself takes no memory and any
growth with N would be ifscope's. Each N runs in a fresh process (peak RSS is per process):

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/streaming.py --n 10000 100000

``--materialise`` also computes the full ``[queries, N]`` score matrix, to show what streaming saves.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset


class Synthetic(Dataset):
    """``n`` digits-shaped examples ``(x ∈ [0,1)^64, y ∈ 0..9)``, each a deterministic function of its index."""

    def __init__(self, n: int, features: int = 64, classes: int = 10):
        self.n, self.classes = n, classes
        self.freq = torch.linspace(0.1, 3.0, features)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        x = 0.5 + 0.5 * torch.sin(self.freq * (i + 1) * 0.618)
        return x, torch.tensor(i % self.classes)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def measure(n: int, queries: int, k: int, rank: int, materialise: bool) -> dict:
    import ifscope
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10))
    train = Synthetic(n)
    q = Synthetic(queries)
    inf = ifscope.Influence(ifscope.classification(model), train, method="arnoldi", rank=rank, iterations=2 * rank,
                            hessian_samples=256, batch_size=256, weight_decay=1e-3, progress=False)
    inf.fit()
    inf.cache_budget = 0  # stream: no copy of the training embeddings is kept between calls
    before = peak_rss_mb()
    t0 = time.perf_counter()
    top = inf.top(q, k=k)
    row = {"n": n, "queries": queries, "k": k, "rss_before_mb": before, "topk_s": time.perf_counter() - t0,
           "peak_rss_topk_mb": peak_rss_mb(), "best": int(top.proponents[0, 0])}
    if materialise:
        t0 = time.perf_counter()
        s = inf.scores(q)
        row.update(scores_s=time.perf_counter() - t0, peak_rss_scores_mb=peak_rss_mb(),
                   matrix_mb=s.numel() * s.element_size() / 2**20)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--rank", type=int, default=10)
    ap.add_argument("--materialise", action="store_true")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # measure in this process
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.one:
        print(json.dumps(measure(args.n[0], args.queries, args.k, args.rank, args.materialise)))
        return
    rows = []
    for n in args.n:
        cmd = [sys.executable, __file__, "--one", "--n", str(n), "--queries", str(args.queries), "-k", str(args.k),
               "--rank", str(args.rank)] + (["--materialise"] if args.materialise else [])
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print("| N | queries × k | top-k s | peak RSS before top-k MB | peak RSS after top-k MB |"
          + (" full matrix MB | peak RSS after full matrix MB |" if args.materialise else ""))
    print("|---|---|---|---|---|" + ("---|---|" if args.materialise else ""))
    for r in rows:
        print(f"| {r['n']:,} | {r['queries']} × {r['k']} | {r['topk_s']:.1f} | {r['rss_before_mb']:.0f} | "
              f"{r['peak_rss_topk_mb']:.0f} |" + (f" {r['matrix_mb']:.0f} | {r['peak_rss_scores_mb']:.0f} |"
                                                  if args.materialise else ""))


if __name__ == "__main__":
    main()
