"""Models trained on subsets of the training set, and what they do on the queries: the ground truth of ``ifscope.lds``
and of leave-top-k-out.

A subset is a boolean mask over the N training examples. Two ways to get the model of subset S:

- ``Scratch(retrain, seeds)``: the recipe's own training function from scratch on the examples of S, once per seed
  (``retrain(data, seed) -> state``); outcomes are averaged over the seeds, as the field does for LDS.
- ``Continue(schedule, steps)``: continued training from the checkpoint for T steps of ``schedule`` with the examples
  of S weighted 1 and the others 0 (``training.replay_many``, vectorised over subsets): what influence at the
  checkpoint predicts (docs/science.md, 'The five assumptions', 3).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..core.data import as_dataset, take
from ..core.errors import ConfigError
from ..core.params import Params
from ..core.progress import progress_bar
from ..core.task import Task
from .training import Schedule, replay_many

Retrain = Callable[[Any, int], Mapping[str, Tensor]]


@dataclass
class Scratch:
    """Train from scratch on each subset with ``retrain(data, seed)``, for seeds ``first_seed .. first_seed+seeds-1``."""

    retrain: Retrain
    seeds: int = 1
    first_seed: int = 0
    kind = "scratch"

    def validate(self) -> None:
        if not callable(self.retrain):
            raise ConfigError(f"retrain must be a function (data, seed) -> trained state, got {self.retrain!r}")
        if not isinstance(self.seeds, int) or self.seeds < 1:
            raise ConfigError(f"seeds must be a positive integer (trainings per subset), got {self.seeds!r}")


@dataclass
class Continue:
    """Continue training from the checkpoint for ``steps`` steps of ``schedule``, ``chunk`` subsets per vmapped pass."""

    schedule: Schedule
    steps: int
    chunk: int = 16
    dtype: torch.dtype | None = None  # of the continued training; None: the checkpoint's float32 unless told
    kind = "continue"
    seeds = 1

    def validate(self) -> None:
        if not isinstance(self.steps, int) or self.steps < 1:
            raise ConfigError(f"steps must be a positive integer (steps of continued training), got {self.steps!r}")
        if self.steps > len(self.schedule):
            raise ConfigError(f"steps {self.steps} exceed the schedule's {len(self.schedule)} steps")
        if self.chunk < 1:
            raise ConfigError(f"chunk must be a positive number of subsets per pass, got {self.chunk}")


@dataclass
class Outcomes:
    """``loss[s, m, q]`` (and ``margin``) of query q under the model trained on subset m with seed s."""

    masks: Tensor            # [M, N] bool: training examples kept in each subset
    loss: Tensor             # [seeds, M, Q]
    margin: Tensor | None    # [seeds, M, Q]: gold logit minus the largest other one (classifiers only)
    kind: str                # "scratch" or "continue"
    steps: int | None        # continued training: T

    @property
    def mean_loss(self) -> Tensor:
        """``[M, Q]``: the loss averaged over seeds."""
        return self.loss.mean(0)

    @property
    def mean_margin(self) -> Tensor | None:
        return None if self.margin is None else self.margin.mean(0)


def random_masks(n: int, subsets: int, fraction: float, seed: int = 0) -> Tensor:
    """``[subsets, n]`` boolean masks, each keeping ``round(fraction·n)`` examples drawn without replacement."""
    if not isinstance(subsets, int) or subsets < 3:
        raise ConfigError(f"subsets must be an integer of at least 3 (a rank correlation over subsets), got {subsets!r}")
    size = round(float(fraction) * n)
    if not 0 < fraction < 1 or not 1 <= size < n:
        raise ConfigError(f"fraction must lie in (0, 1) and keep between 1 and {n - 1} of the {n} training examples, "
                          f"got {fraction!r} ({size} examples)")
    gen = torch.Generator().manual_seed(int(seed))
    masks = torch.zeros(subsets, n, dtype=torch.bool)
    for m in range(subsets):
        masks[m, torch.randperm(n, generator=gen)[:size]] = True
    return masks


def query_outputs(task: Task, params: Params, rest: Mapping[str, Tensor], queries: Any
                  ) -> tuple[Tensor, Tensor | None]:
    """``(loss [Q], margin [Q] or None)`` of the queries; the margin is defined for ``[Q, C]`` logits with class labels."""
    with torch.no_grad(), task.evaluating():
        out = task.forward(params, rest, queries)
        loss = task.loss(out, task.targets(queries))
        y = task.targets(queries)
        margin = None
        if out.dim() == 2 and y.dim() == 1 and not y.is_floating_point() and out.shape[1] > 1:
            gold = out.gather(1, y.long()[:, None])[:, 0]
            other = out.scatter(1, y.long()[:, None], float("-inf")).amax(1)
            margin = gold - other
    return loss.detach(), None if margin is None else margin.detach()


def _split(task: Task, state: Mapping[str, Tensor]) -> tuple[Params, dict[str, Tensor]]:
    """The task's parameters from a trained ``state``, and the rest (the task's, updated with the state's buffers)."""
    missing = [k for k in task.parameter_names if k not in state]
    if missing:
        raise ConfigError(f"retrain returned a state without the parameter(s) {missing[:4]}; return a dict holding "
                          f"every one of {task.parameter_names[:4]}...")
    dtype = state[task.parameter_names[0]].dtype
    params = {k: state[k] for k in task.parameter_names}
    rest = task.state(dtype)[1]
    rest.update({k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items() if k in rest})
    return params, rest


