"""Correcting mis-predictions: a few optimiser steps on the training examples most influential on a query.

For a mis-predicted query ``q`` with gold label ``y``, ``score(q, i) = ∇ℓ(q, y)ᵀ H⁻¹ ∇ℓ(zᵢ)`` ranks training
examples; descending on the top-k proponents (up-weighting them) and/or ascending on the top-k opponents
(down-weighting them) should lower ``ℓ(q, y)`` by about ``Σ score / N`` per unit of weight. Each correction starts
from the checkpoint the influence was fitted at, so corrections are independent and the caller's model is never
touched. Baselines spend the same budget (k, steps, lr) on random training examples.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import ConcatDataset
from tqdm.auto import tqdm

from .data import as_dataset, batches, take
from .errors import ConfigError, DataError, NumericalError
from .influence import Influence
from .params import Params
from .store import atomic_write_bytes
from .training import Schedule, replay

STRATEGIES = ("proponents", "opponents", "both")
METHODS = ("influence", "random", "random_same_class", "query_itself")
# Defaults chosen by benchmarks/correct_sweep.py on a development model (digits-mlp, seed 1); docs/correct.md.
DEFAULT_K = 32
DEFAULT_STEPS = 30
DEFAULT_LR = 0.1
DEFAULT_STRATEGY = "proponents"
DEFAULT_ANCHOR = 200
DEFAULT_STOP = False


@dataclass
class Outcome:
    """One correction's effect: on the query (gold-label loss, prediction) and on the held-out set."""

    fixed: bool
    loss_after: float
    predicted_after: int
    heldout_accuracy: float | None
    heldout_loss: float | None
    broken: int | None
    seconds: float
    steps: int                                           # SGD steps taken (fewer than asked when stopped early)
    selected: list[int] = field(default_factory=list)   # training examples descended on
    ascended: list[int] = field(default_factory=list)   # training examples ascended on
    diverged: bool = False                               # the steps blew up (NaN/inf); the checkpoint is kept

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class QueryCorrection:
    """Per query: its position in the query set, gold label, prediction and loss before, and one outcome per method."""

    index: int
    label: int
    predicted_before: int
    loss_before: float
    outcomes: dict[str, Outcome]

    def to_dict(self) -> dict[str, Any]:
        inf = self.outcomes.get("influence")
        return {"index": self.index, "label": self.label, "predicted_before": self.predicted_before,
                "fixed": inf.fixed if inf is not None else None, "loss_before": self.loss_before,
                "loss_after": inf.loss_after if inf is not None else None,
                "methods": {m: o.to_dict() for m, o in self.outcomes.items()}}


@dataclass
class Correction:
    """The result of :func:`correct`. ``params[i]`` holds the influence-corrected parameters for query position ``i``
    (or ``params["group"]`` for a group correction); the caller's model is unchanged."""

    queries: list[QueryCorrection]
    skipped: list[int]                  # query positions left alone because they were already predicted correctly
    params: dict[int | str, Params]
    config: dict[str, Any]
    heldout_before: tuple[float, float] | None   # (accuracy, mean loss) of the checkpoint on the held-out set
    seconds_per_correction: float | None       # None when there was nothing to correct
    fit_seconds: float
    group_outcomes: dict[str, Outcome] | None = None

    @property
    def n_queries(self) -> int:
        return len(self.queries)

    def methods(self) -> list[str]:
        return list(self.queries[0].outcomes) if self.queries else []

    def fix_rate(self, method: str = "influence") -> float:
        """Fraction of the corrected queries predicted correctly after ``method``'s correction."""
        if not self.queries:
            raise ConfigError("no query was corrected (all were already predicted correctly), so there is no fix rate")
        return sum(q.outcomes[method].fixed for q in self.queries) / len(self.queries)

    def _corrections(self, method: str) -> list[Outcome]:
        if self.group_outcomes is not None:
            return [self.group_outcomes[method]]
        return [q.outcomes[method] for q in self.queries]

    def summary(self, method: str) -> dict[str, Any]:
        """``method``'s fix rate, mean query loss after, and held-out side effects averaged over corrections."""
        outs = self._corrections(method)
        per_query = [q.outcomes[method] for q in self.queries]
        return {"fix_rate": self.fix_rate(method),
                "loss_after": _mean([o.loss_after for o in per_query]),
                "heldout_accuracy_after": _mean([o.heldout_accuracy for o in outs]),
                "heldout_loss_after": _mean([o.heldout_loss for o in outs]),
                "broken": _mean([o.broken for o in outs]),
                "broken_max": max((o.broken for o in outs), default=None) if outs and outs[0].broken is not None
                else None,
                "seconds": _mean([o.seconds for o in outs])}

    def to_dict(self) -> dict[str, Any]:
        """The ``correct.json`` document; top-level side effects are the influence method's, averaged per correction."""
        methods = self.methods()
        per = {m: self.summary(m) for m in methods}
        inf = per.get("influence", {})
        before = self.heldout_before
        return {
            "n_queries": self.n_queries,
            "fix_rate": {m: per[m]["fix_rate"] for m in methods},
            "heldout_accuracy": {"before": before[0] if before else None, "after": inf.get("heldout_accuracy_after")},
            "heldout_loss": {"before": before[1] if before else None, "after": inf.get("heldout_loss_after")},
            "broken": inf.get("broken"),
            "seconds_per_correction": self.seconds_per_correction,
            "fit_seconds": self.fit_seconds,
            "methods": per,
            "reference_only": ["query_itself"],
            "skipped": self.skipped,
            "config": self.config,
            "queries": [q.to_dict() for q in self.queries],
        }


