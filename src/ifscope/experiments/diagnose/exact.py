"""The exact first-order references the divergence and first-order checks share, built once on the ground truth's
schedule: ``unrolled`` (the exact derivative of that continued training, docs/science.md, 'Unrolled influence') and ``horizon`` (the same
linear response with the Hessian and the gradients frozen at the checkpoint; on minibatches ``horizon_schedule``,
which sums it over the batches that hold each example, so that the two differ by the freezing alone)."""

from __future__ import annotations

from ...influence import Influence
from ..fade import _full_batch, reference_methods
from .common import Probe
from .truth import schedule


def references(p: Probe) -> dict[str, Influence]:
    """``{"unrolled": ..., "horizon": ...}`` at the longest T asked about, in the ground truth's precision."""
    if "references" not in p.cache:
        s = schedule(p)
        frozen = "horizon" if _full_batch(s, p.inf.n_train) else "horizon_schedule"
        refs = reference_methods(p.inf, ("unrolled", frozen), s, max(p.steps), krylov=p.krylov, dtype=p.truth_dtype,
                                 hessian_samples=p.reference_hessian_samples)
        p.cache["references"] = {"unrolled": refs["unrolled"], "horizon": refs[frozen]}
    return p.cache["references"]
