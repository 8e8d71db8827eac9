"""ifscope: influence functions for PyTorch that say what they can and cannot predict."""

from .checks import TINY_EIGENVALUE_RATIO
from .correct import Correction, correct, split_mispredicted
from .diagnose import Diagnosis, diagnose
from .errors import ArtifactError, ConfigError, DataError, IfscopeError, NumericalError
from .errors import NonFiniteError, NumericalWarning
from .influence import Influence
from .report import render_report
from .scores import TopInfluences
from .store import RunDir
from .task import Task, classification

__version__ = "0.1.0"

__all__ = [
    "ArtifactError", "ConfigError", "DataError", "IfscopeError", "Influence", "NumericalError", "Task",
    "TopInfluences", "classification", "__version__",
    "NonFiniteError", "NumericalWarning", "TINY_EIGENVALUE_RATIO",
    "RunDir",
    "render_report",
    "Correction", "correct", "split_mispredicted",
    "Diagnosis",
    "diagnose",
]
