"""``correct``: run every selection rule's correction of each chosen query and collect what each did."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import ConcatDataset

from ...core.data import as_dataset, take
from ...core.errors import ConfigError, NumericalError
from ...core.judges import Judge
from ...core.params import Params
from ...core.progress import progress_bar
from ...influence import Influence
from ..correct_ranking import ranking_source
from ..correction import Correction, Outcome, QueryCorrection, save_params
from .finetune import finetune, fixes_all, guard
from .judged import Judged, evaluate, judge_for
from .options import DEFAULT_LR, LR_FRACTION, METHODS, CorrectOptions
from .selection import EMPTY, choose, draw, selections


def default_lr(influence: Influence) -> float:
    """``min(DEFAULT_LR, LR_FRACTION / λ_max)``, λ_max from the run's fitted spectrum: the measured default, capped
    where steps would diverge."""
    fitted(influence)
    return min(DEFAULT_LR, LR_FRACTION / influence.lambda_max)


def fitted(influence: Influence) -> Any:
    """The fitted estimator of ``influence``, or a ConfigError saying to fit it."""
    if not isinstance(influence, Influence):
        raise ConfigError(f"influence must be an ifscope.Influence, not {type(influence).__name__}")
    if influence.estimator is None:
        raise ConfigError("the Influence is not fitted: call influence.fit() (or Influence.open(workdir)) first; "
                          "correct never fits or refits it")
    return influence.estimator


@dataclass
class _Run:
    """What every correction of one ``correct`` call shares: the checkpoint, the judge, the data and the budget."""

    influence: Influence
    judge: Judge
    opts: CorrectOptions
    lr: float
    params0: Params
    rest: dict[str, Tensor]
    q_data: Any
    heldout: tuple[Any, Tensor] | None   # (held-out data, which of it the checkpoint gets right)

    def outcomes(self, params: Params, member_data: Any, seconds: float, taken: int, selected: list[int],
                 ascended: list[int], diverged: bool, guarded: bool, reverted: bool) -> list[Outcome]:
        """One :class:`Outcome` per member query of a correction, with the held-out side effects it shares."""
        after = evaluate(self.influence, self.judge, params, self.rest, member_data, values=True)
        figure = h_loss = broken = None
        if self.heldout is not None:
            h_data, h_ok0 = self.heldout
            h = evaluate(self.influence, self.judge, params, self.rest, h_data)
            figure, h_loss = float(h.held_out.mean()), float(h.loss.mean())
            broken = int((h_ok0 & h.wrong).sum())
        accuracy = figure if self.judge.held_out_name == "accuracy" else None
        return [Outcome(fixed=not bool(after.wrong[j]), loss_after=float(after.loss[j]),
                        predicted_after=after.predictions[j], heldout_accuracy=accuracy, heldout_loss=h_loss,
                        broken=broken, seconds=seconds, steps=taken, selected=selected, ascended=ascended,
                        diverged=diverged, guarded=guarded, reverted=reverted, heldout_figure=figure)
                for j in range(len(after.wrong))]

    def one(self, members: list[int], method: str, sel: dict[str, tuple[Tensor, Tensor]], gen: torch.Generator,
            keeps_for: Any, score_seconds: float) -> tuple[Params, list[Outcome]]:
        """Correct the ``members`` queries with ``method``'s selection: the parameters and each member's outcome."""
        inf, opts = self.influence, self.opts
        t1 = time.perf_counter()
        member_data = as_dataset(take(self.q_data, members), "queries")
        if method == "query_itself":
            data = ConcatDataset([inf.train, member_data])
            descend, ascend = inf.n_train + torch.arange(len(members)), EMPTY
        else:
            data = inf.train
            descend, ascend = sel[method]
        anchored = draw(torch.arange(inf.n_train), opts.anchor, gen, torch.cat([descend, ascend]),
                        "the anchor") if opts.anchor else EMPTY
        done = fixes_all(inf, self.judge, self.rest, member_data)
        keeps = keeps_for(torch.cat([descend, ascend])) if keeps_for is not None else None
        try:
            params, taken, guarded = finetune(inf, self.params0, self.rest, data, descend, ascend, anchored,
                                              opts.steps, self.lr, done if opts.stop_when_fixed else None, keeps)
            diverged = False
        except NumericalError:  # a step size too large for this selection's curvature: counts as not fixed
            params, taken, diverged, guarded = self.params0, 0, True, False
        reverted = opts.revert_unfixed and not diverged and not done(params)
        if reverted:  # a correction that did not fix its queries is not applied
            params = self.params0
        seconds = time.perf_counter() - t1 + (score_seconds if method == "influence" else 0.0)
        return params, self.outcomes(params, member_data, seconds, taken,
                                     [] if method == "query_itself" else descend.tolist(), ascend.tolist(),
                                     diverged, guarded, reverted)


def _options(influence: Influence, options: CorrectOptions | None, overrides: Mapping[str, Any]) -> CorrectOptions:
    unknown = sorted(set(overrides) - set(CorrectOptions.__dataclass_fields__))
    if unknown:
        raise ConfigError(f"unknown correct option(s) {unknown}; options are "
                          f"{sorted(CorrectOptions.__dataclass_fields__)}")
    opts = replace(options or CorrectOptions(), **overrides)
    return replace(opts, baselines=tuple(opts.baselines)).validate(influence.n_train)


def correct(influence: Influence, queries: Any, *, heldout: Any | None = None, indices: Sequence[int] | None = None,
            options: CorrectOptions | None = None, save: str | Path | None = None, progress: bool = True,
            **overrides: Any) -> Correction:
    """Fix mis-predicted queries by ``steps`` SGD steps (rate ``lr``) from the checkpoint on their top-``k`` proponents
    (descent), top-``k`` opponents (ascent) or both, ranked by ``score(q, i) = ∇ℓ(q)ᵀ H⁻¹ ∇ℓ(zᵢ)``.

    What a mistake is comes from the task's judge (``Task.judge``): a classifier's wrong class, a regressor's
    ``|ŷ − y| > tolerance`` (``tolerance`` here overrides the task's; a regression without one is refused).
    ``influence`` must be fitted; it is only read (``top``/``scores``, its λ_max), never fitted or refitted here.
    The budget is a :class:`CorrectOptions` (``options``, or its fields as keyword arguments). ``lr=None`` takes
    :func:`default_lr`. ``anchor`` adds that many other (seeded random) training examples to every step, at total
    weight equal to the selection's, to hold the rest of the model in place. ``stop_when_fixed`` stops a correction
    at the first step after which its queries are all right. ``guard`` (a number of seeded training examples, the
    same for every selection) stops a correction before the first step after which more than ``guard_drop`` of
    them have turned wrong (the outcome's ``guarded``). ``revert_unfixed`` returns a correction that has not fixed
    its queries to the checkpoint (its outcome ``reverted``). ``rank_by="horizon"`` ranks by the run's fit with the
    horizon filter of these steps and lr, ``rank_by="unrolled"`` by the exact derivative through these very steps
    (:mod:`ifscope.experiments.correct_ranking`).

    ``queries`` hold their targets; ``indices`` picks positions among them (default: every mis-predicted one).
    Queries already right are skipped unless ``include_correct``. ``group=True`` makes one correction for all
    queries from the summed scores. ``heldout`` (examples not among the queries) measures side effects with the
    judge's held-out figure (accuracy, squared error, ...). ``baselines`` spend the same budget on ``random``
    training examples, ``random_same_class`` ones (descent on the query's class or group, ascent on the predicted
    class; only where the judge defines groups) and, as a reference only, the query itself. ``save`` writes the
    corrected parameters as safetensors (keys ``query{i}/{name}`` or ``group/{name}``).
    """
    est = fitted(influence)
    opts = _options(influence, options, overrides)
    judge = judge_for(influence, opts.tolerance)
    q_data = as_dataset(queries, "queries")
    lr = default_lr(influence) if opts.lr is None else float(opts.lr)
    # the checkpoint the influence was fitted at: corrections start here, never from the (possibly changed) model
    params0 = {n: v.detach().clone() for n, v in est.ctx.params.items()}
    rest = dict(est.ctx.rest)
    before = evaluate(influence, judge, params0, rest, q_data, values=True)
    chosen, skipped = choose(before.wrong, indices, opts.include_correct)
    heldout_state = h_before = None
    if heldout is not None:
        h_data = as_dataset(heldout, "heldout")
        h0 = evaluate(influence, judge, params0, rest, h_data)
        heldout_state, h_before = (h_data, ~h0.wrong), (float(h0.held_out.mean()), float(h0.loss.mean()))
    config = {**{f: getattr(opts, f) for f in ("k", "steps", "strategy", "anchor", "stop_when_fixed", "guard",
                                               "guard_drop", "revert_unfixed", "group", "seed",
                                               "include_correct", "rank_by", "tolerance")},
              "lr": lr, "lr_default": opts.lr is None, "method": influence.method, "judge": judge.kind}
    if not chosen:
        return Correction([], skipped, {}, config, h_before, None, 0.0, heldout_name=judge.held_out_name)
    run = _Run(influence, judge, opts, lr, params0, rest, q_data, heldout_state)
    result = _correct_all(run, chosen, skipped, before, config, h_before, progress)
    if save is not None:
        save_params(result, save)
    return result


def _correct_all(run: _Run, chosen: list[int], skipped: list[int], before: Judged, config: dict[str, Any],
                 h_before: tuple[float, float] | None, progress: bool) -> Correction:
    """Every selection rule's correction of every chosen query (or of the group), as a :class:`Correction`."""
    influence, opts = run.influence, run.opts
    t_score = time.perf_counter()
    ranker = ranking_source(influence, opts.rank_by, opts.steps, run.lr)
    sels = selections(ranker, run.judge, run.q_data, chosen, opts)
    score_seconds = (time.perf_counter() - t_score) / len(sels)
    results: dict[int, dict[str, Outcome]] = {i: {} for i in chosen}
    params_out: dict[int | str, Params] = {}
    group_outcomes: dict[str, Outcome] | None = {} if opts.group else None
    methods = ["influence", *[b for b in METHODS[1:] if b in opts.baselines and (b in sels[0] or b == "query_itself")]]
    gen = torch.Generator().manual_seed(opts.seed + 1)   # anchors: their own stream, apart from the baselines' draws
    keeps_for = guard(influence, run.judge, run.params0, run.rest, opts) if opts.guard else None
    bar = progress_bar("corrections", len(sels) * len(methods), progress)
    for r, sel in enumerate(sels):
        members = [chosen[r]] if not opts.group else chosen
        for method in methods:
            params, outs = run.one(members, method, sel, gen, keeps_for, score_seconds)
            for i, out in zip(members, outs):
                results[i][method] = out
            if group_outcomes is not None:
                group_outcomes[method] = outs[0]
            if method == "influence":
                params_out["group" if opts.group else chosen[r]] = params
            bar.update(1)
    bar.close()
    per_query = [QueryCorrection(i, before.targets[i], before.predictions[i], float(before.loss[i]), results[i])
                 for i in chosen]
    inf_seconds = [results[i]["influence"].seconds for i in chosen]
    seconds_per = sum(inf_seconds) / len(inf_seconds) if not opts.group else inf_seconds[0]
    return Correction(per_query, skipped, params_out, config, h_before, seconds_per, 0.0, group_outcomes,
                      heldout_name=run.judge.held_out_name)


def split_mispredicted(influence: Influence, data: Any, n: int | None = None, indices: Sequence[int] | None = None,
                       tolerance: float | None = None) -> tuple[list[int], list[int]]:
    """``(query positions, held-out positions)`` in ``data``: the queries are ``indices`` or else the first ``n``
    (default all) examples the fitted checkpoint gets wrong (by the task's judge, ``tolerance`` overriding a
    regressor's); the held-out set is every other example."""
    est = fitted(influence)
    d = as_dataset(data, "test")
    if indices is not None:
        queries = list(dict.fromkeys(int(i) for i in indices))
        bad = [i for i in queries if not 0 <= i < len(d)]
        if bad:
            raise ConfigError(f"query indices {bad[:5]} are outside the {len(d)} test examples")
    else:
        if n is not None and (not isinstance(n, int) or n < 1):
            raise ConfigError(f"the number of queries must be a positive integer, got {n!r}")
        judge = judge_for(influence, tolerance)
        queries = evaluate(influence, judge, est.ctx.params, est.ctx.rest, d).wrong.nonzero()[:, 0].tolist()[:n]
    taken = set(queries)
    return queries, [i for i in range(len(d)) if i not in taken]