def _mean(xs: Sequence[float | int | None]) -> float | None:
    return sum(xs) / len(xs) if xs and None not in xs else None  # type: ignore[arg-type]


def _evaluate(inf: Influence, params: Params, rest: Mapping[str, Tensor], data: Any) -> tuple[Tensor, Tensor, Tensor]:
    """``(predicted class, per-example loss, label)`` of every example in ``data`` under ``params``."""
    task = inf.task
    preds, losses, labels = [], [], []
    with torch.no_grad(), task.evaluating():
        for _, batch in batches(data, inf.config["batch_size"]):
            batch = task.cast(batch, inf.dtype)
            out = task.forward(params, rest, batch)
            if out.dim() != 2:
                raise DataError(f"correct needs a classifier with logits of shape [batch, classes]; the model "
                                f"returned shape {tuple(out.shape)}")
            y = task.targets(batch)
            preds.append(out.argmax(1))
            losses.append(task.loss(out, y))
            labels.append(y.long())
    return torch.cat(preds), torch.cat(losses), torch.cat(labels)


def _finetune(inf: Influence, params0: Params, rest: Mapping[str, Tensor], data: Any, descend: Tensor,
              ascend: Tensor, anchor: Tensor, steps: int, lr: float,
              done: Callable[[Params], bool] | None = None) -> tuple[Params, int]:
    """Up to ``steps`` SGD steps on ``(1/|S|)(Σ_descend ℓ − Σ_ascend ℓ) + (1/|A|) Σ_anchor ℓ + (wd/2)‖θ‖²`` with
    ``S = descend ∪ ascend``, stopping early once ``done(params)``; returns the parameters and the steps taken."""
    idx = torch.cat([descend, ascend, anchor])
    m, s = len(idx), len(descend) + len(ascend)
    weights = torch.zeros(len(data))
    weights[descend] = m / s
    weights[ascend] = -m / s
    if len(anchor):
        weights[anchor] = m / len(anchor)
    if done is None:
        schedule = Schedule([idx] * steps, lr=lr, optimizer="sgd", weight_decay=inf.config["weight_decay"])
        return replay(inf.task, params0, data, schedule, weights=weights, rest=rest).params, steps
    # plain SGD keeps no optimiser state, so single-step replays chain into exactly the same trajectory
    one = Schedule([idx], lr=lr, optimizer="sgd", weight_decay=inf.config["weight_decay"])
    params = params0
    for t in range(1, steps + 1):
        params = replay(inf.task, params, data, one, weights=weights, rest=rest).params
        if done(params):
            return params, t
    return params, steps


