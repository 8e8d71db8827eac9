"""Correcting mis-predictions: a few optimiser steps on the training examples most influential on a query.

For a mis-predicted query ``q``, ``score(q, i) = ∇ℓ(q)ᵀ H⁻¹ ∇ℓ(zᵢ)`` ranks training examples; descending on the
top-k proponents (up-weighting them) and/or ascending on the top-k opponents (down-weighting them) should lower
``ℓ(q)`` by about ``Σ score / N`` per unit of weight. What a mis-prediction is comes from the task's judge
(:mod:`ifscope.core.judges`). Each correction starts from the checkpoint the influence was fitted at, so corrections
are independent and the caller's model is never touched. Baselines spend the same budget (k, steps, lr) on random
training examples.

Modules: ``options`` (the budget), ``judged`` (predictions as the judge sees them), ``selection`` (who is stepped
on), ``finetune`` (the steps, the guard), ``run`` (``correct`` itself).
"""

from ..correction import Correction, Outcome, QueryCorrection, save_params
from .judged import Judged, evaluate, judge_for
from .options import DEFAULT_LR, GUARD_BATCH, LR_FRACTION, METHODS, STRATEGIES, CorrectOptions
from .run import correct, default_lr, split_mispredicted

__all__ = ["DEFAULT_LR", "GUARD_BATCH", "LR_FRACTION", "METHODS", "STRATEGIES", "CorrectOptions", "Correction",
           "Judged", "Outcome", "QueryCorrection", "correct", "default_lr", "evaluate", "judge_for", "save_params",
           "split_mispredicted"]
