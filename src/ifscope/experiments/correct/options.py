"""The budget of a correction and which examples and queries take part: :class:`CorrectOptions`."""

from __future__ import annotations

from dataclasses import dataclass

from ...core.errors import ConfigError
from ..correct_ranking import RANKINGS

STRATEGIES = ("proponents", "opponents", "both")
METHODS = ("influence", "random", "random_same_class", "query_itself")
# Defaults chosen by benchmarks/correct_sweep.py on a development model (digits-mlp, seed 1); docs/correct.md.
# Built-in recipes declare their own in Recipe.defaults["correct"] (docs/experiments_correction.md).
DEFAULT_LR = 0.1
# lr=None takes min(DEFAULT_LR, LR_FRACTION / λ_max): the top proponents of a mistake are the training examples with
# the largest gradients, and their own loss is several times sharper than the mean training loss (digits-cnn: 515
# against 84), so steps at 1/λ_max of the training Hessian diverge on them; a quarter of it does not.
LR_FRACTION = 0.25
GUARD_BATCH = 512  # the guard is evaluated after every step, in one pass where it fits


@dataclass
class CorrectOptions:
    """The budget of one correction, the same for every selection rule: ``steps`` SGD steps at rate ``lr`` on ``k``
    selected training examples (plus ``anchor`` random others), stopped before more than ``guard_drop`` of ``guard``
    training examples turn wrong, and which examples and queries take part. ``tolerance`` (regression) makes a
    mistake ``|ŷ − y| > tolerance``, overriding the task's own."""

    k: int = 32
    steps: int = 30
    lr: float | None = None
    strategy: str = "proponents"
    anchor: int = 200
    stop_when_fixed: bool = False
    guard: int = 0
    guard_drop: float = 0.01
    revert_unfixed: bool = False
    baselines: tuple[str, ...] = METHODS[1:]
    group: bool = False
    include_correct: bool = False
    seed: int = 0
    rank_by: str = "checkpoint"  # or "horizon"/"unrolled": over this correction's own steps and lr (correct_ranking)
    tolerance: float | None = None

    def validate(self, n_train: int) -> CorrectOptions:
        """Raise ConfigError on an option that cannot work on ``n_train`` training examples; returns ``self``."""
        for name in ("anchor", "k", "steps", "seed", "guard"):
            value = getattr(self, name)
            low = 1 if name in ("k", "steps") else 0
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                what = "a positive" if low else "a non-negative"
                raise ConfigError(f"{name} must be {what} integer, got {value!r}")
        if self.rank_by not in RANKINGS:
            raise ConfigError(f"rank_by must be one of {RANKINGS}, got {self.rank_by!r}")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        limit = n_train // 2 if self.strategy == "both" else n_train
        if self.k > limit:
            raise ConfigError(f"k={self.k} exceeds the {limit} training examples available to strategy "
                              f"{self.strategy!r}; lower k")
        for name in ("lr", "tolerance"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0):
                raise ConfigError(f"{name} must be a positive number (or None for the default), got {value!r}")
        if isinstance(self.guard_drop, bool) or not isinstance(self.guard_drop, (int, float)) \
                or not 0 <= self.guard_drop < 1:
            raise ConfigError(f"guard_drop must be a fraction in [0, 1), got {self.guard_drop!r}")
        if self.guard > n_train:
            raise ConfigError(f"guard={self.guard} exceeds the {n_train} training examples; lower it")
        unknown = sorted(set(self.baselines) - set(METHODS[1:]))
        if unknown:
            raise ConfigError(f"unknown baseline(s) {unknown}; choose from {list(METHODS[1:])}")
        return self
