"""Input validation and numerical-health checks, called from one line each in the core.

The cheap checks run on every call (parameters finite, recipe shape). The locating checks run only on the
error path: when a transform returns NaN/inf, they re-evaluate the plain loss batch by batch to say *where*
it first went wrong (which dataset, which batch, which rows), so the happy path pays nothing.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import Tensor

from .data import Batch
from .errors import ConfigError, NonFiniteError, NumericalError, NumericalWarning

TINY_EIGENVALUE_RATIO = 1e-6  # kept eigenvalues below this fraction of the largest make 1/λ blow up noise


def check_finite_params(params: Mapping[str, Tensor]) -> None:
    """Raise unless every parameter tensor is finite: ``∀ θ_k ∈ params: θ_k ∈ ℝ``."""
    bad = [n for n, p in params.items() if p.is_floating_point() and not bool(torch.isfinite(p).all())]
    if bad:
        raise NumericalError(f"model parameter(s) {bad[:3]} hold NaN or inf values: the checkpoint is broken "
                             "(e.g. training diverged); load a good checkpoint before computing influence")


def _nonfinite_rows(losses: Tensor) -> list[int]:
    return (~torch.isfinite(losses)).reshape(len(losses), -1).any(1).nonzero()[:5, 0].tolist()


def locate_nonfinite_loss(task: Any, params: Mapping[str, Tensor], rest: Mapping[str, Tensor],
                          batches: Iterable[tuple[Tensor | None, Batch]], what: str, first: int = 0) -> str | None:
    """Where the plain per-example loss is first NaN/inf: ``"batch b of the <what> (examples i..j); ..."``.

    ``batches`` yields ``(positions, batch)`` numbered from ``first``; ``positions`` may be ``None`` when unknown.
    Returns ``None`` when the loss is finite everywhere (the NaN then arose in a derivative, not in the loss).
    """
    with torch.no_grad():
        for b, (pos, batch) in enumerate(batches, first):
            losses = task.per_example_loss(dict(params), rest, batch)
            if bool(torch.isfinite(losses).all()):
                continue
            rows = _nonfinite_rows(losses)
            if pos is None:
                return f"batch {b} of the {what} (rows {rows} of that batch)"
            ids = [int(pos[r]) for r in rows]
            return (f"batch {b} of the {what} (examples {int(pos[0])}..{int(pos[-1])}); the loss is NaN or inf "
                    f"for example(s) {ids}")
    return None


def nonfinite_error(quantity: str, location: str | None, where: str) -> NonFiniteError:
    """A ``NonFiniteError`` for a NaN/inf ``quantity``, naming the batch whose loss is non-finite if one was found."""
    if location is not None:
        exc = NonFiniteError(f"{quantity} are NaN or inf because the loss is NaN or inf at {location}; check "
                             "those examples and the model's forward pass on them (log/sqrt/division of "
                             "non-positive values, overflow), or use dtype=torch.float64")
    else:
        exc = NonFiniteError(f"{quantity} are NaN or inf at {where}, although the loss itself is finite there: its "
                             "derivatives overflow (e.g. sqrt or abs at 0, huge activations); use dtype=torch.float64 "
                             "or check the model's forward pass")
    exc.located = True  # type: ignore[attr-defined]  # callers up the stack keep this message
    return exc


def explain_failure(task: Any, params: Mapping[str, Tensor], rest: Mapping[str, Tensor],
                    batches: Iterable[tuple[Tensor | None, Batch]], what: str, first: int = 0) -> None:
    """After a transform failed, run ``task.check`` batch by batch: raise its clear ``DataError`` if one applies."""
    for b, (pos, batch) in enumerate(batches, first):
        span = f" (examples {int(pos[0])}..{int(pos[-1])})" if pos is not None else ""
        task.check(dict(params), rest, batch, f"{what}, batch {b}{span}")


def embed_located(embed: Callable[[Batch], Tensor], task: Any, params: Mapping[str, Tensor],
                  rest: Mapping[str, Tensor], pos: Tensor, batch: Batch, index: int, what: str, desc: str) -> Tensor:
    """``embed(batch)``; a NaN/inf or a bad-input failure is re-raised naming batch ``index`` of ``what`` and its examples."""
    try:
        return embed(batch)
    except (RuntimeError, IndexError):  # e.g. a label out of range past the rows checked up front
        explain_failure(task, params, rest, [(pos, batch)], what, first=index)
        raise
    except NonFiniteError as exc:
        if getattr(exc, "located", False):  # e.g. a Hessian-vector product of CG, already placed in the Hessian sample
            raise
        loc = locate_nonfinite_loss(task, params, rest, [(pos, batch)], what, first=index)
        where = f"batch {index} of the {what} (examples {int(pos[0])}..{int(pos[-1])})"
        raise nonfinite_error(f"the {desc}", loc, where) from exc


def arnoldi_health(breakdown: bool, steps: int, requested: int, dim: int, rank: int, kept: Tensor,
                   damping: float = 0.0, threshold: float = TINY_EIGENVALUE_RATIO) -> list[str]:
    """Warn about an early Arnoldi breakdown, fewer kept eigenpairs than ``rank``, and ``|λ_min|/|λ_max| < threshold``.

    Returns the warning messages (also emitted as :class:`NumericalWarning`), so callers can record them.
    """
    messages = []
    if breakdown and steps < min(requested, dim):
        messages.append(f"Arnoldi broke down after {steps} of {requested} iterations: the Krylov space of the "
                        f"curvature is invariant after {steps} steps (the Hessian sample has about {steps} distinct "
                        "eigenvalues reachable from the start vector). The basis is exact on that space but cannot "
                        "hold more directions; this is expected for low-rank curvature, otherwise check the "
                        "Hessian sample (hessian_samples=...) and the parameter selection")
    if len(kept) < rank:
        messages.append(f"kept only {len(kept)} eigenpairs of rank={rank}: the Krylov space held no more "
                        "eigenvalues passing the selection rule; raise iterations=..., or use select='magnitude' "
                        "to keep negative ones too")
    eff = (kept.double() + damping).abs()
    if len(eff) and float(eff.max()) > 0:
        ratio = float(eff.min() / eff.max())
        if ratio < threshold:
            messages.append(f"the smallest kept eigenvalue is {ratio:.2g} x the largest (below {threshold:g}): its "
                            "1/λ amplifies noise in the scores; lower rank=..., or add damping=... (e.g. "
                            f"{threshold:g} x the top eigenvalue {float(eff.max()):.3g})")
    for m in messages:
        warnings.warn(m, NumericalWarning, stacklevel=3)
    return messages


def check_recipe(recipe: Any, spec: str) -> None:
    """Raise unless ``recipe`` holds a module, a Task over that module, and usable train/test datasets."""
    from torch import nn

    from .data import as_dataset
    from .task import Task
    if not isinstance(recipe.model, nn.Module):
        raise ConfigError(f"recipe {spec!r} returned model={type(recipe.model).__name__}; it must be a torch.nn.Module")
    if not isinstance(recipe.task, Task):
        raise ConfigError(f"recipe {spec!r} returned task={type(recipe.task).__name__}; it must be an ifscope.Task, "
                          "e.g. ifscope.classification(model)")
    if recipe.task.model is not recipe.model:
        raise ConfigError(f"recipe {spec!r}: its task wraps a different model object than recipe.model; build the "
                          "task from the same model, e.g. task=ifscope.classification(model)")
    for name in ("train", "test"):
        as_dataset(getattr(recipe, name), f"{name} set")


def check_sizes(rank: int, iterations: int, dim: int) -> None:
    """Raise unless ``1 ≤ rank ≤ min(dim, iterations)``."""
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ConfigError(f"rank must be a positive integer, got {rank!r}")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ConfigError(f"iterations must be a positive integer, got {iterations!r}")
    if rank > dim:
        raise ConfigError(f"rank={rank} exceeds the {dim} selected parameters; use rank <= {dim}")
    if rank > iterations:
        raise ConfigError(f"rank={rank} exceeds iterations={iterations}: Arnoldi finds at most one eigenpair per "
                          "iteration; raise iterations (about 2-4 x rank)")
