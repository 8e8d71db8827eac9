"""Sizing a Krylov fit to a time budget: ``iterations × samples × c ≤ budget`` with ``c`` the measured seconds of one
curvature-vector product per example of the Hessian sample."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import torch

UNSIZED_FIT_BUDGET_S = 120.0  # the arnoldi fit's time budget for a recipe that gives no influence defaults
PROBE_EXAMPLES = 128  # examples of the Hessian sample the product cost is measured on
MIN_SAMPLES = 64  # the Hessian sample is not shrunk below this (fewer iterations instead)


@dataclass
class Plan:
    """What a budget chose: ``iterations`` products on a Hessian sample of ``hessian_samples`` examples, predicted to
    take ``predicted_s`` at ``per_product_s`` seconds per product and example (measured); ``reason`` says which limit
    decided."""

    iterations: int
    hessian_samples: int
    per_product_s: float
    predicted_s: float
    budget_s: float
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return (f"time budget {self.budget_s:g} s: {self.iterations} iterations on a Hessian sample of "
                f"{self.hessian_samples} examples (measured {self.per_product_s * 1e6:.1f} µs per product and "
                f"example; predicted {self.predicted_s:.2f} s; {self.reason})")


def measure_product(matmat, dim: int, block: int, examples: int, dtype: torch.dtype, device: Any) -> float:
    """Seconds per vector and per example of ``matmat`` on a block of ``block`` random vectors (after one untimed
    call that pays one-off set-up), the operator averaging over ``examples`` examples."""
    v = torch.randn(block, dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64).to(device, dtype)
    matmat(v[:1])
    t0 = time.perf_counter()
    out = matmat(v)
    if out.is_cuda:
        torch.cuda.synchronize(out.device)
    return (time.perf_counter() - t0) / (block * examples)


def plan(budget_s: float, per_product_s: float, n: int, iterations: int, rank: int,
         samples: int | None = None) -> Plan:
    """The largest fit within ``budget_s``: the asked ``iterations`` on as many of ``samples`` (default all ``n``)
    examples as fit; below ``MIN_SAMPLES`` examples, fewer iterations instead (never fewer than ``rank``)."""
    most = min(n, samples or n)

    def cost(m: int, s: int) -> float:
        return m * s * per_product_s

    if cost(iterations, most) <= budget_s:
        return Plan(iterations, most, per_product_s, cost(iterations, most), budget_s, "everything asked fits")
    floor = min(most, MIN_SAMPLES)
    s = int(budget_s / (iterations * per_product_s))
    if s >= floor:
        return Plan(iterations, s, per_product_s, cost(iterations, s), budget_s,
                    f"the Hessian sample shrunk to fit {iterations} iterations")
    m = max(rank, int(budget_s / (floor * per_product_s)))
    reason = (f"the sample at its floor of {floor} and iterations cut to fit" if m > rank else
              f"over budget: {rank} iterations (the rank) on {floor} examples is the least that is run")
    return Plan(min(m, iterations), floor, per_product_s, cost(min(m, iterations), floor), budget_s, reason)
