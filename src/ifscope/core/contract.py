"""The model contract, checked before anything is computed: each example's loss depends on that example only, the
task reproduces the model's own forward, and the derivative transforms the model lacks are known (with the path
taken instead). A broken contract is a :class:`ModelError` naming the module and the fix, never a silent wrong score.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .capabilities import Capabilities, _reason, capabilities
from .data import Batch, as_dataset, batch_len, cast_batch, take
from .errors import DataError, ModelError
from .params import Params

EXAMPLES = 8  # rows the contract runs on: one batch, each row also alone
_said: weakref.WeakKeyDictionary[nn.Module, set[str]] = weakref.WeakKeyDictionary()
TOLERANCE = {torch.float64: 1e-6, torch.float32: 1e-4}  # relative to 1 + |value|: batched kernels reorder sums,
# and some models compute parts in float32 whatever the dtype (Llama's RMSNorm)


@dataclass
class ModelContract:
    """What :func:`check_model` found: the largest gap between an example's loss alone and inside a batch, between
    the task's output and the model's own forward (``None``: nothing to compare), and the transforms probed."""

    model: str
    examples: int
    batch_gap: float
    forward_gap: float | None
    capabilities: list[Capabilities] = field(default_factory=list)
    unsupported: dict[str, str] = field(default_factory=dict)  # dtype name -> why the loss fails in it

    @property
    def fallbacks(self) -> list[str]:
        """One line per transform or dtype the model lacks: what is used instead and why."""
        return [*(f"{self.model} does not run in {dtype} ({why}): fade's ground truth and reference methods run in "
                  "float32" for dtype, why in self.unsupported.items()),
                *(line for c in self.capabilities for line in c.fallbacks())]

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "examples": self.examples, "batch_gap": self.batch_gap,
                "forward_gap": self.forward_gap, "capabilities": [c.to_dict() for c in self.capabilities],
                "unsupported": self.unsupported,
                "fallbacks": self.fallbacks}


def _tolerance(dtype: torch.dtype) -> float:
    return TOLERANCE.get(dtype, 1e-2)


def _gap(a: Tensor, b: Tensor) -> float:
    return float(((a - b).abs() / (1 + b.abs())).max()) if a.numel() else 0.0


def _batch_statistics(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """BatchNorm modules that normalise by the batch: in training mode, or without running statistics."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
            and (m.training or not m.track_running_stats)]


def _fix(name: str, module: nn.Module) -> str:
    what = f"module {name!r} ({type(module).__name__})"
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        stats = "in training mode" if module.training else "without running statistics (track_running_stats=False)"
        return (f"{what} normalises with batch statistics {stats}; call model.eval() with running statistics "
                "(track_running_stats=True), or use LayerNorm/GroupNorm")
    if module.training:
        return (f"{what} stays in training mode although ifscope calls model.eval(); let its train(False) take "
                "effect (dropout and batch statistics off)")
    return f"{what} mixes the examples of a batch; make each example's output depend on that example only"


def _outputs(task: Any, params: Params, rest: Mapping[str, Tensor], batch: Batch) -> list[tuple[str, Tensor]]:
    """``(module name, output)`` of every module whose output is a tensor, in the order the modules finished."""
    seen: list[tuple[str, Tensor]] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out, n=n: seen.append((n, out)) if isinstance(out, Tensor)
                                     else None) for n, m in task.model.named_modules() if n]
    try:
        with torch.no_grad():
            task.forward(params, rest, batch)
    finally:
        for h in hooks:
            h.remove()
    return seen


def _culprit(task: Any, params: Params, rest: Mapping[str, Tensor], batch: Batch, alone: Batch,
             row: int) -> tuple[str, nn.Module] | None:
    """The first module (in the order modules finish) whose output for ``row`` differs between ``batch`` and
    ``alone`` (that row as a batch of one)."""
    modules = dict(task.model.named_modules())
    together, single = _outputs(task, params, rest, batch), _outputs(task, params, rest, alone)
    tol, n = _tolerance(next(iter(params.values())).dtype), batch_len(batch)
    for (name, out), (name1, out1) in zip(together, single):
        if name != name1:
            break
        if out.dim() and out.shape[0] == n and out1.shape[0] == 1 and out.shape[1:] == out1.shape[1:] \
                and _gap(out[row], out1[0]) > tol:
            return name, modules[name]
    return None


def _independence(task: Any, params: Params, rest: Mapping[str, Tensor], data: Any, n: int,
                  dtype: torch.dtype) -> float:
    """Raise a ModelError unless each of the first ``n`` examples has the same loss alone as inside their batch."""
    batch = task.cast(take(data, range(n)), dtype)
    with torch.no_grad():
        together = task.per_example_loss(params, rest, batch)
    gap = 0.0
    for i in range(n):
        alone = task.cast(take(data, [i]), dtype)
        try:
            with torch.no_grad():
                own = task.per_example_loss(params, rest, alone)[0]
        except (RuntimeError, ValueError) as exc:
            found = _batch_statistics(task.model)
            why = _fix(*found[0]) if found else "make each example's output depend on that example only"
            raise ModelError(f"the model is not per-example: it fails on a single example "
                             f"({type(exc).__name__}: {str(exc).splitlines()[0][:100]}); {why}") from None
        gap = max(gap, _gap(own.reshape(1), together[i].reshape(1)))
        if gap > _tolerance(dtype):
            found = _culprit(task, params, rest, batch, alone, i) or next(iter(_batch_statistics(task.model)), None)
            why = _fix(*found) if found else "make each example's output depend on that example only"
            raise ModelError(f"the model is not per-example: example {i}'s loss is {float(own):.6g} alone but "
                             f"{float(together[i]):.6g} inside a batch of {n}; {why}")
    return gap


