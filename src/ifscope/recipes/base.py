"""The shape of a recipe: a trained model, its task, its datasets and option defaults sized to the model."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from ..core.task import Task


@dataclass
class Recipe:
    """A trained model, its task, and its datasets (``train`` for influence, ``test`` for queries)."""

    model: nn.Module
    task: Task
    train: Any
    test: Any
    info: dict[str, Any] = field(default_factory=dict)  # e.g. weight_decay, lr, class names, how to draw inputs
    # option defaults sized to this model, per command: {"influence": {...estimator options for fit/scores/top...},
    # "fade": {...}, "correct": {...}, "demo": {...}}; a command-line flag overrides them
    defaults: dict[str, dict[str, Any]] = field(default_factory=dict)
    # how the recipe trains from scratch: (training data, seed) -> the trained state (the task's parameters, and any
    # buffers training changes), for counterfactual evaluation (ifscope.lds); None if the recipe cannot retrain
    retrain: Callable[[Any, int], Mapping[str, Tensor]] | None = None
