"""Correcting mis-predictions: a few optimiser steps on the training examples most influential on a query.

For a mis-predicted query ``q`` with gold label ``y``, ``score(q, i) = ∇ℓ(q, y)ᵀ H⁻¹ ∇ℓ(zᵢ)`` ranks training
examples; descending on the top-k proponents (up-weighting them) and/or ascending on the top-k opponents
(down-weighting them) should lower ``ℓ(q, y)`` by about ``Σ score / N`` per unit of weight. Each correction starts
from the checkpoint the influence was fitted at, so corrections are independent and the caller's model is never
touched. Baselines spend the same budget (k, steps, lr) on random training examples.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import ConcatDataset

from ..core.data import as_dataset, batches, take
from ..core.errors import ConfigError, DataError, NumericalError
from ..core.params import Params
from ..core.progress import progress_bar
from ..influence import Influence
from ..truth.training import Schedule, replay
from .correct_ranking import RANKINGS, ranking_source
from .correction import Correction, Outcome, QueryCorrection, save_params

STRATEGIES = ("proponents", "opponents", "both")
METHODS = ("influence", "random", "random_same_class", "query_itself")
# Defaults chosen by benchmarks/correct_sweep.py on a development model (digits-mlp, seed 1); docs/correct.md.
# Built-in recipes declare their own in Recipe.defaults["correct"] (docs/experiments_correction.md).
DEFAULT_LR = 0.1
# lr=None takes min(DEFAULT_LR, LR_FRACTION / λ_max): the top proponents of a mistake are the training examples with
# the largest gradients, and their own loss is several times sharper than the mean training loss (digits-cnn: 515
# against 84), so steps at 1/λ_max of the training Hessian diverge on them; a quarter of it does not.
LR_FRACTION = 0.25
GUARD_BATCH = 512  # the guard is evaluated after every step, in one pass where it fits


@dataclass
class CorrectOptions:
    """The budget of one correction, the same for every selection rule: ``steps`` SGD steps at rate ``lr`` on ``k``
    selected training examples (plus ``anchor`` random others), stopped before losing more than ``guard_drop`` of
    accuracy on ``guard`` training examples, and which examples and queries take part."""

    k: int = 32
    steps: int = 30
    lr: float | None = None
    strategy: str = "proponents"
    anchor: int = 200
    stop_when_fixed: bool = False
    guard: int = 0
    guard_drop: float = 0.01
    revert_unfixed: bool = False
    baselines: tuple[str, ...] = METHODS[1:]
    group: bool = False
    include_correct: bool = False
    seed: int = 0
    rank_by: str = "checkpoint"  # or "unrolled": through this correction's own steps and lr (correct_ranking)

    def validate(self, n_train: int) -> CorrectOptions:
        """Raise ConfigError on an option that cannot work on ``n_train`` training examples; returns ``self``."""
        for name in ("anchor", "k", "steps", "seed", "guard"):
            value = getattr(self, name)
            low = 1 if name in ("k", "steps") else 0
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                what = "a positive" if low else "a non-negative"
                raise ConfigError(f"{name} must be {what} integer, got {value!r}")
        if self.rank_by not in RANKINGS:
            raise ConfigError(f"rank_by must be one of {RANKINGS}, got {self.rank_by!r}")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        limit = n_train // 2 if self.strategy == "both" else n_train
        if self.k > limit:
            raise ConfigError(f"k={self.k} exceeds the {limit} training examples available to strategy "
                              f"{self.strategy!r}; lower k")
        if self.lr is not None and (not isinstance(self.lr, (int, float)) or not self.lr > 0):
            raise ConfigError(f"lr must be a positive number (or None for the default), got {self.lr!r}")
        if isinstance(self.guard_drop, bool) or not isinstance(self.guard_drop, (int, float)) \
                or not 0 <= self.guard_drop < 1:
            raise ConfigError(f"guard_drop must be a fraction in [0, 1), got {self.guard_drop!r}")
        if self.guard > n_train:
            raise ConfigError(f"guard={self.guard} exceeds the {n_train} training examples; lower it")
        unknown = sorted(set(self.baselines) - set(METHODS[1:]))
        if unknown:
            raise ConfigError(f"unknown baseline(s) {unknown}; choose from {list(METHODS[1:])}")
        return self


def _evaluate(inf: Influence, params: Params, rest: Mapping[str, Tensor], data: Any, batch_size: int | None = None
              ) -> tuple[Tensor, Tensor, Tensor]:
    """``(predicted class, per-example loss, label)`` of every example in ``data`` under ``params``, in batches of
    ``batch_size`` (default the run's)."""
    task = inf.task
    preds, losses, labels = [], [], []
    with torch.no_grad(), task.evaluating():
        for _, batch in batches(data, batch_size or inf.config["batch_size"]):
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
              done: Callable[[Params], bool] | None = None,
              keeps: Callable[[Params], bool] | None = None) -> tuple[Params, int, bool]:
    """Up to ``steps`` SGD steps on ``(1/|S|)(Σ_descend ℓ − Σ_ascend ℓ) + (1/|A|) Σ_anchor ℓ + (wd/2)‖θ‖²`` with
    ``S = descend ∪ ascend``, stopping early once ``done(params)``, or before the first step after which
    ``keeps(params)`` fails; returns the parameters, the steps taken and whether ``keeps`` stopped it."""
    idx = torch.cat([descend, ascend, anchor])
    m, s = len(idx), len(descend) + len(ascend)
    weights = torch.zeros(len(data))
    weights[descend] = m / s
    weights[ascend] = -m / s
    if len(anchor):
        weights[anchor] = m / len(anchor)
    if done is None and keeps is None:
        schedule = Schedule([idx] * steps, lr=lr, optimizer="sgd", weight_decay=inf.config["weight_decay"])
        return replay(inf.task, params0, data, schedule, weights=weights, rest=rest).params, steps, False
    # plain SGD keeps no optimiser state, so single-step replays chain into exactly the same trajectory
    one = Schedule([idx], lr=lr, optimizer="sgd", weight_decay=inf.config["weight_decay"])
    params = params0
    for t in range(1, steps + 1):
        after = replay(inf.task, params, data, one, weights=weights, rest=rest).params
        if keeps is not None and not keeps(after):
            return params, t - 1, True
        params = after
        if done is not None and done(params):
            return params, t, False
    return params, steps, False


