"""Where a correction's ranking comes from: the run's checkpoint scores, or ``unrolled`` through the correction's own
fine-tuning schedule.

A correction of ``steps`` SGD steps at rate ``lr`` on the selection S (full batch over S, the run's weight decay) is
continued training ``θ_T(w)`` on ``(1/N) Σᵢ wᵢ ℓᵢ`` with ``wᵢ = N/|S|`` on S and 0 elsewhere. Linearised at ``w = 1``
(the same steps on the whole training set), ``ℓ_q(θ_T(w_S)) ≈ ℓ_q(θ_T(1)) − (1/|S|) Σ_{i∈S} sᵢ + (1/N) Σᵢ sᵢ`` with
``sᵢ = −N ∂ℓ_q(θ_T)/∂wᵢ``, the unrolled score over that schedule: its top-k is the k-subset that lowers the query's
loss most to first order (docs/science.md, 'Unrolled influence').
"""

from __future__ import annotations

from ..influence import Influence

RANKINGS = ("checkpoint", "unrolled")


def unrolled_ranker(influence: Influence, steps: int, lr: float) -> Influence:
    """``method="unrolled"`` over ``steps`` full-batch SGD steps at ``lr`` from the run's checkpoint, with the run's
    shared options (weight decay, dtype, batch size); fitted, nothing recomputed at the checkpoint."""
    ranker = Influence(influence.task, influence.train, method="unrolled", horizon=int(steps), lr=float(lr),
                       optimizer="sgd", train_batch_size=None, progress=influence.show_progress,
                       **influence.shared_config)
    return ranker.fit()


def ranking_source(influence: Influence, rank_by: str, steps: int, lr: float) -> Influence:
    """The Influence whose ``top``/``scores`` rank the training examples for a correction."""
    return influence if rank_by == "checkpoint" else unrolled_ranker(influence, steps, lr)
