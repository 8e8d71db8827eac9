"""Assumption 3, the model sits at an optimum: the training-loss gradient at the checkpoint against its start, and
score agreement with earlier checkpoints (refits at each, so only with ``refit=True`` for methods that keep a
spectrum)."""

from __future__ import annotations

import math
from typing import Any

import torch

from ...core.curvature import Curvature
from ...core.data import batches
from ...core.errors import ConfigError
from .common import (
    AGREE_HOLD,
    AGREE_QUESTION,
    GRADIENT_HOLD,
    GRADIENT_QUESTION,
    Probe,
    as_json,
    as_state,
    fmt,
    grade,
    model_at,
    worst,
)

NAME = "trajectory"
ADVICE = {
    "holds": "the checkpoint is near a stationary point: scores describe a local optimum",
    "questionable": "training has not settled: scores describe continued training from this checkpoint, "
                    "not a retrained optimum",
    "violated": "far from a stationary point: scores change along training; train to convergence before "
                "reading them, or read them only as the effect of the next few steps",
}


def measure(p: Probe) -> dict[str, Any]:
    inf = p.inf
    ctx = inf.estimator.ctx  # type: ignore[union-attr]
    op = ctx.curvature_operator(damping=0.0)
    loss, g = op.loss_and_grad()
    grad_norm = float(g.norm())
    out: dict[str, Any] = dict(loss=loss, gradient_norm=grad_norm)
    if p.initial is not None:
        missing = sorted(set(ctx.params) - set(p.initial))
        if missing:
            raise ConfigError(f"initial parameters lack {missing[:3]}; give the model's state dict at the start of "
                              "training")
        p0 = {k: p.initial[k].detach().to(inf.dtype) for k in ctx.params}
        start = Curvature(inf.task, p0, ctx.rest, op.batches, weight_decay=ctx.weight_decay)
        loss0, g0 = start.loss_and_grad()
        out.update(initial_loss=loss0, initial_gradient_norm=float(g0.norm()),
                   gradient_ratio=grad_norm / max(float(g0.norm()), 1e-300), gradient_reference="start of training")
    else:
        # without the start, compare the mean gradient with the per-example ones it averages (0 = stationary)
        sample = torch.randperm(inf.n_train, generator=p.gen)[:256]
        theta = op.space.flatten(ctx.params)
        sq = 0.0
        with inf.task.evaluating():
            for _, b in batches(inf.train, 32, sample):
                gi = ctx.grads(inf.task.cast(b, inf.dtype)) + ctx.weight_decay * theta
                sq += float((gi * gi).sum())
        rms = math.sqrt(sq / len(sample))
        out.update(example_gradient_rms=rms, gradient_ratio=grad_norm / max(rms, 1e-300),
                   gradient_reference="per-example gradients")
    agreement: list[float] = []
    if p.checkpoints and (p.refit or not inf.estimator.keeps_spectrum):  # type: ignore[union-attr]
        base = p.scores()
        for i, item in enumerate(p.checkpoints):
            with model_at(inf, as_state(item, i)):
                earlier = inf.derive(refit=True)
            agreement.append(p.agreement(base, p.scores(earlier)))
    out["checkpoint_agreement"] = agreement
    out["verdict"] = worst(grade(out["gradient_ratio"], GRADIENT_HOLD, GRADIENT_QUESTION),
                           grade(agreement[-1], AGREE_HOLD, AGREE_QUESTION, True) if agreement else None)
    return out


def key_figures(a: dict[str, Any]) -> str:
    a = as_json(a)
    return (f"grad ratio {fmt(a['gradient_ratio'])} ({a['gradient_reference']})"
            + (f", checkpoint agreement {fmt(a['checkpoint_agreement'][-1])}" if a["checkpoint_agreement"] else ""))