def default_lr(influence: Influence) -> float:
    """``min(DEFAULT_LR, LR_FRACTION / λ_max)``, λ_max from the run's fitted spectrum: the measured default, capped
    where steps would diverge."""
    _fitted(influence)
    return min(DEFAULT_LR, LR_FRACTION / influence.lambda_max)


def _fitted(influence: Influence) -> Any:
    if not isinstance(influence, Influence):
        raise ConfigError(f"influence must be an ifscope.Influence, not {type(influence).__name__}")
    if influence.estimator is None:
        raise ConfigError("the Influence is not fitted: call influence.fit() (or Influence.open(workdir)) first; "
                          "correct never fits or refits it")
    return influence.estimator


def correct(influence: Influence, queries: Any, *, heldout: Any | None = None, indices: Sequence[int] | None = None,
            options: CorrectOptions | None = None, save: str | Path | None = None, progress: bool = True,
            **overrides: Any) -> Correction:
    """Fix mis-predicted queries by ``steps`` SGD steps (rate ``lr``) from the checkpoint on their top-``k`` proponents
    (descent), top-``k`` opponents (ascent) or both, ranked by ``score(q, i) = ∇ℓ(q, gold)ᵀ H⁻¹ ∇ℓ(zᵢ)``.

    ``influence`` must be fitted; it is only read (``top``/``scores``, its λ_max), never fitted or refitted here.
    The budget is a :class:`CorrectOptions` (``options``, or its fields as keyword arguments: ``k``, ``steps``,
    ``lr``, ``strategy``, ``anchor``, ``stop_when_fixed``, ``guard``, ``guard_drop``, ``revert_unfixed``,
    ``baselines``, ``group``, ``include_correct``, ``seed``,
    ``rank_by``: ``"unrolled"`` ranks by the exact derivative through these very steps, :mod:`ifscope.experiments.correct_ranking`).
    ``lr=None`` takes :func:`default_lr`. ``anchor`` adds that many other (seeded random) training examples to every
    step, at total weight equal to the selection's, to hold the rest of the model in place. ``stop_when_fixed`` stops
    a correction (and each baseline's) at the first step after which its queries are all predicted correctly.
    ``guard`` (a number of seeded training examples, the same for every selection) keeps each correction local: it
    stops before the first step after which the accuracy on the guard (less the examples stepped on) is more than
    ``guard_drop`` below the checkpoint's (the outcome's ``guarded``): the training-set stand-in for the held-out
    accuracy drop it is judged by. ``revert_unfixed`` returns a correction that has not fixed its queries after its
    steps to the checkpoint (its outcome ``reverted``): a failed attempt is not applied, so it has no side effects.

    ``queries`` hold gold labels; ``indices`` picks positions among them (default: every mis-predicted one).
    Queries already predicted correctly are skipped unless ``include_correct``. ``group=True`` makes one correction
    for all queries from the summed scores. ``heldout`` (examples not among the queries) measures side effects.
    ``baselines`` spend the same budget on ``random`` training examples, ``random_same_class`` ones (descent on the
    gold class, ascent on the predicted class) and, as a reference only, the query itself. ``save`` writes the
    corrected parameters as safetensors (keys ``query{i}/{name}`` or ``group/{name}``).
    """
    est = _fitted(influence)
    unknown = sorted(set(overrides) - set(CorrectOptions.__dataclass_fields__))
    if unknown:
        raise ConfigError(f"unknown correct option(s) {unknown}; options are {sorted(CorrectOptions.__dataclass_fields__)}")
    opts = replace(options or CorrectOptions(), **overrides)
    opts = replace(opts, baselines=tuple(opts.baselines)).validate(influence.n_train)
    q_data = as_dataset(queries, "queries")
    h_data = as_dataset(heldout, "heldout") if heldout is not None else None
    lr = default_lr(influence) if opts.lr is None else float(opts.lr)
    # the checkpoint the influence was fitted at: corrections start here, never from the (possibly changed) model
    params0 = {n: v.detach().clone() for n, v in est.ctx.params.items()}
    rest = dict(est.ctx.rest)

    pred0, loss0, gold = _evaluate(influence, params0, rest, q_data)
    chosen, skipped = _choose(pred0, gold, indices, opts.include_correct)
    heldout_state = None
    if h_data is not None:
        h_pred0, h_loss0, h_gold = _evaluate(influence, params0, rest, h_data)
        heldout_state = (h_data, h_gold, h_pred0 == h_gold)
    h_before = None if h_data is None else (float(heldout_state[2].float().mean()), float(h_loss0.mean()))
    config = {**{f: getattr(opts, f) for f in ("k", "steps", "strategy", "anchor", "stop_when_fixed", "guard",
                                               "guard_drop", "revert_unfixed", "group", "seed",
                                               "include_correct", "rank_by")},
              "lr": lr, "lr_default": opts.lr is None, "method": influence.method}
    if not chosen:
        return Correction([], skipped, {}, config, h_before, None, 0.0)

    t_score = time.perf_counter()
    selections = _selections(ranking_source(influence, opts.rank_by, opts.steps, lr), q_data, chosen, gold, pred0,
                             opts)
    score_seconds = (time.perf_counter() - t_score) / len(selections)

    results: dict[int, dict[str, Outcome]] = {i: {} for i in chosen}
    params_out: dict[int | str, Params] = {}
    group_outcomes: dict[str, Outcome] | None = {} if opts.group else None
    methods = ["influence", *[b for b in METHODS[1:] if b in opts.baselines]]
    gen = torch.Generator().manual_seed(opts.seed + 1)   # anchors: their own stream, apart from the baselines' draws
    guard = _guard(influence, params0, rest, opts) if opts.guard else None
    bar = progress_bar("corrections", len(selections) * len(methods), progress)
    for r, sel in enumerate(selections):
        members = [chosen[r]] if not opts.group else chosen
        member_data = as_dataset(take(q_data, members), "queries")
        for method in methods:
            t1 = time.perf_counter()
            if method == "query_itself":
                data = ConcatDataset([influence.train, member_data])
                descend, ascend = influence.n_train + torch.arange(len(members)), _EMPTY
            else:
                data = influence.train
                descend, ascend = sel[method]
            anchored = _draw(torch.arange(influence.n_train), opts.anchor, gen, torch.cat([descend, ascend]),
                             "the anchor") if opts.anchor else _EMPTY
            done = _fixes_all(influence, rest, member_data, gold[members]) if opts.stop_when_fixed else None
            keeps = guard(torch.cat([descend, ascend])) if guard is not None else None
            try:
                params, taken, guarded = _finetune(influence, params0, rest, data, descend, ascend, anchored,
                                                   opts.steps, lr, done, keeps)
                diverged = False
            except NumericalError:  # a step size too large for this selection's curvature: counts as not fixed
                params, taken, diverged, guarded = params0, 0, True, False
            reverted = opts.revert_unfixed and not diverged and \
                not _fixes_all(influence, rest, member_data, gold[members])(params)
            if reverted:  # a correction that did not fix its queries is not applied
                params = params0
            outs = _outcomes(influence, params, rest, member_data, gold[members], heldout_state,
                             time.perf_counter() - t1 + (score_seconds if method == "influence" else 0.0),
                             taken, [] if method == "query_itself" else descend.tolist(), ascend.tolist(), diverged,
                             guarded, reverted)
            for i, out in zip(members, outs):
                results[i][method] = out
            if group_outcomes is not None:
                group_outcomes[method] = outs[0]
            if method == "influence":
                params_out["group" if opts.group else chosen[r]] = params
            bar.update(1)
    bar.close()

    per_query = [QueryCorrection(i, int(gold[i]), int(pred0[i]), float(loss0[i]), results[i]) for i in chosen]
    inf_seconds = [results[i]["influence"].seconds for i in chosen]
    seconds_per = sum(inf_seconds) / len(inf_seconds) if not opts.group else inf_seconds[0]
    result = Correction(per_query, skipped, params_out, config, h_before, seconds_per, 0.0, group_outcomes)
    if save is not None:
        save_params(result, save)
    return result


