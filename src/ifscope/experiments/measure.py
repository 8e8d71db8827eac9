"""The unit costs an experiment is sized by, measured on the model at hand: one step of the ground-truth replay (per
replica, batched as the truth runs it) and one reverse step of the exact reference ``unrolled`` (per adjoint row) for
fade and diagnose; one training on a subset (or continued step) and one query's scores for LDS. (Correction:
:mod:`ifscope.experiments.correct.cost`.)"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..core.batching import resolved
from ..core.data import as_dataset, batch_len, take
from ..core.params import ParamSpace
from ..core.projection import per_example_grads
from ..core.task import Task
from ..truth.adjoint import Replay
from ..truth.subsets import Continue, random_masks
from ..truth.training import Schedule, replay_key, replay_many
from .sizing import DEFAULT_BUDGET_S, SIZED, Chosen, Costs, Sizes, Workload, as_given, choose
from .sizing_eval import LDS_SIZED, LDSCosts, LDSSizes, choose_lds

TIMED_STEPS = 2  # replay steps timed after one untimed step (which also settles vmap against loop)
CONTINUE_CHUNK = Continue.chunk  # subsets per vmapped pass of the LDS outcomes
MEASURED_ROWS = 4  # adjoint rows timed: per row, a few share the linearisation less than many (a safe-side estimate)


def replay_step_seconds(task: Task, train: Any, schedule: Schedule, replicas: int, dtype: torch.dtype,
                        batching: str = "auto") -> float:
    """Seconds per step and per replica of :func:`ifscope.truth.training.replay_many` with ``replicas`` weight rows,
    after one untimed step (with ``batching="auto"`` it times vmap against a loop once and remembers the faster for
    the ground truth that follows)."""
    data = as_dataset(train, "train")
    params, rest = task.state(dtype)
    weights = torch.ones(replicas, len(data), dtype=torch.float64)
    replay_many(task, params, data, schedule.truncated(1), weights, rest=rest, batching=batching)
    batching = resolved(replay_key(task)) or batching
    t0 = time.perf_counter()
    replay_many(task, params, data, schedule.truncated(min(TIMED_STEPS, len(schedule))), weights, rest=rest,
                batching=batching)
    return (time.perf_counter() - t0) / (min(TIMED_STEPS, len(schedule)) * replicas)


def adjoint_row_seconds(task: Task, train: Any, schedule: Schedule, queries: Any, dtype: torch.dtype) -> float:
    """Seconds per adjoint row of one step of the ``unrolled`` reverse sweep (its linearisation, shared by the rows,
    included), on one row per query of the first ``MEASURED_ROWS`` of ``queries``, after one untimed step."""
    params, rest = task.state(dtype)
    q = as_dataset(queries, "queries")
    batch = task.cast(take(q, range(min(len(q), MEASURED_ROWS))), dtype)  # type: ignore[arg-type]
    run = Replay(task, rest, train, schedule, dtype)
    zeros = {k: torch.zeros_like(v) for k, v in params.items()}
    state = (params, zeros, zeros)
    with task.evaluating():
        rows = ParamSpace(params).unflatten(per_example_grads(task, params, rest, batch))
        adjoint = (rows, {k: torch.zeros_like(v) for k, v in rows.items()},
                   {k: torch.zeros_like(v) for k, v in rows.items()})

        def sweep_step() -> float:
            t0 = time.perf_counter()
            _, back = run.linearise(0, state)
            back(adjoint)
            return time.perf_counter() - t0
        sweep_step()
        return sweep_step() / batch_len(batch)


def measure(task: Task, train: Any, queries: Any, schedule: Schedule, truth_dtype: torch.dtype, replicas: int,
            reference_dtypes: Sequence[str] = (), batching: str = "auto") -> Costs:
    """:class:`ifscope.experiments.sizing.Costs` of this model: the replay step in ``truth_dtype`` with ``replicas``
    rows at once, and the unrolled row-step in each of ``reference_dtypes`` (none: the exact reference is not run)."""
    step = replay_step_seconds(task, train, schedule, replicas, truth_dtype, batching)
    rows, failed = {}, {}
    for name in reference_dtypes:
        try:
            rows[name] = adjoint_row_seconds(task, train, schedule, queries, getattr(torch, name))
        except (RuntimeError, NotImplementedError) as exc:  # e.g. an LSTM's vmap in float64: that precision is out
            rows[name], failed[name] = float("inf"), str(exc).split("\n")[0][:200]
    return Costs(step, rows, failed)


def size_to_budget(task: Task, train: Any, queries: Any, schedule: Schedule, wanted: Sizes, workload: Workload,
                   budget_s: float | None, explicit: Sequence[str] = (), truth_dtype: torch.dtype = torch.float64,
                   batching: str = "auto", vectorize: int = 8) -> Chosen:
    """:func:`ifscope.experiments.sizing.choose` on this model's measured costs (``budget_s`` None: the default);
    nothing is measured when every size is in ``explicit``. ``queries`` are the wanted ones (the row cost is
    measured on them); ``vectorize`` the ground truth's replicas per pass."""
    if set(SIZED) <= set(explicit):
        return as_given(wanted, budget_s, Costs(float("nan")))
    budget = DEFAULT_BUDGET_S if budget_s is None else float(budget_s)
    dtypes = []
    if workload.unrolled:
        dtypes = [wanted.reference_dtype]
        if wanted.reference_dtype == "float64" and "reference_dtype" not in explicit and workload.float32:
            dtypes.append("float32")
    costs = measure(task, train, queries, schedule, truth_dtype, min(vectorize, workload.replicas(wanted.n_ids)),
                    dtypes, batching)
    return choose(wanted, costs, workload, budget, explicit)


