"""The ground truth the divergence and first-order checks share: continued training from the checkpoint (the
run's default full-batch GD with lr 1/λ_max, or the caller's schedule) with each probe id removed, computed once,
on the frozen prefix cached once (a text model replays only its selected blocks, see :mod:`ifscope.truth.prefix`)."""

from __future__ import annotations

from ...core.data import take
from ...truth.groundtruth import GroundTruth, actual_changes
from ...truth.prefix import Prefix, cache_prefix
from ...truth.training import Schedule
from ..fade import gd_schedule
from .common import Probe


def schedule(p: Probe) -> Schedule:
    if "schedule" not in p.cache:
        p.cache["schedule"] = p.schedule or gd_schedule(p.inf, max(p.steps), seed=p.inf.config["seed"])
    return p.cache["schedule"]


def prefix(p: Probe) -> Prefix:
    """The run's task with its frozen prefix cached for the training set and the probe's queries."""
    if "prefix" not in p.cache:
        p.cache["prefix"] = cache_prefix(p.inf.task, p.inf.train, take(p.qdata, p.q_idx), dtype=p.truth_dtype,
                                         progress=p.inf.show_progress)
    return p.cache["prefix"]


def changes(p: Probe, mode: str, epsilon: float = 0.01) -> GroundTruth:
    cached = prefix(p)
    train, queries = cached.datasets
    return actual_changes(cached.task, train, queries, p.ids, p.steps, schedule(p), mode=mode, epsilon=epsilon,
                          dtype=p.truth_dtype, progress=p.inf.show_progress)


def removal(p: Probe) -> tuple[GroundTruth, Schedule]:
    if "removal" not in p.cache:
        p.cache["removal"] = changes(p, "remove")
    return p.cache["removal"], schedule(p)
