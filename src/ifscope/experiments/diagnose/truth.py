"""The ground truth the divergence and first-order checks share: continued training from the checkpoint (the
run's default full-batch GD with lr 1/λ_max, or the caller's schedule) with each probe id removed and, for the
first-order check's sweep, the ε ids up-weighted by each ε: one set of replays for all of them (shared passes,
unchanged run and noise floor), on the frozen prefix cached once (a text model replays only its selected blocks,
see :mod:`ifscope.truth.prefix`)."""

from __future__ import annotations

from dataclasses import replace

from ...core.data import take
from ...truth.groundtruth import GroundTruth, actual_changes, actual_changes_many
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


def sweep_epsilons(p: Probe) -> list[float]:
    """The up-weightings of the first-order check's ε sweep: the reference ε, then each ε other than removal."""
    return list(dict.fromkeys([p.reference_epsilon] + [float(e) for e in p.epsilons if float(e) != -1.0]))


def removal(p: Probe) -> tuple[GroundTruth, Schedule]:
    """The removals' ground truth; with ``p.sweep``, replayed together with the ε sweep's up-weightings."""
    if "removal" not in p.cache:
        eps = sweep_epsilons(p) if p.sweep else []
        sub = p.ids if p.eps_ids is None else p.eps_ids
        cached = prefix(p)
        train, queries = cached.datasets
        truths = actual_changes_many(cached.task, train, queries, [(p.ids, "remove", 0.0)] +
                                     [(sub, "upweight", e) for e in eps], p.steps, schedule(p), dtype=p.truth_dtype,
                                     progress=p.inf.show_progress)
        p.cache["removal"] = truths[0]
        p.cache.update({("upweight", e): gt for e, gt in zip(eps, truths[1:])})
    return p.cache["removal"], schedule(p)


def upweight(p: Probe, epsilon: float) -> GroundTruth:
    """The ε ids (``p.eps_ids``) up-weighted by ``epsilon`` (from the joint replay of :func:`removal` when it ran)."""
    if ("upweight", epsilon) not in p.cache:
        sub = p.ids if p.eps_ids is None else p.eps_ids
        p.cache[("upweight", epsilon)] = changes(replace(p, ids=sub), "upweight", epsilon)
    return p.cache[("upweight", epsilon)]
