"""ifscope: influence functions for PyTorch that say what they can and cannot predict."""

from .checks import TINY_EIGENVALUE_RATIO
from .correct import Correction, correct, split_mispredicted
from .diagnose import Diagnosis, diagnose
from .errors import ArtifactError, ConfigError, DataError, IfscopeError, NumericalError
from .errors import NonFiniteError, NumericalWarning
from .fade import FadeResult, fade_curve, plot_fade
from .groundtruth import GroundTruth, actual_changes
from .influence import Influence
from .report import render_report
from .scores import TopInfluences
from .store import RunDir
from .task import Task, classification

__version__ = "0.1.0"

__all__ = [
    "actual_changes", "ArtifactError", "classification", "ConfigError", "correct", "Correction", "DataError",
    "diagnose", "Diagnosis", "fade_curve", "FadeResult", "GroundTruth", "IfscopeError", "Influence",
    "NonFiniteError", "NumericalError", "NumericalWarning", "plot_fade", "render_report", "RunDir",
    "split_mispredicted", "Task", "TINY_EIGENVALUE_RATIO", "TopInfluences", "__version__",
]
