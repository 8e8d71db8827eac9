"""Judges: what ``correct``, ``top`` and the report need to know about a task's predictions, without assuming
classification.

A judge says which examples the model gets wrong, which examples belong together (the "random-k of the same
class" baseline), the per-example side-effect figure whose mean is reported on a held-out set, and how to show a
target and a prediction. ``Task.judge`` holds one; ``ifscope.classification`` and ``ifscope.regression`` set theirs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from torch import Tensor

from .data import Batch
from .errors import ConfigError, DataError


@runtime_checkable
class Judge(Protocol):
    """What correct/top/report need to know about a task's predictions."""

    kind: str  # "classification" | "regression" | "language_model"
    held_out_name: str  # e.g. "accuracy", "squared error", "NLL/token"

    def wrong(self, outputs: Tensor, batch: Batch) -> Tensor:
        """bool ``[B]``: the model gets example ``b`` wrong."""
        ...

    def group(self, batch: Batch) -> Tensor | None:
        """``[B]`` ints for the "random-k of the same class/topic" baseline, None if undefined."""
        ...

    def held_out(self, outputs: Tensor, batch: Batch) -> Tensor:
        """``[B]`` per-example side-effect figure whose mean is reported (accuracy / squared error / token NLL)."""
        ...

    def show_target(self, batch: Batch, i: int) -> str:
        """Example ``i``'s target as a person reads it, e.g. ``"label 3"`` or ``"y = 1.25"``."""
        ...

    def show_prediction(self, outputs: Tensor, batch: Batch, i: int) -> str:
        """The model's prediction for example ``i``, e.g. ``"predicted 7"`` or ``"ŷ = 1.19"``."""
        ...


@dataclass
class ClassificationJudge:
    """``logits [B, C]`` against integer labels: wrong when ``argmax ≠ label``; group = label; held-out = accuracy.

    ``predicted_group`` (the predicted class) is an extra the protocol does not require: ``correct``'s same-class
    baseline ascends on the predicted class when a judge has it."""

    targets: Callable[[Batch], Tensor]
    kind: str = "classification"
    held_out_name: str = "accuracy"

    def _check(self, outputs: Tensor) -> Tensor:
        if outputs.dim() != 2:
            raise DataError(f"a classifier's logits must have shape [batch, classes]; the model returned shape "
                            f"{tuple(outputs.shape)} (for real-valued targets use ifscope.regression)")
        return outputs

    def wrong(self, outputs: Tensor, batch: Batch) -> Tensor:
        return self._check(outputs).argmax(1) != self.targets(batch).long()

    def group(self, batch: Batch) -> Tensor | None:
        return self.targets(batch).long()

    def predicted_group(self, outputs: Tensor) -> Tensor:
        return self._check(outputs).argmax(1)

    def held_out(self, outputs: Tensor, batch: Batch) -> Tensor:
        return (~self.wrong(outputs, batch)).double()

    def value(self, batch: Batch, i: int) -> int:
        return int(self.targets(batch)[i])

    def predicted_value(self, outputs: Tensor, batch: Batch, i: int) -> int:
        return int(self._check(outputs)[i].argmax())

    def show_target(self, batch: Batch, i: int) -> str:
        return f"label {self.value(batch, i)}"

    def show_prediction(self, outputs: Tensor, batch: Batch, i: int) -> str:
        return f"predicted {self.predicted_value(outputs, batch, i)}"


def as_column(t: Tensor, what: str) -> Tensor:
    """``[B]`` from a ``[B]`` or ``[B, 1]`` tensor of one real value per example."""
    if t.dim() == 2 and t.shape[1] == 1:
        t = t[:, 0]
    if t.dim() != 1:
        raise DataError(f"regression needs one real {what} per example (shape [batch] or [batch, 1]), got shape "
                        f"{tuple(t.shape)}")
    return t


@dataclass
class RegressionJudge:
    """One real output per example: wrong when ``|ŷ − y| > tolerance``; held-out = squared error ``(ŷ − y)²``;
    ``groups`` (optional) maps a batch to ``[B]`` ints for the same-group baseline."""

    targets: Callable[[Batch], Tensor]
    tolerance: float | None = None
    groups: Callable[[Batch], Tensor] | None = None
    kind: str = "regression"
    held_out_name: str = "squared error"

    def __post_init__(self) -> None:
        if self.tolerance is not None and (isinstance(self.tolerance, bool) or not isinstance(
                self.tolerance, (int, float)) or not self.tolerance > 0):
            raise ConfigError(f"tolerance must be a positive number (a mistake is |ŷ − y| above it), got "
                              f"{self.tolerance!r}")

    def errors(self, outputs: Tensor, batch: Batch) -> Tensor:
        """``ŷ − y`` per example, ``[B]``."""
        return as_column(outputs, "output") - as_column(self.targets(batch), "target").to(outputs.dtype)

    def wrong(self, outputs: Tensor, batch: Batch) -> Tensor:
        if self.tolerance is None:
            raise ConfigError("a regression task has no mistakes without a tolerance: pass tolerance=X (a mistake is "
                              "|ŷ − y| > X), e.g. ifscope.regression(model, tolerance=0.5) or --tolerance 0.5")
        return self.errors(outputs, batch).abs() > self.tolerance

    def group(self, batch: Batch) -> Tensor | None:
        return None if self.groups is None else self.groups(batch).long()

    def held_out(self, outputs: Tensor, batch: Batch) -> Tensor:
        return self.errors(outputs, batch).double() ** 2

    def value(self, batch: Batch, i: int) -> float:
        return float(as_column(self.targets(batch), "target")[i])

    def predicted_value(self, outputs: Tensor, batch: Batch, i: int) -> float:
        return float(as_column(outputs, "output")[i])

    def show_target(self, batch: Batch, i: int) -> str:
        return f"y = {self.value(batch, i):.4g}"

    def show_prediction(self, outputs: Tensor, batch: Batch, i: int) -> str:
        return f"ŷ = {self.predicted_value(outputs, batch, i):.4g}"


def target_value(judge: Judge, batch: Batch, i: int) -> Any:
    """Example ``i``'s target for JSON: the judge's number (class index, real target) where it has one, else its text."""
    value = getattr(judge, "value", None)
    return value(batch, i) if value is not None else judge.show_target(batch, i)


def prediction_value(judge: Judge, outputs: Tensor, batch: Batch, i: int) -> Any:
    """The model's prediction for example ``i`` for JSON: the judge's number where it has one, else its text."""
    value = getattr(judge, "predicted_value", None)
    return value(outputs, batch, i) if value is not None else judge.show_prediction(outputs, batch, i)


def require_judge(judge: Judge | None, command: str) -> Judge:
    """``judge``, or a ConfigError saying which task constructor sets one."""
    if judge is None:
        raise ConfigError(f"{command} needs to know what a wrong prediction is, and this Task has no judge: build it "
                          "with ifscope.classification, ifscope.hf_classification or ifscope.regression, or pass "
                          "Task(..., judge=...) (an ifscope.core.judges.Judge)")
    return judge


__all__ = ["ClassificationJudge", "Judge", "RegressionJudge", "as_column", "prediction_value", "require_judge",
           "target_value"]
