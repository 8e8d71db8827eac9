"""Reverse (adjoint) pass through a deterministic replay: ``∂ℓ(q, θ_T)/∂wᵢ`` for every training example at once.

The replay is the map ``s_{t+1} = step_t(s_t, w)`` on the optimiser state ``s = (θ, m, v)`` (SGD, momentum, Adam as in
:mod:`ifscope.truth.training`). With the adjoint ``a_T = (∇ℓ(q, θ_T), 0, 0)`` and ``a_t = (∂step_t/∂s_t)ᵀ a_{t+1}``,
``∂ℓ(q, θ_T)/∂w_B = Σ_t (∂step_t/∂w_B)ᵀ a_{t+1}``: one vector-Jacobian product per step gives both the next adjoint
(a Hessian-vector product of the batch objective, carried through the optimiser's update) and the contraction of
``a_{t+1}`` with every per-example gradient of the batch (the pullback onto the batch's weights), without ever
materialising a per-example gradient. When the T steps' graphs (the batches' activations) and states fit
``GRAPH_MEMORY_BUDGET``, one forward pass keeps them all and the sweep runs back through it. Otherwise the forward
trajectory is kept only at ``⌈√T⌉``-spaced checkpoints; each segment is recomputed (keeping its steps' graphs, so
that each step's forward is not run a third time) before its reverse sweep, so at most ``O(√T)`` optimiser states and
``⌈√T⌉`` step graphs exist at once, for one more forward pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.func import grad, vjp, vmap

from ..core.curvature import PRODUCT_MEMORY_FACTOR, saved_bytes
from ..core.data import as_dataset, batch_len, take
from ..core.errors import ConfigError, NumericalError
from ..core.params import Params, ParamSpace
from ..core.projection import per_example_grads
from ..core.task import Task
from .training import Schedule, _check_schedule, _step, batch_objective

State = tuple[Params, Params, Params]  # parameters, first moment, second moment
GRAPH_MEMORY_BUDGET = 2**30  # bytes of step graphs and states above which the pass checkpoints every ⌈√T⌉ steps


@dataclass
class AdjointResult:
    """``dloss[k, q, i] = ∂ℓ(q, θ_{T_k})/∂wᵢ``; ``checkpoints`` states kept for the whole pass, ``peak_states`` the
    most states held at once (checkpoints plus one recomputed segment), ``state_bytes`` the bytes of one state,
    ``graphs`` the most step graphs held at once (one segment's: each holds its batch's activations)."""

    dloss: Tensor
    checkpoints: int
    peak_states: int
    state_bytes: int
    graphs: int


def segment_length(steps: int) -> int:
    """Steps between stored checkpoints: ``⌈√T⌉``, which balances stored checkpoints against one segment's states."""
    return max(1, math.isqrt(max(steps - 1, 0)) + 1)


class Replay:
    """The steps of ``schedule`` on ``train`` as a differentiable function of the state and the batch's weights."""

    def __init__(self, task: Task, rest: Mapping[str, Tensor], train: Any, schedule: Schedule, dtype: torch.dtype):
        _check_schedule(schedule)
        self.task, self.rest, self.schedule, self.dtype = task, dict(rest), schedule, dtype
        self.train = as_dataset(train, "train")

    def _batch(self, t: int) -> tuple[Tensor, Any]:
        idx = self.schedule.batches[t]
        return idx, self.task.cast(take(self.train, idx), self.dtype)

    def _fn(self, t: int, batch: Any):
        objective = batch_objective(self.task, self.rest, batch, self.schedule.weight_decay)

        def step(state: State, wb: Tensor) -> State:
            params, m, v = state
            g = grad(objective)(params, wb)
            m, v = dict(m), dict(v)  # _step updates the moments in place: keep the inputs intact for vjp
            return _step(self.schedule, params, g, m, v, t + 1), m, v
        return step

    def _ones(self, state: State, n: int) -> Tensor:
        return torch.ones(n, dtype=self.dtype, device=next(iter(state[0].values())).device)

    def step(self, t: int, state: State) -> State:
        """``s_{t+1}`` from ``s_t`` with all weights 1."""
        idx, batch = self._batch(t)
        return _finite(t, self._fn(t, batch)(state, self._ones(state, len(idx))))

    def graph_bytes(self, t: int, state: State) -> int:
        """Estimated bytes one step's graph holds: ``PRODUCT_MEMORY_FACTOR`` × what autograd saves for the forward
        of its batch (the step's graph keeps the forward's and the gradient's saved tensors for the second pass)."""
        idx, batch = self._batch(t)
        objective = batch_objective(self.task, self.rest, batch, self.schedule.weight_decay)
        return PRODUCT_MEMORY_FACTOR * saved_bytes(lambda p: objective(p, self._ones(state, len(idx))), state[0])

    def linearise(self, t: int, state: State) -> tuple[State, Callable[[State], tuple[State, Tensor]]]:
        """``(s_{t+1}, pullback)``: the pullback maps a stack of adjoints ``a_{t+1}`` (leading dimension: one per
        query) to ``(a_t, ∂/∂w_B)``; it holds the step's graph (the batch's activations) until dropped."""
        idx, batch = self._batch(t)
        new, back = vjp(self._fn(t, batch), state, self._ones(state, len(idx)))
        return _finite(t, _copy(new)), vmap(back)

    def segment(self, start: int, stop: int, state: State) -> tuple[list[State], list[Callable]]:
        """States ``s_start..s_stop`` and the pullbacks of steps ``start..stop − 1``, recomputed from ``s_start``."""
        states, backs = [state], []
        for t in range(start, stop):
            new, back = self.linearise(t, states[-1])
            states.append(new)
            backs.append(back)
        return states, backs


