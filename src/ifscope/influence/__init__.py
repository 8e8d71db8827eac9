"""``Influence``: fit an estimator at a checkpoint (``fitting``), then score, rank and self-score examples with it
(``scoring``)."""

from .fitting import CACHE_BUDGET, FIT_FIELDS, SPECTRUM, SPECTRUM_ITERATIONS, SPEED_FIELDS, Influence

__all__ = ["CACHE_BUDGET", "FIT_FIELDS", "SPECTRUM", "SPECTRUM_ITERATIONS", "SPEED_FIELDS", "Influence"]
