"""ifscope: influence functions for PyTorch that say what they can and cannot predict."""

from ._version import __version__
from .core.checks import TINY_EIGENVALUE_RATIO
from .core.contract import ModelContract, check_model
from .core.errors import (
    ArtifactError,
    ConfigError,
    DataError,
    IfscopeError,
    ModelError,
    NonFiniteError,
    NumericalError,
    NumericalWarning,
)
from .core.hf import TextTask, encode_texts, hf_classification, last_blocks_params
from .core.language_model import LMJudge, LMTask, encode_lm, language_model
from .core.scores import TopInfluences
from .core.task import Task, classification, regression
from .experiments.correct import Correction, correct, split_mispredicted
from .experiments.diagnose import Diagnosis, diagnose
from .experiments.evaluate import CounterfactualResult, LDSResult, lds, leave_top_k_out
from .experiments.fade import FadeResult, fade_curve, plot_fade
from .experiments.validity import ValidityHorizon, validity_horizon
from .influence import Influence
from .recipes import Recipe, load_recipe
from .report import render_report
from .run import distributed
from .run.store import RunDir
from .truth.groundtruth import GroundTruth, actual_changes

__all__ = [
    "ArtifactError", "ConfigError", "Correction", "CounterfactualResult", "DataError", "Diagnosis", "FadeResult",
    "GroundTruth", "IfscopeError", "Influence", "LDSResult", "LMJudge", "LMTask", "ModelContract", "ModelError",
    "NonFiniteError", "NumericalError", "NumericalWarning", "Recipe", "RunDir",
    "TINY_EIGENVALUE_RATIO", "Task", "TextTask", "TopInfluences", "ValidityHorizon", "__version__", "actual_changes",
    "check_model", "classification", "correct", "diagnose", "distributed", "encode_lm", "encode_texts", "fade_curve",
    "hf_classification", "language_model", "last_blocks_params", "lds", "leave_top_k_out", "load_recipe", "plot_fade",
    "regression",
    "render_report",
    "split_mispredicted", "validity_horizon",
]