_EMPTY = torch.empty(0, dtype=torch.long)


def _choose(pred0: Tensor, gold: Tensor, indices: Sequence[int] | None, include_correct: bool
            ) -> tuple[list[int], list[int]]:
    """``(query positions to correct, positions skipped because already right)``."""
    n = len(gold)
    if indices is None:
        chosen = list(range(n)) if include_correct else (pred0 != gold).nonzero()[:, 0].tolist()
    else:
        chosen = list(dict.fromkeys(int(i) for i in indices))
        bad = [i for i in chosen if not 0 <= i < n]
        if bad:
            raise ConfigError(f"query indices {bad[:5]} are outside [0, {n}); give positions in the query set")
    skipped = [i for i in chosen if not include_correct and bool(pred0[i] == gold[i])]
    return [i for i in chosen if i not in skipped], skipped


def _draw(pool: Tensor, count: int, gen: torch.Generator, exclude: Tensor | None = None,
          what: str = "random_same_class") -> Tensor:
    """``count`` distinct seeded draws from ``pool`` less ``exclude``."""
    if exclude is not None and len(exclude):
        pool = pool[~torch.isin(pool, exclude)]
    if len(pool) == 0:
        raise DataError(f"no training example is left to draw for {what} (none of the needed class, or all "
                        f"already selected); drop that option or lower k")
    return pool[torch.randperm(len(pool), generator=gen)[:count]]


