"""Where a correction's ranking comes from: the run's checkpoint scores, the run's fit with the horizon filter of the
correction's own steps and lr, or ``unrolled`` through the correction's own fine-tuning schedule.

A correction of ``steps`` SGD steps at rate ``lr`` on the selection S (full batch over S, the run's weight decay) is
continued training ``θ_T(w)`` on ``(1/N) Σᵢ wᵢ ℓᵢ`` with ``wᵢ = N/|S|`` on S and 0 elsewhere. Linearised at ``w = 1``
(the same steps on the whole training set), ``ℓ_q(θ_T(w_S)) ≈ ℓ_q(θ_T(1)) − (1/|S|) Σ_{i∈S} sᵢ + (1/N) Σᵢ sᵢ`` with
``sᵢ = −N ∂ℓ_q(θ_T)/∂wᵢ``, the unrolled score over that schedule: its top-k is the k-subset that lowers the query's
loss most to first order (docs/science.md, 'Unrolled influence'). ``horizon`` takes the same T and η in the quadratic
model at the checkpoint, ``sᵢ = ∇ℓ_qᵀ f_T(H) ∇ℓᵢ`` with ``f_T(λ) = (1 − (1 − ηλ)^T)/λ``, on the run's fitted
eigenpairs (plus ``ηT ∇ℓ_q·∇ℓᵢ`` off them, for Arnoldi): no refit, one pass over the training gradients.
"""

from __future__ import annotations

from ..core.errors import ConfigError
from ..influence import Influence

RANKINGS = ("checkpoint", "horizon", "unrolled")


def unrolled_ranker(influence: Influence, steps: int, lr: float) -> Influence:
    """``method="unrolled"`` over ``steps`` full-batch SGD steps at ``lr`` from the run's checkpoint, with the run's
    shared options (weight decay, dtype, batch size); fitted, nothing recomputed at the checkpoint."""
    ranker = Influence(influence.task, influence.train, method="unrolled", horizon=int(steps), lr=float(lr),
                       optimizer="sgd", train_batch_size=None, progress=influence.show_progress,
                       **influence.shared_config)
    return ranker.fit()


def horizon_ranker(influence: Influence, steps: int, lr: float) -> Influence:
    """The run's fit with the horizon filter ``f_T`` at ``T = steps``, ``η = lr`` (the correction's own), without a
    refit; a ConfigError for a method whose fit has no horizon-aware variant."""
    est = influence.estimator
    if est is None or "horizon" not in est.options or "horizon" not in est.refit_free:
        raise ConfigError(f"rank_by='horizon' filters a fitted spectrum (method arnoldi or ekfac); this run is "
                          f"{influence.method!r}: use rank_by='checkpoint' or 'unrolled', or fit arnoldi")
    return influence.derive(horizon=int(steps), lr=float(lr))


def ranking_source(influence: Influence, rank_by: str, steps: int, lr: float) -> Influence:
    """The Influence whose ``top``/``scores`` rank the training examples for a correction."""
    if rank_by == "horizon":
        return horizon_ranker(influence, steps, lr)
    return influence if rank_by == "checkpoint" else unrolled_ranker(influence, steps, lr)