def _check_options(k: int, steps: int, lr: float, strategy: str, baselines: Sequence[str], n_train: int,
                   anchor: int) -> None:
    if not isinstance(anchor, int) or anchor < 0:
        raise ConfigError(f"anchor must be a non-negative integer (training examples added to each step), "
                          f"got {anchor!r}")
    if not isinstance(k, int) or k < 1:
        raise ConfigError(f"k must be a positive integer, got {k!r}")
    limit = n_train // 2 if strategy == "both" else n_train
    if k > limit:
        raise ConfigError(f"k={k} exceeds the {limit} training examples available to strategy {strategy!r}; lower k")
    if not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"steps must be a positive integer, got {steps!r}")
    if not isinstance(lr, (int, float)) or not lr > 0:
        raise ConfigError(f"lr must be a positive number, got {lr!r}")
    if strategy not in STRATEGIES:
        raise ConfigError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    unknown = sorted(set(baselines) - set(METHODS[1:]))
    if unknown:
        raise ConfigError(f"unknown baseline(s) {unknown}; choose from {list(METHODS[1:])}")


def _top_eigenvalue(est: Any) -> float:
    """λ_max of the training-loss Hessian: the fitted Arnoldi top eigenvalue, else by power iteration."""
    from .estimators.lissa import power_iteration
    if hasattr(est, "pairs"):
        return float(est.pairs.values.max())
    op = est.ctx.curvature_operator()
    return power_iteration(op.matvec, op.dim, est.ctx.dtype, seed=est.ctx.seed, device=est.ctx.device)


