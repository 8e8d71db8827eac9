"""The options of each experiment command: types, library defaults, help text and ``validate()``.

The command line is generated from these fields, a recipe's ``defaults[command]`` is checked against them, and the
one resolver (:mod:`ifscope.options.resolve`) fills each from the flag, the run's manifest, the recipe or the
library default, recording which. Three step sizes are three names: the estimator's horizon step (``lr`` of the
method, flag ``--horizon-lr``), the continued training's (``train_lr``) and the correction's (``--correct-lr``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core.errors import ConfigError
from .fields import choice, list_of, non_negative, opt, positive_int, positive_number

FADE_MODES = ("remove", "upweight")
IDS_FROM = ("random", "first_batch")
FLOAT_DTYPES = ("float64", "float32")
BATCHINGS = ("auto", "vmap", "loop")
RETRAIN = ("scratch", "continue")


def _train_batch_size(value: Any) -> int | None:
    """0 and None both mean full-batch gradient descent."""
    positive_int("train_batch_size", value or None, allow_none=True)
    return value or None


@dataclass
class ContinuedTraining:
    """How the ground truth continues training from the checkpoint (shared by fade and diagnose)."""

    train_lr: float | None = opt(None, "step size of the continued training (default 1/λ_max of the run's spectrum)")
    train_batch_size: int | None = opt(None, "minibatch SGD for the continued training (0 or default: full-batch "
                                             "gradient descent)")
    truth_dtype: str = opt("float64", "precision of the ground-truth replays (float64: changes near the float32 "
                                      "floor are measured)", choices=FLOAT_DTYPES)
    krylov: int = opt(100, "Lanczos steps for the horizon method's query vectors")
    reference_hessian_samples: int | None = opt(None, "training examples the reference methods' curvature "
                                                      "averages over (default: the run's)")
    budget_s: float | None = opt(None, "seconds of replays (ground truth and unrolled) the sizes left out (ids, "
                                       "queries, horizons, reference precision) are cut to, from one measured replay "
                                       "step and one unrolled step (default 60)")

    def validate(self) -> None:
        positive_number("train_lr", self.train_lr, allow_none=True)
        self.train_batch_size = _train_batch_size(self.train_batch_size)
        choice("truth_dtype", self.truth_dtype, FLOAT_DTYPES)
        positive_int("krylov", self.krylov)
        positive_int("reference_hessian_samples", self.reference_hessian_samples, allow_none=True)
        positive_number("budget_s", self.budget_s, allow_none=True)


@dataclass
class FadeOptions(ContinuedTraining):
    """``ifscope fade``: correlate each method's predicted change of each query loss with the actual change after T
    steps of continued training with each of ``n_ids`` training examples removed or up-weighted by ``epsilon``."""

    steps: list[int] = opt([1, 3, 10, 30, 100, 300, 1000], "horizons T (comma- or space-separated)", factory=True)
    mode: str = opt("remove", "remove the ids, or up-weight them by ε", choices=FADE_MODES)
    epsilon: float = opt(0.01, "up-weighting: the example's weight becomes 1 + ε")
    n_ids: int = opt(40, "training examples re-weighted (a seeded sample)")
    n_queries: int = opt(20, "test examples whose loss is tracked")
    ids_from: str = opt("random", "where the re-weighted ids are sampled: the whole training set (random) or the "
                                  "first minibatch of the continued training (every id acts from T = 1)",
                        choices=IDS_FROM)
    methods: list[str] | None = opt(None, "'run' (the fitted estimator) and reference methods (horizon, "
                                          "arnoldi_horizon, exact, graddot, tracin, unrolled, horizon_schedule, "
                                          "arnoldi); default: run and every reference that costs no refit")
    reference_dtype: str | None = opt(None, "precision of the reference methods (default float64 up to 200k "
                                            "parameters, else the run's)", choices=FLOAT_DTYPES)
    batching: str = opt("auto", "replicas of the ground truth and rows of curvature products by vmap or a loop "
                                "(auto: the faster, measured)", choices=BATCHINGS)
    validity_train: int = opt(2000, "training examples over which the horizon of validity ranks scores (a seeded "
                                    "sample; 0: all of them)")

    def validate(self) -> None:
        super().validate()
        self.steps = sorted(set(list_of("steps", self.steps, int, low=1)))
        non_negative("validity_train", self.validity_train)
        choice("mode", self.mode, FADE_MODES)
        positive_number("epsilon", self.epsilon)
        positive_int("n_ids", self.n_ids)
        positive_int("n_queries", self.n_queries)
        if self.n_ids < 2:
            raise ConfigError("n_ids must be at least 2 (a correlation across ids)")
        choice("ids_from", self.ids_from, IDS_FROM)
        self.methods = list_of("methods", self.methods, str, allow_none=True)
        if self.reference_dtype is not None:
            choice("reference_dtype", self.reference_dtype, FLOAT_DTYPES)
        choice("batching", self.batching, BATCHINGS)


@dataclass
class DiagnoseOptions(ContinuedTraining):
    """``ifscope diagnose``: measure the five assumptions behind the run's scores at its checkpoint."""

    checks: list[str] | None = opt(None, "which assumptions to check (default: all)")
    n_queries: int = opt(20, "test examples scored and tracked")
    n_train: int = opt(200, "training examples scored for the agreement figures")
    n_ids: int = opt(40, "training examples removed for the ground truth (divergence and first order)")
    epsilon_ids: int = opt(8, "the first that many of them also up-weighted by each ε")
    steps: list[int] = opt([1, 3, 10, 30, 100, 300], "horizons T of continued training", factory=True)
    epsilons: list[float] = opt([0.1, 1.0], "up-weighting sizes ε checked for linearity, besides removal",
                                factory=True)
    n_checkpoints: int = opt(1, "latest earlier checkpoints (the recipe's info['checkpoints']) to compare with")
    refit_variants: bool = opt(False, "also run the agreement checks that need other fits (float64, rank 2k, half "
                                      "samples, earlier checkpoints) of a method that keeps a spectrum")

    def validate(self) -> None:
        super().validate()
        self.checks = list_of("checks", self.checks, str, allow_none=True)
        for name in ("n_queries", "n_train", "n_ids"):
            positive_int(name, getattr(self, name))
        non_negative("epsilon_ids", self.epsilon_ids)
        non_negative("n_checkpoints", self.n_checkpoints)
        self.steps = sorted(set(list_of("steps", self.steps, int, low=1)))
        self.epsilons = list_of("epsilons", self.epsilons, float)


