"""The model's predictions on a dataset as the task's judge sees them: which are wrong, their losses, the held-out
figure, groups, and the targets and predictions to show."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from ...core.data import batches
from ...core.errors import ConfigError
from ...core.judges import Judge, prediction_value, require_judge, target_value
from ...core.params import Params
from ...influence import Influence


def judge_for(influence: Influence, tolerance: float | None = None, command: str = "correct") -> Judge:
    """The task's judge, with ``tolerance`` (a mistake is ``|ŷ − y| > tolerance``) set when given."""
    judge = require_judge(influence.task.judge, command)
    if tolerance is None:
        return judge
    if not hasattr(judge, "tolerance"):
        raise ConfigError(f"tolerance applies to regression tasks; this task's judge is {judge.kind!r}, whose "
                          "mistakes are defined without one: drop the tolerance")
    return replace(judge, tolerance=float(tolerance))  # type: ignore[type-var]


@dataclass
class Judged:
    """Per example of a dataset: ``wrong`` (bool), ``loss`` (the task's), ``held_out`` (the judge's figure), and,
    when asked for, the targets and predictions as JSON values."""

    wrong: Tensor
    loss: Tensor
    held_out: Tensor
    targets: list[Any]
    predictions: list[Any]


def evaluate(influence: Influence, judge: Judge, params: Params, rest: Mapping[str, Tensor], data: Any,
             batch_size: int | None = None, values: bool = False) -> Judged:
    """Judge every example of ``data`` under ``params``, in batches of ``batch_size`` (default the run's)."""
    task = influence.task
    wrong, losses, held, targets, preds = [], [], [], [], []
    with torch.no_grad(), task.evaluating():
        for _, batch in batches(data, batch_size or influence.config["batch_size"]):
            batch = task.cast(batch, influence.dtype)
            out = task.forward(params, rest, batch)
            wrong.append(judge.wrong(out, batch).reshape(-1))
            losses.append(task.loss(out, task.targets(batch)))
            held.append(judge.held_out(out, batch).reshape(-1))
            if values:
                n = len(wrong[-1])
                targets += [target_value(judge, batch, i) for i in range(n)]
                preds += [prediction_value(judge, out, batch, i) for i in range(n)]
    return Judged(torch.cat(wrong), torch.cat(losses), torch.cat(held), targets, preds)


def groups(influence: Influence, judge: Judge, data: Any) -> Tensor | None:
    """``[N]`` group ids of ``data`` (the same-class baseline's pools), or None when the judge defines none."""
    task, out = influence.task, []
    for _, batch in batches(data, influence.config["batch_size"]):
        g = judge.group(task.cast(batch, influence.dtype))
        if g is None:
            return None
        out.append(g.reshape(-1))
    return torch.cat(out)


def predicted_groups(influence: Influence, judge: Judge, params: Params, rest: Mapping[str, Tensor], data: Any
                     ) -> Tensor | None:
    """``[N]`` predicted groups (a classifier's predicted class) where the judge has ``predicted_group``, else None."""
    predicted = getattr(judge, "predicted_group", None)
    if predicted is None:
        return None
    task, out = influence.task, []
    with torch.no_grad(), task.evaluating():
        for _, batch in batches(data, influence.config["batch_size"]):
            out.append(predicted(task.forward(params, rest, task.cast(batch, influence.dtype))))
    return torch.cat(out)