def _finite(t: int, state: State) -> State:
    if not all(torch.isfinite(p).all() for p in state[0].values()):
        raise NumericalError(f"the replay diverged at step {t}: parameters are NaN or inf; lower the learning rate")
    return state


def _copy(state: State) -> State:
    return tuple({k: v.detach() for k, v in part.items()} for part in state)  # type: ignore[return-value]


def weight_gradients(task: Task, params0: Mapping[str, Tensor], rest: Mapping[str, Tensor], train: Any,
                     schedule: Schedule, queries: Any, horizons: Sequence[int], n_train: int,
                     memory_budget: int | None = None) -> AdjointResult:
    """``∂ℓ(q, θ_T)/∂wᵢ`` [len(horizons), n_queries, n_train] for each ``T`` in ``horizons``, from one forward replay
    and one reverse sweep: the adjoint of horizon ``T`` joins the sweep when it reaches step ``T``. The pass keeps
    every step's graph when they fit ``memory_budget`` (default ``GRAPH_MEMORY_BUDGET``), else checkpoints."""
    horizons = [int(h) for h in horizons]
    if not horizons or min(horizons) < 1:
        raise ConfigError(f"horizons must be positive numbers of steps, got {horizons}")
    t_max = max(horizons)
    if t_max > len(schedule):
        raise ConfigError(f"horizon {t_max} exceeds the schedule's {len(schedule)} steps")
    p0 = {k: v.detach().clone() for k, v in params0.items()}
    dtype = next(iter(p0.values())).dtype
    space = ParamSpace(p0)
    run = Replay(task, rest, train, schedule, dtype)
    zeros = {k: torch.zeros_like(v) for k, v in p0.items()}
    bytes_per_state = 3 * space.dim * torch.finfo(dtype).bits // 8
    budget = GRAPH_MEMORY_BUDGET if memory_budget is None else memory_budget
    with task.evaluating():
        whole = t_max * (run.graph_bytes(0, (p0, zeros, zeros)) + bytes_per_state) <= budget
    seg = t_max if whole else segment_length(t_max)
    n_q = batch_len(queries)
    out = torch.zeros(len(horizons), n_q, n_train, dtype=dtype, device=next(iter(p0.values())).device)
    with task.evaluating():
        starts = list(range(0, t_max, seg))
        checkpoints: dict[int, State] = {}
        state: State = (p0, zeros, zeros)
        for t in range(starts[-1]):  # forward to the last segment, keeping the state at each segment's start
            if t % seg == 0:
                checkpoints[t] = _copy(state)
            state = _copy(run.step(t, state))
        peak = len(checkpoints) + seg + 1
        adjoint: State | None = None
        slots: list[int] = []  # the horizon (index into `horizons`) of each block of n_q adjoint rows
        for start in reversed(starts):  # the last segment continues the forward pass; the others are recomputed
            stop = min(start + seg, t_max)
            states, backs = run.segment(start, stop, checkpoints.pop(start) if start in checkpoints else state)
            for t in range(stop - 1, start - 1, -1):
                joining = [k for k, h in enumerate(horizons) if h == t + 1]
                if joining:
                    adjoint = _join(adjoint, task, states[t + 1 - start][0], space, run.rest, queries, len(joining))
                    slots += joining
                assert adjoint is not None
                adjoint, dw = backs.pop()(adjoint)
                idx = schedule.batches[t]
                dw = dw.reshape(len(slots), n_q, len(idx))
                for row, k in enumerate(slots):
                    out[k][:, idx] += dw[row]
            del states, backs
    return AdjointResult(out, len(starts), peak, bytes_per_state, seg)


def segment_count(steps: int) -> int:
    """Checkpoints stored for a checkpointed pass of ``steps`` steps: one per segment."""
    return -(-steps // segment_length(steps))


def _join(adjoint: State | None, task: Task, params: Params, space: ParamSpace, rest: Mapping[str, Tensor],
          queries: Any, copies: int) -> State:
    """Append ``copies`` blocks of seeds ``(∇ℓ(q, θ_T), 0, 0)`` (one row per query) to the stacked adjoint."""
    g = per_example_grads(task, params, rest, queries).repeat(copies, 1)
    seed = space.unflatten(g)
    fresh = (seed, {k: torch.zeros_like(v) for k, v in seed.items()}, {k: torch.zeros_like(v) for k, v in seed.items()})
    if adjoint is None:
        return fresh  # type: ignore[return-value]
    return tuple({k: torch.cat([a[k], f[k]]) for k in a} for a, f in zip(adjoint, fresh))  # type: ignore[return-value]
