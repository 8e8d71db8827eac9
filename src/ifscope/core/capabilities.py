"""Which derivative transforms a model supports, probed once per model, parameter selection, dtype and device.

Some PyTorch kernels lack a forward-mode derivative (the float32 CPU LSTM's ``mkldnn_rnn_layer``) or a ``vmap``
batching rule (LSTM in float64, GRU), and fail only when the transform runs. Probing both on two examples before
anything is computed lets projections take the path that works (``jvp`` ↔ ``vmap``) and per-example gradients
fall back to a loop of ordinary gradients, each fallback announced once with its reason.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import grad, jvp, vmap
from torch.utils._pytree import tree_map

from .data import Batch, batch_len
from .params import Params

PROBE_ROWS = 2  # examples a probe runs on: enough for vmap to batch, cheap on any model
_probed: weakref.WeakKeyDictionary[nn.Module, dict[tuple, Capabilities]] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class Capabilities:
    """What the model supports at one dtype: ``forward_ad`` / ``vmap_grad`` are ``None`` when the transform works,
    else the one-line reason it failed."""

    model: str
    dtype: str
    forward_ad: str | None = None
    vmap_grad: str | None = None

    @property
    def jvp_ok(self) -> bool:
        return self.forward_ad is None

    @property
    def vmap_ok(self) -> bool:
        return self.vmap_grad is None

    @property
    def tag(self) -> str:
        """``""`` when both transforms work, else which are missing (a suffix for kept decisions)."""
        missing = [name for name, ok in (("jvp", self.jvp_ok), ("vmap", self.vmap_ok)) if not ok]
        return "" if not missing else "|no-" + "-".join(missing)

    def fallbacks(self) -> list[str]:
        """One line per missing transform: what was chosen instead, and why."""
        out = []
        if not self.jvp_ok:
            out.append(f"{self.model} has no forward-mode derivative in {self.dtype} ({self.forward_ad}): gradient "
                       "projections use vmap(grad) instead of jvp; curvature='ggn' is unavailable")
        if not self.vmap_ok:
            instead = "forward-mode jvp" if self.jvp_ok else "a loop over examples"
            out.append(f"{self.model} does not run under vmap(grad) in {self.dtype} ({self.vmap_grad}): per-example "
                       f"gradients use a loop over examples, projections {instead}")
        return out

    def to_dict(self) -> dict[str, str | None]:
        return {"dtype": self.dtype, "forward_ad": self.forward_ad, "vmap_grad": self.vmap_grad}


def _reason(exc: BaseException) -> str:
    """``"ErrorType: first sentence"``: why a transform failed, in one line."""
    first = (str(exc).strip().splitlines() or [""])[0].split(". ")[0].rstrip(".")
    return f"{type(exc).__name__}: {first if len(first) <= 120 else first[:117] + '...'}"


def _key(params: Params) -> tuple:
    first = next(iter(params.values()))
    return tuple(params), str(first.dtype), first.device.type


def capabilities(task, params: Params, rest: Mapping[str, Tensor], batch: Batch) -> Capabilities:
    """The transforms ``task`` supports at ``params``' dtype, probed on the first rows of ``batch`` the first time
    (the plain loss is assumed to work: ``Task.check`` runs first) and remembered for the model."""
    known = _probed.setdefault(task.model, {})
    key = _key(params)
    if key not in known:
        known[key] = probe(task, params, rest, batch)
    return known[key]


def probe(task, params: Params, rest: Mapping[str, Tensor], batch: Batch) -> Capabilities:
    """Run one forward-mode JVP and one ``vmap(grad)`` of the per-example loss on two examples; record failures."""
    rows = tree_map(lambda t: t[:PROBE_ROWS], batch) if batch_len(batch) > PROBE_ROWS else batch
    first = next(iter(params.values()))
    found = {}
    tangent = {k: torch.ones_like(v) for k, v in params.items()}

    def one(p: Params, example: Batch) -> Tensor:
        return task.per_example_loss(p, rest, tree_map(lambda t: t.unsqueeze(0), example))[0]

    tries = {"forward_ad": lambda: jvp(lambda p: task.per_example_loss(p, rest, rows), (params,), (tangent,)),
             "vmap_grad": lambda: vmap(grad(one), in_dims=(None, 0))(params, rows)}
    for name, attempt in tries.items():
        try:
            attempt()
        except (RuntimeError, ValueError, TypeError, IndexError) as exc:  # NotImplementedError is a RuntimeError
            found[name] = _reason(exc)
    return Capabilities(type(task.model).__name__, str(first.dtype).replace("torch.", ""), **found)


def known_capabilities(model: nn.Module) -> list[Capabilities]:
    """Every probe made on ``model`` so far (one per parameter selection, dtype and device)."""
    return list(_probed.get(model, {}).values())