def correct(influence: Influence, queries: Any, *, heldout: Any | None = None, indices: Sequence[int] | None = None,
            k: int = DEFAULT_K, steps: int = DEFAULT_STEPS, lr: float | None = None, strategy: str = DEFAULT_STRATEGY,
            anchor: int = DEFAULT_ANCHOR, stop_when_fixed: bool = DEFAULT_STOP, baselines: Sequence[str] = METHODS[1:],
            group: bool = False, include_correct: bool = False, seed: int = 0, save: str | Path | None = None,
            progress: bool = True) -> Correction:
    """Fix mis-predicted queries by ``steps`` SGD steps (rate ``lr``) from the checkpoint on their top-``k`` proponents
    (descent), top-``k`` opponents (ascent) or both, ranked by ``score(q, i) = ∇ℓ(q, gold)ᵀ H⁻¹ ∇ℓ(zᵢ)``.
    ``lr=None`` takes ``min(DEFAULT_LR, 1/λ_max)``: the measured default, capped where the curvature would make
    gradient steps diverge.

    ``anchor`` adds that many other (seeded random) training examples to every step, at total weight equal to the
    selection's, to hold the rest of the model in place. ``stop_when_fixed`` stops a correction (and each baseline's)
    at the first step after which its queries are all predicted correctly.

    ``queries`` hold gold labels; ``indices`` picks positions among them (default: every mis-predicted one).
    Queries already predicted correctly are skipped unless ``include_correct``. ``group=True`` makes one correction
    for all queries from the summed scores. ``heldout`` (examples not among the queries) measures side effects.
    ``baselines`` spend the same budget on ``random`` training examples, ``random_same_class`` ones (descent on the
    gold class, ascent on the predicted class) and, as a reference only, the query itself. ``save`` writes the
    corrected parameters as safetensors (keys ``query{i}/{name}`` or ``group/{name}``).
    """
    if not isinstance(influence, Influence):
        raise ConfigError(f"influence must be an ifscope.Influence, not {type(influence).__name__}")
    baselines = list(baselines)
    _check_options(k, steps, DEFAULT_LR if lr is None else lr, strategy, baselines, influence.n_train, anchor)
    q_data = as_dataset(queries, "queries")
    h_data = as_dataset(heldout, "heldout") if heldout is not None else None
    t0 = time.perf_counter()
    if influence.estimator is None:
        influence.fit()
    fit_seconds = time.perf_counter() - t0
    est = influence.estimator
    assert est is not None
    if lr is None:
        lr = min(DEFAULT_LR, 1.0 / _top_eigenvalue(est))
    # the checkpoint the influence was fitted at: corrections start here, never from the (possibly changed) model
    params0 = {n: v.detach().clone() for n, v in est.ctx.params.items()}
    rest = dict(est.ctx.rest)

    pred0, loss0, gold = _evaluate(influence, params0, rest, q_data)
    if indices is None:
        chosen = list(range(len(q_data))) if include_correct else (pred0 != gold).nonzero()[:, 0].tolist()
    else:
        chosen = list(dict.fromkeys(int(i) for i in indices))
        bad = [i for i in chosen if not 0 <= i < len(q_data)]
        if bad:
            raise ConfigError(f"query indices {bad[:5]} are outside [0, {len(q_data)}); give positions in the "
                              "query set")
    skipped = [i for i in chosen if not include_correct and bool(pred0[i] == gold[i])]
    chosen = [i for i in chosen if i not in skipped]

    h_before = None
    if h_data is not None:
        h_pred0, h_loss0, h_gold = _evaluate(influence, params0, rest, h_data)
        h_ok0 = h_pred0 == h_gold
        h_before = (float(h_ok0.float().mean()), float(h_loss0.mean()))

    config = {"k": k, "steps": steps, "lr": float(lr), "strategy": strategy, "anchor": anchor,
              "stop_when_fixed": stop_when_fixed, "group": group,
              "seed": seed,
              "method": influence.method, "include_correct": include_correct}
    if not chosen:
        return Correction([], skipped, {}, config, h_before, None, fit_seconds)

    t_score = time.perf_counter()
    sub = take(q_data, chosen)
    sub_data = as_dataset(sub, "queries")
    scores = influence.scores(sub_data)                      # [n_chosen, n_train]
    if group:
        scores = scores.sum(0, keepdim=True)
    score_seconds = (time.perf_counter() - t_score) / len(scores)

    n_train = influence.n_train
    train_labels = _evaluate(influence, params0, rest, influence.train)[2]
    gen = torch.Generator().manual_seed(seed)

    def pick(pool: Tensor, count: int, exclude: Tensor | None = None, what: str = "random_same_class") -> Tensor:
        if exclude is not None and len(exclude):
            pool = pool[~torch.isin(pool, exclude)]
        if len(pool) == 0:
            raise DataError(f"no training example is left to draw for {what} (none of the needed class, or all "
                            f"already selected); drop that option or lower k")
        return pool[torch.randperm(len(pool), generator=gen)[:count]]

    everyone = torch.arange(n_train)
    selections: list[dict[str, tuple[Tensor, Tensor]]] = []
    for r, row in enumerate(scores):
        members = torch.as_tensor([chosen[r]] if not group else chosen)
        gold_cls = torch.isin(train_labels, gold[members])
        wrong_cls = torch.isin(train_labels, pred0[members])
        top_p = torch.topk(row, k).indices
        top_o = torch.topk(-row, k).indices
        empty = torch.empty(0, dtype=torch.long)
        sel = {"influence": (top_p if strategy != "opponents" else empty, top_o if strategy != "proponents" else empty)}
        if "random" in baselines:
            d = pick(everyone, k) if strategy != "opponents" else empty
            a = pick(everyone, k, d) if strategy != "proponents" else empty
            sel["random"] = (d, a)
        if "random_same_class" in baselines:
            d = pick(everyone[gold_cls], k) if strategy != "opponents" else empty
            a = pick(everyone[wrong_cls], k, d) if strategy != "proponents" else empty
            sel["random_same_class"] = (d, a)
        selections.append(sel)

    results: dict[int, dict[str, Outcome]] = {i: {} for i in chosen}
    params_out: dict[int | str, Params] = {}
    group_outcomes: dict[str, Outcome] | None = {} if group else None
    methods = ["influence", *[b for b in METHODS[1:] if b in baselines]]
    bar = tqdm(total=len(selections) * len(methods), desc="corrections", file=sys.stderr, leave=False,
               disable=not progress)
    for r, sel in enumerate(selections):
        members = [chosen[r]] if not group else chosen
        member_data = as_dataset(take(q_data, members), "queries")
        member_gold = gold[members]

        def fixes_all(params: Params, member_data: Any = member_data, member_gold: Tensor = member_gold) -> bool:
            return bool((_evaluate(influence, params, rest, member_data)[0] == member_gold).all())
        for method in methods:
            t1 = time.perf_counter()
            if method == "query_itself":
                data = ConcatDataset([influence.train, member_data])
                descend, ascend = n_train + torch.arange(len(members)), torch.empty(0, dtype=torch.long)
            else:
                data = influence.train
                descend, ascend = sel[method]
            anchored = pick(everyone, anchor, torch.cat([descend, ascend]), "the anchor") if anchor else empty
            try:
                params, taken = _finetune(influence, params0, rest, data, descend, ascend, anchored, steps, lr,
                                          fixes_all if stop_when_fixed else None)
                diverged = False
            except NumericalError:  # a step size too large for this selection's curvature: counts as not fixed
                params, taken, diverged = params0, 0, True
            p_after, l_after, _ = _evaluate(influence, params, rest, member_data)
            seconds = time.perf_counter() - t1 + (score_seconds if method == "influence" else 0.0)
            h_acc = h_loss = broken = None
            if h_data is not None:
                h_pred, h_loss_t, _ = _evaluate(influence, params, rest, h_data)
                h_acc, h_loss = float((h_pred == h_gold).float().mean()), float(h_loss_t.mean())
                broken = int((h_ok0 & (h_pred != h_gold)).sum())
            for j, i in enumerate(members):
                out = Outcome(fixed=bool(p_after[j] == gold[i]), loss_after=float(l_after[j]),
                              predicted_after=int(p_after[j]), heldout_accuracy=h_acc, heldout_loss=h_loss,
                              broken=broken, seconds=seconds, steps=taken, selected=descend.tolist(),
                              ascended=ascend.tolist(), diverged=diverged)
                if method == "query_itself":
                    out.selected = []
                results[i][method] = out
            if group_outcomes is not None:
                group_outcomes[method] = results[members[0]][method]
            if method == "influence":
                params_out["group" if group else chosen[r]] = params
            bar.update(1)
    bar.close()

    per_query = [QueryCorrection(i, int(gold[i]), int(pred0[i]), float(loss0[i]), results[i]) for i in chosen]
    inf_seconds = [results[i]["influence"].seconds for i in chosen]
    seconds_per = sum(inf_seconds) / len(inf_seconds) if not group else inf_seconds[0]
    result = Correction(per_query, skipped, params_out, config, h_before, seconds_per, fit_seconds, group_outcomes)
    if save is not None:
        save_params(result, save)
    return result