def outcomes(task: Task, train: Any, queries: Any, masks: Tensor, how: Scratch | Continue,
             progress: bool = True, desc: str = "subsets") -> Outcomes:
    """Train a model per subset (``masks`` [M, N]) as ``how`` says and record each query's loss and margin."""
    how.validate()
    data = as_dataset(train, "train")
    q_data = as_dataset(queries, "queries")
    q_all = take(q_data, range(len(q_data)))
    masks = torch.as_tensor(masks, dtype=torch.bool)
    if masks.dim() != 2 or masks.shape[1] != len(data) or len(masks) == 0:
        raise ConfigError(f"masks must be [subsets, {len(data)}] booleans, got shape {tuple(masks.shape)}")
    if not bool(masks.any(1).all()):
        raise ConfigError("every subset must keep at least one training example")
    losses: list[list[Tensor]] = []
    margins: list[list[Tensor | None]] = []
    if isinstance(how, Scratch):
        bar = progress_bar(f"{desc}: retraining from scratch", len(masks) * how.seeds, progress)
        for s in range(how.seeds):
            row_l, row_m = [], []
            for mask in masks:
                state = how.retrain(take(data, mask.nonzero()[:, 0]), how.first_seed + s)
                params, rest = _split(task, state)
                loss, margin = query_outputs(task, params, rest, task.cast(q_all, params[task.parameter_names[0]].dtype))
                row_l.append(loss)
                row_m.append(margin)
                bar.update(1)
            losses.append(row_l)
            margins.append(row_m)
        bar.close()
    else:
        params0, rest = task.state(how.dtype)
        dtype = next(iter(params0.values())).dtype
        q_batch = task.cast(q_all, dtype)
        row_l, row_m = [], []
        bar = progress_bar(f"{desc}: continued training, {how.steps} steps", len(masks), progress)
        for start in range(0, len(masks), how.chunk):
            block = masks[start:start + how.chunk].to(dtype)
            stacked = replay_many(task, params0, data, how.schedule, block, steps=how.steps, rest=rest)
            for k in range(len(block)):
                loss, margin = query_outputs(task, {n: v[k] for n, v in stacked.items()}, rest, q_batch)
                row_l.append(loss)
                row_m.append(margin)
            bar.update(len(block))
        bar.close()
        losses, margins = [row_l], [row_m]
    loss_t = torch.stack([torch.stack(r) for r in losses]).double()
    has_margin = all(m is not None for r in margins for m in r)
    margin_t = torch.stack([torch.stack(r) for r in margins]).double() if has_margin else None  # type: ignore[arg-type]
    return Outcomes(masks, loss_t, margin_t, how.kind, how.steps if isinstance(how, Continue) else None)