def _timed(work: Any) -> float:
    t0 = time.perf_counter()
    work()
    return time.perf_counter() - t0


def measure_lds(methods: Mapping[str, Any], queries: Any, retrain: Any, schedule: Schedule | None, subsets: int,
                fraction: float, seed: int = 0) -> LDSCosts:
    """:class:`ifscope.experiments.sizing_eval.LDSCosts` of this model: one training from scratch (``retrain``, a
    function ``(data, seed) -> state``) on a random subset, or one continued step of ``schedule`` per subset batched
    as the outcomes run; one query's scores by the first method, its first call (the training embeddings) apart."""
    first = next(iter(methods.values()))
    one = take(as_dataset(queries, "queries"), [0])
    t_first = _timed(lambda: first.scores(one))
    score_s = _timed(lambda: first.scores(one))
    retrain_s = step_s = float("nan")
    if callable(retrain):
        mask = random_masks(first.n_train, 3, fraction, seed)[0]
        retrain_s = _timed(lambda: retrain(take(as_dataset(first.train, "train"), mask.nonzero()[:, 0]), seed))
    else:
        assert schedule is not None, "continued training needs its schedule"
        dtype = next(iter(first.task.state()[0].values())).dtype
        step_s = replay_step_seconds(first.task, first.train, schedule, min(CONTINUE_CHUNK, subsets), dtype)
    return LDSCosts(retrain_s, step_s, score_s, max(0.0, t_first - score_s), len(methods))


def size_lds(methods: Mapping[str, Any], queries: Any, wanted: LDSSizes, retrain: Any, schedule: Schedule | None,
             fraction: float, budget_s: float | None, explicit: Sequence[str] = (), seed: int = 0) -> Chosen:
    """:func:`ifscope.experiments.sizing_eval.choose_lds` on this model's measured costs (``budget_s`` None: the
    default); nothing is measured when every size is in ``explicit``."""
    if set(LDS_SIZED) <= set(explicit):
        return as_given(wanted, budget_s, LDSCosts(*[float("nan")] * 4, len(methods)))
    costs = measure_lds(methods, queries, retrain, schedule, wanted.subsets, fraction, seed)
    return choose_lds(wanted, costs, DEFAULT_BUDGET_S if budget_s is None else float(budget_s), explicit)