def split_mispredicted(influence: Influence, data: Any, n: int | None = None,
                       indices: Sequence[int] | None = None) -> tuple[list[int], list[int]]:
    """``(query positions, held-out positions)`` in ``data``: the queries are ``indices`` or else the first ``n``
    (default all) examples the fitted checkpoint mis-predicts; the held-out set is every other example."""
    d = as_dataset(data, "test")
    if influence.estimator is None:
        influence.fit()
    est = influence.estimator
    assert est is not None
    pred, _, gold = _evaluate(influence, est.ctx.params, est.ctx.rest, d)
    if indices is not None:
        queries = list(dict.fromkeys(int(i) for i in indices))
        bad = [i for i in queries if not 0 <= i < len(d)]
        if bad:
            raise ConfigError(f"query indices {bad[:5]} are outside the {len(d)} test examples")
    else:
        if n is not None and (not isinstance(n, int) or n < 1):
            raise ConfigError(f"the number of queries must be a positive integer, got {n!r}")
        queries = (pred != gold).nonzero()[:, 0].tolist()[:n]
    taken = set(queries)
    return queries, [i for i in range(len(d)) if i not in taken]


def save_params(result: Correction, path: str | Path) -> Path:
    """Write the corrected parameters atomically as safetensors: ``query{i}/{name}`` or ``group/{name}``."""
    from safetensors.torch import save
    tensors = {f"{key if key == 'group' else f'query{key}'}/{name}": t.detach().contiguous()
               for key, params in result.params.items() for name, t in params.items()}
    if not tensors:
        raise ConfigError("there are no corrected parameters to save: every query was already predicted correctly "
                          "(pass include_correct=True to correct them anyway)")
    meta = {k: str(v) for k, v in result.config.items()}
    return atomic_write_bytes(path, save(tensors, metadata=meta))


__all__ = ["Correction", "Outcome", "QueryCorrection", "STRATEGIES", "correct", "save_params", "split_mispredicted"]
