"""The exact first-order references the divergence and first-order checks share, built once on the ground truth's
schedule: ``unrolled`` (the exact derivative of that continued training, SCIENCE.md §6) and ``horizon`` (the same
linear response with the Hessian and the gradients frozen at the checkpoint)."""

from __future__ import annotations

from ..fade import reference_methods
from ..influence import Influence
from .common import Probe
from .truth import schedule


def references(p: Probe) -> dict[str, Influence]:
    """``{"unrolled": ..., "horizon": ...}`` at the longest T asked about, in the ground truth's precision."""
    if "references" not in p.cache:
        p.cache["references"] = reference_methods(p.inf, ("unrolled", "horizon"), schedule(p), max(p.steps),
                                                  krylov=p.krylov, dtype=p.truth_dtype,
                                                  hessian_samples=p.reference_hessian_samples)
    return p.cache["references"]
