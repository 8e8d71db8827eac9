"""ifscope: influence functions for PyTorch that say what they can and cannot predict."""

from .errors import ArtifactError, ConfigError, DataError, IfscopeError, NumericalError
from .fade import FadeResult, fade_curve, plot_fade
from .groundtruth import GroundTruth, actual_changes
from .influence import Influence
from .scores import TopInfluences
from .task import Task, classification

__version__ = "0.1.0"

__all__ = [
    "ArtifactError", "ConfigError", "DataError", "FadeResult", "GroundTruth", "IfscopeError", "Influence", "NumericalError", "Task",
    "TopInfluences", "actual_changes", "classification", "fade_curve", "plot_fade", "__version__",
]
