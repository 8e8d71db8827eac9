"""What a correction did: per query and per selection rule, its effect on the query and on a held-out set."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import ConfigError
from ..core.files import atomic_write_bytes
from ..core.params import Params


@dataclass
class Outcome:
    """One correction's effect: on the query (its loss, the prediction) and on the held-out set (``heldout_figure``
    is the mean of the judge's held-out figure; ``heldout_accuracy`` the same when that figure is accuracy)."""

    fixed: bool
    loss_after: float
    predicted_after: Any                                 # class index, real value, or the judge's text
    heldout_accuracy: float | None
    heldout_loss: float | None
    broken: int | None
    seconds: float
    steps: int                                           # SGD steps taken (fewer than asked when stopped early)
    selected: list[int] = field(default_factory=list)   # training examples descended on
    ascended: list[int] = field(default_factory=list)   # training examples ascended on
    diverged: bool = False                               # the steps blew up (NaN/inf); the checkpoint is kept
    guarded: bool = False                                # stopped before a step that cost the guard too much
    reverted: bool = False                               # not fixed, so returned to the checkpoint (revert_unfixed)
    heldout_figure: float | None = None                  # mean of the judge's held-out figure (accuracy, ...)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class QueryCorrection:
    """Per query: its position in the query set, target, prediction and loss before, and one outcome per method
    (targets and predictions as the judge gives them: class indices, real values or text)."""

    index: int
    label: Any
    predicted_before: Any
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
    heldout_before: tuple[float, float] | None   # (held-out figure, mean loss) of the checkpoint on the held-out set
    seconds_per_correction: float | None       # None when there was nothing to correct
    fit_seconds: float
    group_outcomes: dict[str, Outcome] | None = None
    heldout_name: str = "accuracy"             # the judge's held-out figure: accuracy, squared error, NLL/token

    @property
    def n_queries(self) -> int:
        return len(self.queries)

    def methods(self) -> list[str]:
        return list(self.queries[0].outcomes) if self.queries else []

    def fix_rate(self, method: str = "influence") -> float:
        """Fraction of the corrected queries the judge counts right after ``method``'s correction."""
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
                "heldout_figure_after": _mean([o.heldout_figure for o in outs]),
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
        accuracy = before if self.heldout_name == "accuracy" else None
        return {
            "n_queries": self.n_queries,
            "fix_rate": {m: per[m]["fix_rate"] for m in methods},
            "heldout_accuracy": {"before": accuracy[0] if accuracy else None,
                                 "after": inf.get("heldout_accuracy_after")},
            "heldout_figure": {"name": self.heldout_name, "before": before[0] if before else None,
                               "after": inf.get("heldout_figure_after")},
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


__all__ = ["Correction", "Outcome", "QueryCorrection", "save_params"]
