"""Ground truth: the actual change of query losses after T steps of continued training with examples re-weighted."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..core.batching import check_batching, other, resolved
from ..core.data import as_dataset, take
from ..core.errors import ConfigError
from ..core.params import Params, ParamSpace
from ..core.progress import progress_bar
from ..core.task import Task
from .training import Schedule, replay_key, replay_many

MODES = ("remove", "upweight")


@dataclass
class GroundTruth:
    """``delta[t, i, q] = ℓ_q(θ_w(T_t)) − ℓ_q(θ(T_t))`` for training example ``ids[i]`` re-weighted to ``weight``;
    ``gap[t, i] = ‖θ_w(T_t) − θ(T_t)‖``; ``base[t, q]`` the unperturbed query losses.

    ``noise[t, q]`` is the same unperturbed replay run again on the other kernel (``batching``: vmap vs loop)
    minus ``base``, and ``noise_gap[t]`` its parameter gap: changes of that size are rounding, not influence."""

    steps: list[int]
    ids: Tensor
    weight: float          # the example's weight in the perturbed runs: 0 = removed, 1 + ε = up-weighted
    mode: str
    delta: Tensor          # [n_steps, n_ids, n_queries]
    gap: Tensor            # [n_steps, n_ids]
    base: Tensor           # [n_steps, n_queries]
    batching: str = "vmap"  # how the replicas were batched
    noise: Tensor | None = None      # [n_steps, n_queries]
    noise_gap: Tensor | None = None  # [n_steps]

    def noise_floor(self) -> dict[str, list[float]] | None:
        """Per T: RMS of the noise replay's query-loss change and of the actual changes, their ratio, and the gap."""
        if self.noise is None or self.noise_gap is None:
            return None
        noise = self.noise.double().pow(2).mean(-1).sqrt()
        signal = self.delta.double().pow(2).mean((-1, -2)).sqrt()
        ratio = torch.where(signal > 0, noise / signal, torch.full_like(noise, float("inf")))
        return {"delta_rms": noise.tolist(), "signal_rms": signal.tolist(), "ratio": ratio.tolist(),
                "gap": self.noise_gap.double().tolist(), "kernels": [self.batching, other(self.batching)]}


def _query_losses(task: Task, params: Params, rest: Mapping[str, Tensor], queries: Any) -> Tensor:
    with torch.no_grad():
        return task.per_example_loss(params, rest, queries)


def _trajectories(task: Task, params0: Params, rest, train, schedule: Schedule, steps: Sequence[int], queries,
                  weights: Tensor, tick: Callable[[], object] | None = None, batching: str = "auto"
                  ) -> tuple[Tensor, Tensor]:
    """Query losses [n_steps, K, n_queries] and flat parameters [n_steps, K, dim] for K weight vectors at once."""
    space = ParamSpace(params0)
    wanted = set(steps)
    losses: dict[int, Tensor] = {}
    flat: dict[int, Tensor] = {}

    def record(t: int, p: Params) -> None:
        if tick is not None:
            tick()
        if t in wanted:
            losses[t] = torch.stack([_query_losses(task, {n: v[k] for n, v in p.items()}, rest, queries)
                                     for k in range(len(weights))])
            flat[t] = space.flatten(p)
    replay_many(task, params0, train, schedule, weights, steps=max(steps), callback=record, rest=rest,
                batching=batching)
    return torch.stack([losses[t] for t in steps]), torch.stack([flat[t] for t in steps])


def actual_changes(task: Task, train: Any, queries: Any, ids: Sequence[int] | Tensor, steps: Sequence[int],
                   schedule: Schedule, mode: str = "remove", epsilon: float = 0.01,
                   params0: Mapping[str, Tensor] | None = None, dtype: torch.dtype | None = None,
                   progress: bool = True, vectorize: int = 8, batching: str = "auto",
                   noise_floor: bool = True) -> GroundTruth:
    """Replay ``schedule`` from the checkpoint once unchanged and once per id with that example removed (weight 0)
    or up-weighted (weight ``1 + epsilon``), recording query losses and the parameter gap at each ``T`` in ``steps``.

    ``vectorize`` runs that many trajectories per pass, batched by ``batching`` (``vmap``, ``loop``, or ``auto``:
    the faster for this model, measured); the unchanged one rides along in the first pass. ``noise_floor`` replays
    the unchanged run once more on the other kernel (see :attr:`GroundTruth.noise`). For a task with a frozen
    prefix, pass the task and data from :func:`ifscope.truth.prefix.cache_prefix` to replay only the selected part."""
    return actual_changes_many(task, train, queries, [(ids, mode, epsilon)], steps, schedule, params0=params0,
                               dtype=dtype, progress=progress, vectorize=vectorize, batching=batching,
                               noise_floor=noise_floor)[0]