@dataclass
class Evaluation:
    """Retraining shared by ``lds`` and ``counterfactual``: from scratch on each subset, or continued."""

    retrain: str = opt("scratch", "scratch: the recipe's own training on each subset, averaged over seeds; "
                                  "continue: steps of full-batch gradient descent (lr 1/λ_max) from the checkpoint, "
                                  "others weighted 0", choices=RETRAIN)
    steps: int = opt(100, "continue: steps of continued training (and the horizon of the horizon method)")
    seeds: int = opt(1, "scratch: trainings per subset")
    queries: int = opt(50, "test examples evaluated (a seeded sample; at most the test set)")
    train_batch_size: int | None = opt(None, "continue: seeded minibatches of this size, each subset's examples "
                                             "weighted 1 and the others 0 (0 or default: full-batch gradient descent)")

    def validate(self) -> None:
        choice("retrain", self.retrain, RETRAIN)
        for name in ("steps", "seeds", "queries"):
            positive_int(name, getattr(self, name))
        self.train_batch_size = _train_batch_size(self.train_batch_size)


@dataclass
class LDSOptions(Evaluation):
    """``ifscope lds``: the linear datamodeling score on models retrained on random subsets."""

    subsets: int = opt(100, "random training subsets retrained")
    fraction: float = opt(0.5, "fraction of the training set in each subset")
    budget_s: float | None = opt(None, "seconds of retraining and scoring the sizes left out (--subsets, --seeds, "
                                       "--queries) are cut to, from one measured retraining (or continued step) and "
                                       "score (default 60)")

    def validate(self) -> None:
        super().validate()
        positive_int("subsets", self.subsets)
        positive_number("budget_s", self.budget_s, allow_none=True)
        if isinstance(self.fraction, bool) or not isinstance(self.fraction, (int, float)) or not 0 < self.fraction < 1:
            raise ConfigError(f"fraction must lie in (0, 1), got {self.fraction!r}")
        if self.subsets < 3:
            raise ConfigError(f"subsets must be at least 3 for a rank correlation, got {self.subsets}")


@dataclass
class CounterfactualOptions(Evaluation):
    """``ifscope counterfactual``: leave the top-k proponents out, retrain, measure the query's loss."""

    k: list[int] = opt([5, 10, 20, 40], "numbers of examples removed", factory=True)

    def validate(self) -> None:
        super().validate()
        self.k = list_of("k", self.k, int, low=1)


@dataclass
class TopOptions:
    """``ifscope top``: the strongest proponents and opponents of some test examples."""

    queries: str = opt("0-3", "test indices, e.g. 0-3,10")
    k: int = opt(5, "proponents and opponents per query", flag="-k")

    def validate(self) -> None:
        positive_int("k", self.k)


@dataclass
class ScoresOptions:
    """``ifscope scores``: the score matrix of test examples against the training set."""

    queries: str | None = opt(None, "test indices, e.g. 0-99,120 (default: all)")


@dataclass
class SelfInfluenceOptions:
    """``ifscope self-influence``: score(z, z) of every training example, the highest listed."""

    k: int = opt(20, "suspects listed", flag="-k")

    def validate(self) -> None:
        positive_int("k", self.k)


@dataclass
class CorrectSelection:
    """Which test examples ``ifscope correct`` works on (the budget of each correction is ``CorrectOptions``)."""

    queries: int | None = opt(None, "correct the first N mis-predicted test examples (default: all that fit the "
                                    "time budget)")
    budget_s: float | None = opt(None, "seconds of corrections the sizes left out (--queries, --steps) are cut to, "
                                       "from one measured SGD step, judging and score (default 60)")

    def validate(self) -> None:
        positive_int("queries", self.queries, allow_none=True)
        positive_number("budget_s", self.budget_s, allow_none=True)


COMMAND_OPTIONS: dict[str, tuple[type, ...]] = {
    "fade": (FadeOptions,), "diagnose": (DiagnoseOptions,), "lds": (LDSOptions,),
    "counterfactual": (CounterfactualOptions,), "top": (TopOptions,), "scores": (ScoresOptions,),
    "self-influence": (SelfInfluenceOptions,), "correct": (CorrectSelection,),
}
"""The options dataclasses of each command (``correct`` adds its budget, ``CorrectOptions``, at the experiments
floor where the correction is defined)."""