def _selections(influence: Influence, q_data: Any, chosen: list[int], gold: Tensor, pred0: Tensor,
                opts: CorrectOptions) -> list[dict[str, tuple[Tensor, Tensor]]]:
    """Per correction, ``{rule: (descend on, ascend on)}``: influence's top-k by ``Influence.top`` (the summed
    ``Influence.scores`` for a group), and the random baselines' draws of the same sizes."""
    k, strategy = opts.k, opts.strategy
    sub = as_dataset(take(q_data, chosen), "queries")
    if opts.group:
        row = influence.scores(sub).sum(0, keepdim=True)
        tops = [(torch.topk(row[0], k).indices, torch.topk(-row[0], k).indices)]
    else:
        top = influence.top(sub, k=k)
        tops = list(zip(top.proponents, top.opponents))
    train_labels = _evaluate(influence, *_state(influence), influence.train)[2]
    everyone = torch.arange(influence.n_train)
    gen = torch.Generator().manual_seed(opts.seed)
    out = []
    for r, (top_p, top_o) in enumerate(tops):
        members = torch.as_tensor([chosen[r]] if not opts.group else chosen)
        pools = {"random": (everyone, everyone),
                 "random_same_class": (everyone[torch.isin(train_labels, gold[members])],
                                       everyone[torch.isin(train_labels, pred0[members])])}
        sel = {"influence": (top_p if strategy != "opponents" else _EMPTY,
                             top_o if strategy != "proponents" else _EMPTY)}
        for name in ("random", "random_same_class"):
            if name in opts.baselines:
                d = _draw(pools[name][0], k, gen) if strategy != "opponents" else _EMPTY
                a = _draw(pools[name][1], k, gen, d) if strategy != "proponents" else _EMPTY
                sel[name] = (d, a)
        out.append(sel)
    return out


