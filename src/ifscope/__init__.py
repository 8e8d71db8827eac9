"""ifscope: influence functions for PyTorch that say what they can and cannot predict."""

from .errors import ArtifactError, ConfigError, DataError, IfscopeError, NumericalError
from .hf import TextTask, encode_texts, hf_classification, last_blocks_params
from .influence import Influence
from .scores import TopInfluences
from .task import Task, classification

__version__ = "0.1.0"

__all__ = [
    "ArtifactError", "ConfigError", "DataError", "IfscopeError", "Influence", "NumericalError", "Task",
    "TopInfluences", "classification", "__version__",
    "hf_classification",
    "encode_texts",
    "TextTask",
    "last_blocks_params",
]