def _reproduction(task: Any, params: Params, rest: Mapping[str, Tensor], data: Any, n: int) -> float | None:
    """Raise a ModelError unless the task's output equals the model's own forward (where the task defines one)."""
    raw = take(data, range(n))
    first = next(iter(params.values()))
    with torch.no_grad():
        own = task.own_forward(cast_batch(raw, first.dtype, first.device))
        if own is None:
            return None
        ours = task.forward(params, rest, task.cast(raw, first.dtype))
    if ours.shape != own.shape:
        raise ModelError(f"the task's output has shape {tuple(ours.shape)} but the model's own forward "
                         f"{tuple(own.shape)}; the task does not compute the model's output")
    gap = _gap(ours, own)
    if gap > _tolerance(first.dtype):
        raise ModelError(f"the task's output differs from {type(task.model).__name__}'s own forward by up to "
                         f"{float((ours - own).abs().max()):.3g} on the first {n} examples: the task does not "
                         "compute the model (e.g. a lost causal or padding mask); build it with "
                         "ifscope.hf_classification(model) or give the Task an inputs adapter that passes the "
                         "model's own inputs")
    return gap


def check_model(task: Any, data: Any, dtype: torch.dtype | None = None, examples: int = EXAMPLES,
                dtypes: tuple[torch.dtype, ...] = ()) -> ModelContract:
    """Check the model contract on the first ``examples`` of ``data``: ``ℓ(z alone) = ℓ(z in a batch)``, the task's
    output = the model's own forward, and which of ``jvp`` / ``vmap(grad)`` work in ``dtype`` (default: the model's)
    and each of ``dtypes``. Raises :class:`ifscope.ModelError` with the module and the fix when the contract is
    broken; returns what was found, with the fallbacks taken (``.fallbacks``)."""
    data = as_dataset(data, "data")
    n = min(len(data), examples)  # type: ignore[arg-type]
    with task.evaluating():
        params, rest = task.state()
        task.check(params, rest, task.cast(take(data, range(n)), next(iter(params.values())).dtype),
                   f"first {n} examples")  # shapes and labels first: a clear DataError, not a failing probe
        gap = _reproduction(task, params, rest, data, n)
        found, batch_gap, unsupported = [], 0.0, {}
        for want in dict.fromkeys([dtype or next(iter(params.values())).dtype, *dtypes]):
            why = float64_failure(task, data) if want == torch.float64 else None
            if why is not None and want == dtype:
                raise DataError(f"{type(task.model).__name__} does not run in float64 ({why}); use "
                                "dtype=torch.float32")
            if why is not None:  # an extra dtype the model cannot run in: said, not refused
                unsupported[str(want).replace("torch.", "")] = why
                continue
            params, rest = task.state(want)
            batch_gap = max(batch_gap, _independence(task, params, rest, data, n, want))
            found.append(capabilities(task, params, rest, task.cast(take(data, range(min(n, 2))), want)))
    return ModelContract(type(task.model).__name__, n, batch_gap, gap, found, unsupported)


def float64_failure(task: Any, data: Any) -> str | None:
    """Why the per-example loss fails in float64 on the first two examples (e.g. a model that casts its input to
    float32), or ``None`` when it runs."""
    data = as_dataset(data, "data")
    params, rest = task.state(torch.float64)
    try:
        with task.evaluating(), torch.no_grad():
            task.per_example_loss(params, rest, task.cast(take(data, range(min(2, len(data)))), torch.float64))
    except (RuntimeError, TypeError, ValueError) as exc:
        return _reason(exc)
    return None


def float32_fallback(task: Any, data: Any, wanted: Sequence[str | None], what: str) -> str | None:
    """The one line to announce when ``"float64"`` is among the precisions ``wanted`` and the model cannot run in it
    (:func:`float64_failure`): ``what`` then runs in float32; ``None`` when nothing changes."""
    if "float64" not in wanted:
        return None
    why = float64_failure(task, data)
    return None if why is None else f"{type(task.model).__name__} does not run in float64 ({why}): {what} run in float32"


def announced(model: nn.Module, lines: list[str]) -> list[str]:
    """The ``lines`` not yet said about ``model`` in this process (now marked as said): one message per fallback,
    however many estimators are fitted on the model."""
    said = _said.setdefault(model, set())
    fresh = [line for line in lines if line not in said]
    said.update(fresh)
    return fresh