def _state(influence: Influence) -> tuple[Params, dict[str, Tensor]]:
    est = _fitted(influence)
    return est.ctx.params, est.ctx.rest


def _guard(influence: Influence, params0: Params, rest: Mapping[str, Tensor], opts: CorrectOptions
           ) -> Callable[[Tensor], Callable[[Params], bool]]:
    """``selected ↦ (params ↦ ok)``: whether the accuracy on ``guard`` seeded training examples (the same for every
    selection, less the ones it steps on) stays within ``guard_drop`` of the checkpoint's: a correction's locality
    check on data the user has, in the units of the held-out accuracy it stands in for."""
    pick = torch.randperm(influence.n_train, generator=torch.Generator().manual_seed(opts.seed + 2))[:opts.guard]
    pred0, _, labels = _evaluate(influence, params0, rest, as_dataset(take(influence.train, pick.tolist()), "guard"))

    def for_selection(selected: Tensor) -> Callable[[Params], bool]:
        keep = ~torch.isin(pick, selected)
        data = as_dataset(take(influence.train, pick[keep].tolist()), "guard")
        before = (pred0[keep] == labels[keep]).float().mean()

        def keeps(params: Params) -> bool:  # checked after every step: one pass over the whole guard
            pred, _, y = _evaluate(influence, params, rest, data, GUARD_BATCH)
            return bool(before - (pred == y).float().mean() <= opts.guard_drop + 1e-9)
        return keeps
    return for_selection


def _fixes_all(influence: Influence, rest: Mapping[str, Tensor], member_data: Any, member_gold: Tensor
               ) -> Callable[[Params], bool]:
    def done(params: Params) -> bool:
        return bool((_evaluate(influence, params, rest, member_data)[0] == member_gold).all())
    return done


def _outcomes(influence: Influence, params: Params, rest: Mapping[str, Tensor], member_data: Any, member_gold: Tensor,
              heldout: tuple[Any, Tensor, Tensor] | None, seconds: float, taken: int, selected: list[int],
              ascended: list[int], diverged: bool, guarded: bool = False, reverted: bool = False) -> list[Outcome]:
    """One :class:`Outcome` per member query of a correction, with the held-out side effects it shares."""
    p_after, l_after, _ = _evaluate(influence, params, rest, member_data)
    h_acc = h_loss = broken = None
    if heldout is not None:
        h_data, h_gold, h_ok0 = heldout
        h_pred, h_loss_t, _ = _evaluate(influence, params, rest, h_data)
        h_acc, h_loss = float((h_pred == h_gold).float().mean()), float(h_loss_t.mean())
        broken = int((h_ok0 & (h_pred != h_gold)).sum())
    return [Outcome(fixed=bool(p_after[j] == member_gold[j]), loss_after=float(l_after[j]),
                    predicted_after=int(p_after[j]), heldout_accuracy=h_acc, heldout_loss=h_loss, broken=broken,
                    seconds=seconds, steps=taken, selected=selected, ascended=ascended, diverged=diverged,
                    guarded=guarded, reverted=reverted)
            for j in range(len(member_gold))]


def split_mispredicted(influence: Influence, data: Any, n: int | None = None,
                       indices: Sequence[int] | None = None) -> tuple[list[int], list[int]]:
    """``(query positions, held-out positions)`` in ``data``: the queries are ``indices`` or else the first ``n``
    (default all) examples the fitted checkpoint mis-predicts; the held-out set is every other example."""
    d = as_dataset(data, "test")
    pred, _, gold = _evaluate(influence, *_state(influence), d)
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


__all__ = ["CorrectOptions", "Correction", "Outcome", "QueryCorrection", "STRATEGIES", "correct", "default_lr",
           "save_params", "split_mispredicted"]