Group = tuple[Sequence[int] | Tensor, str, float]  # (ids, mode, epsilon)


def _weight(mode: str, epsilon: float) -> float:
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {MODES}, got {mode!r}")
    return 0.0 if mode == "remove" else 1.0 + float(epsilon)


def actual_changes_many(task: Task, train: Any, queries: Any, groups: Sequence[Group], steps: Sequence[int],
                        schedule: Schedule, params0: Mapping[str, Tensor] | None = None,
                        dtype: torch.dtype | None = None, progress: bool = True, vectorize: int = 8,
                        batching: str = "auto", noise_floor: bool = True) -> list[GroundTruth]:
    """:func:`actual_changes` of several ``(ids, mode, epsilon)`` groups from one set of replays: their re-weighted
    runs share the passes, the unchanged run and its noise-floor replay (one ground truth per group)."""
    steps = sorted({int(t) for t in steps})
    if not steps or steps[0] < 1:
        raise ConfigError(f"steps must be positive integers, got {steps}")
    data = as_dataset(train, "train")
    n = len(data)
    parts = [(torch.as_tensor(ids, dtype=torch.long).reshape(-1), mode, _weight(mode, eps)) for ids, mode, eps in groups]
    for ids_t, _, _ in parts:
        if len(ids_t) == 0 or int(ids_t.min()) < 0 or int(ids_t.max()) >= n:
            raise ConfigError(f"ids must be training positions in [0, {n}), got {ids_t.tolist()[:10]}")
    if max(steps) > len(schedule):
        raise ConfigError(f"the largest T ({max(steps)}) exceeds the schedule's {len(schedule)} steps")
    p0, rest = task.state(dtype)
    if params0 is not None:
        p0 = {k: v.detach().to(next(iter(p0.values())).dtype).clone() for k, v in params0.items()}
    q_data = as_dataset(queries, "queries")
    q_batch = task.cast(take(q_data, range(len(q_data))), next(iter(p0.values())).dtype)
    if vectorize < 1:
        raise ConfigError(f"vectorize must be a positive number of trajectories per pass, got {vectorize}")
    check_batching(batching)
    rows = sum(len(ids_t) for ids_t, _, _ in parts)
    weights = torch.ones(rows + 1, n, dtype=torch.float64)  # row 0: unchanged; 1 + ε exact in float64
    first = 1
    for ids_t, _, weight in parts:
        weights[torch.arange(first, first + len(ids_t)), ids_t] = weight
        first += len(ids_t)
    parts_l, parts_f = [], []
    passes = range(0, len(weights), vectorize)
    modes = "/".join(dict.fromkeys(mode for _, mode, _ in parts))
    bar = progress_bar(f"ground truth ({modes}, {len(weights) + noise_floor} runs of {max(steps)} steps)",
                       (len(passes) + noise_floor) * max(steps), progress)
    for s in passes:
        losses, flat = _trajectories(task, p0, rest, data, schedule, steps, q_batch, weights[s:s + vectorize],
                                     tick=lambda: bar.update(1), batching=batching)
        if batching == "auto":
            batching = resolved(replay_key(task)) or batching
        parts_l.append(losses)
        parts_f.append(flat)
    losses, flat = torch.cat(parts_l, 1), torch.cat(parts_f, 1)
    base = losses[:, 0]
    noise = noise_gap = None
    if noise_floor:
        again, again_flat = _trajectories(task, p0, rest, data, schedule, steps, q_batch, weights[:1],
                                          tick=lambda: bar.update(1), batching=other(batching))
        noise, noise_gap = again[:, 0] - base, (again_flat[:, 0] - flat[:, 0]).norm(dim=-1)
    bar.close()
    out, first = [], 1
    for ids_t, mode, weight in parts:
        sl = slice(first, first + len(ids_t))
        first += len(ids_t)
        delta = losses[:, sl] - base[:, None]
        gap = (flat[:, sl] - flat[:, :1]).norm(dim=-1)
        out.append(GroundTruth(steps, ids_t, weight, mode, delta, gap, base, batching, noise, noise_gap))
    return out
