"""Streamed top-k: the same answer as the full matrix, and peak memory that does not grow with N."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from ifscope.core.scores import top_k

ROOT = Path(__file__).resolve().parents[1]


def test_streamed_top_k_equals_top_k_of_the_full_matrix():
    gen = torch.Generator().manual_seed(0)
    q, t = torch.randn(6, 4, generator=gen), torch.randn(103, 4, generator=gen)
    chunks = [(torch.arange(s, min(s + 10, 103)), t[s:s + 10]) for s in range(0, 103, 10)]
    top = top_k(q, chunks, 7)
    full = q @ t.T
    assert torch.equal(top.proponents, full.topk(7, dim=1).indices)
    assert torch.equal(top.opponents, (-full).topk(7, dim=1).indices)
    torch.testing.assert_close(top.opponent_scores, -(-full).topk(7, dim=1).values)


def test_peak_memory_of_top_k_is_flat_in_n_while_the_full_matrix_grows():
    # each N in its own process (peak RSS is per process); the inputs are generated from their index
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, str(ROOT / "benchmarks" / "streaming.py"), "--n", "2000", "20000", "--queries", "500",
           "--materialise", "--json"]
    small, large = json.loads(subprocess.run(cmd, env=env, capture_output=True, text=True, check=True,
                                             timeout=600).stdout)
    grow_topk = large["peak_rss_topk_mb"] - small["peak_rss_topk_mb"]
    grow_full = large["peak_rss_scores_mb"] - small["peak_rss_scores_mb"]
    extra_matrix = large["matrix_mb"] - small["matrix_mb"]  # 500 × 18000 float32 ≈ 34 MB
    assert grow_topk < 8, (small, large)
    # the measurement can see growth: materialising the full matrix shows most of its size
    assert grow_full > 0.5 * extra_matrix, (small, large)
