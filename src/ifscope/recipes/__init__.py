"""Built-in recipes: plain functions returning a :class:`Recipe`, the same shape a user's recipe file returns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..task import Task


@dataclass
class Recipe:
    """A trained model, its task, and its datasets (``train`` for influence, ``test`` for queries)."""

    model: nn.Module
    task: Task
    train: Any
    test: Any
    info: dict[str, Any] = field(default_factory=dict)  # e.g. weight_decay, lr, class names, how to draw inputs


def _registry() -> dict[str, Callable[..., Recipe]]:
    from .digits import digits_mlp
    return {"digits-mlp": digits_mlp}


def builtin(name: str) -> Callable[..., Recipe]:
    """The built-in recipe function called ``name``."""
    from ..errors import ConfigError
    recipes = _registry()
    if name not in recipes:
        raise ConfigError(f"no built-in recipe {name!r}; built-in ones are {sorted(recipes)}, or give FILE.py:FUNCTION")
    return recipes[name]


__all__ = ["Recipe", "builtin"]
