"""ifscope: influence functions for PyTorch that say what they can and cannot predict."""

from .diagnose import Diagnosis, diagnose
from .errors import ArtifactError, ConfigError, DataError, IfscopeError, NumericalError
from .influence import Influence
from .scores import TopInfluences
from .task import Task, classification

__version__ = "0.1.0"

__all__ = [
    "ArtifactError", "ConfigError", "DataError", "IfscopeError", "Influence", "NumericalError", "Task",
    "TopInfluences", "classification", "__version__",
    "Diagnosis",
    "diagnose",
]
