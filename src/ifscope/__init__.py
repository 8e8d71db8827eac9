"""ifscope: influence functions for PyTorch that say what they can and cannot predict."""

from . import distributed
from .checks import TINY_EIGENVALUE_RATIO
from .correct import Correction, correct, split_mispredicted
from .diagnose import Diagnosis, diagnose
from .errors import (
    ArtifactError,
    ConfigError,
    DataError,
    IfscopeError,
    NonFiniteError,
    NumericalError,
    NumericalWarning,
)
from .evaluate import CounterfactualResult, LDSResult, lds, leave_top_k_out
from .fade import FadeResult, fade_curve, plot_fade
from .groundtruth import GroundTruth, actual_changes
from .hf import TextTask, encode_texts, hf_classification, last_blocks_params
from .influence import Influence
from .recipes import Recipe, load_recipe
from .report import render_report
from .scores import TopInfluences
from .store import RunDir
from .task import Task, classification
from .validity import ValidityHorizon, validity_horizon

__version__ = "0.1.0"

__all__ = [
    "ArtifactError", "ConfigError", "Correction", "CounterfactualResult", "DataError", "Diagnosis", "FadeResult",
    "GroundTruth", "IfscopeError", "Influence", "LDSResult", "NonFiniteError", "NumericalError", "NumericalWarning",
    "Recipe", "RunDir",
    "TINY_EIGENVALUE_RATIO", "Task", "TextTask", "TopInfluences", "ValidityHorizon", "__version__", "actual_changes",
    "classification", "correct", "diagnose", "distributed", "encode_texts", "fade_curve", "hf_classification",
    "last_blocks_params", "lds", "leave_top_k_out", "load_recipe", "plot_fade", "render_report",
    "split_mispredicted", "validity_horizon",
]
