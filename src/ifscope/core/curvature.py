"""Curvature of the training loss ``L(θ) = (1/N) Σ ℓ(zᵢ, θ) + (wd/2)‖θ‖²`` as matrix-vector products on flat vectors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.func import grad, jvp, vjp

from .batching import check_batching, choose
from .capabilities import capabilities
from .checks import explain_failure, locate_nonfinite_loss, nonfinite_error
from .data import Batch, batch_len
from .errors import ConfigError
from .params import Params, ParamSpace
from .task import Task

# bytes the products of one vmapped call may hold at once: more rows per call run faster, fewer hold less (on a
# transformer block 16 rows took gigabytes); benchmarks/scale.py reports the fit's seconds and peak RSS on tweets-minilm
ROWS_MEMORY_BUDGET = 2**30
PRODUCT_MEMORY_FACTOR = 3  # one reverse-over-reverse product holds about this many times a forward's saved tensors


def saved_bytes(fn, params: Params) -> int:
    """Bytes of the tensors autograd saves for the backward of ``fn(params)``: the activation memory of one pass."""
    total = 0

    def pack(t: Tensor) -> Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t
    leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}
    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(leaves)
    return total


@dataclass
class BatchingChoice:
    """How batched curvature products were measured faster: ``vmap`` or ``loop``."""

    batching: str


class Curvature:
    """``v ↦ (∇²L + damping·I) v`` (``kind="hessian"``, reverse-over-reverse) or the Gauss-Newton ``Jᵀ ∇²ℓ J v``.

    The loss is averaged over ``batches`` (a fixed sample of the training set, so that the operator is
    deterministic); weight decay ``wd`` adds ``wd·I``, as the L2 term it comes from.
    """

    def __init__(self, task: Task, params: Params, rest: Mapping[str, Tensor], batches: Sequence[Batch],
                 weight_decay: float = 0.0, damping: float = 0.0, kind: str = "hessian", batching: str = "auto"):
        if kind not in ("hessian", "ggn"):
            raise ConfigError(f"unknown curvature kind {kind!r}; use 'hessian' or 'ggn'")
        self.task, self.params, self.rest = task, params, dict(rest)
        self.batches = list(batches)
        self.n = sum(batch_len(b) for b in self.batches)
        self.space = ParamSpace(params)
        self.weight_decay, self.damping, self.kind = float(weight_decay), float(damping), kind
        self.calls = 0  # number of curvature-vector products, for reporting cost
        self.positions: list[Tensor] | None = None  # training positions of each batch, for error messages
        self.batching = check_batching(batching)  # rows of matmat by vmap or a loop; "auto" measures on first use
        self._rows: int | None = None  # products per vmapped call within ROWS_MEMORY_BUDGET, measured on first use
        if kind == "ggn" and self.batches:
            caps = capabilities(task, params, rest, self.batches[0])
            if not caps.jvp_ok:
                raise ConfigError(f"curvature='ggn' needs forward-mode derivatives, which {caps.model} lacks in "
                                  f"{caps.dtype} ({caps.forward_ad}); use curvature='hessian'")

    @property
    def dim(self) -> int:
        return self.space.dim

    def _batch_loss(self, batch: Batch):
        def f(p: Params) -> Tensor:
            return self.task.per_example_loss(p, self.rest, batch).sum() / self.n
        return f

    def _hvp_dict(self, v: Params) -> Params:
        out = {k: torch.zeros_like(t) for k, t in v.items()}
        for batch in self.batches:
            if self.kind == "hessian":
                # reverse-over-reverse: H symmetric, so vᵀH = Hv; faster than jvp-of-grad on CPU (benchmarks/floor.py times both)
                _, pullback = vjp(grad(self._batch_loss(batch)), self.params)
                hv = pullback(v)[0]
            else:
                hv = self._ggn_batch(batch, v)
            for k in out:
                out[k] = out[k] + hv[k]
        return out

    def _ggn_batch(self, batch: Batch, v: Params) -> Params:
        targets = self.task.targets(batch)

        def logits(p: Params) -> Tensor:
            return self.task.forward(p, self.rest, batch)

        def out_loss(z: Tensor) -> Tensor:
            return self.task.loss(z, targets).sum() / self.n

        z, jv = jvp(logits, (self.params,), (v,))
        _, hjv = jvp(grad(out_loss), (z,), (jv,))
        _, pullback = vjp(logits, self.params)
        return pullback(hjv)[0]

    def matvec(self, v: Tensor) -> Tensor:
        """``(∇²L + (wd + damping) I) v`` for a flat vector ``v``."""
        return self.matmat(v.unsqueeze(0))[0]

    def matmat(self, vs: Tensor, chunk: int = 64) -> Tensor:
        """Rows of ``vs`` ([m, dim]) each multiplied by the curvature, vectorised over rows in chunks."""
        try:
            return self._matmat(vs, chunk)
        except (RuntimeError, IndexError):  # a bad batch past the rows checked up front: say which one
            explain_failure(self.task, self.params, self.rest, self._located(), "Hessian sample of the training set")
            raise

    def _located(self) -> list:
        return list(zip(self.positions or [None] * len(self.batches), self.batches))

    def rows_per_call(self) -> int:
        """How many products one vmapped call may batch: ``ROWS_MEMORY_BUDGET`` over a product's memory, estimated as
        ``PRODUCT_MEMORY_FACTOR`` × the bytes autograd saves for one forward of the largest batch (a transformer's
        activations, not its parameter count, are what 16 vmapped products multiply)."""
        if self._rows is None:
            biggest = max(self.batches, key=batch_len, default=None)
            per = 0 if biggest is None else saved_bytes(self._batch_loss(biggest), self.params)
            self._rows = max(1, ROWS_MEMORY_BUDGET // max(1, PRODUCT_MEMORY_FACTOR * per))
        return self._rows

    def _matmat(self, vs: Tensor, chunk: int) -> Tensor:
        if len(vs) > 1:
            chunk = max(1, min(chunk, self.rows_per_call()))
        outs = []
        for start in range(0, len(vs), chunk):
            block = vs[start:start + chunk]
            if len(block) == 1:
                hv = self.space.flatten(self._hvp_dict(self.space.unflatten(block[0]))).unsqueeze(0)
            else:
                hv = self._batched(block)
            outs.append(hv)
        out = torch.cat(outs) + (self.weight_decay + self.damping) * vs
        self.calls += len(vs)
        if not torch.isfinite(out).all():
            raise nonfinite_error("Hessian-vector products", locate_nonfinite_loss(
                self.task, self.params, self.rest, self._located(), "Hessian sample of the training set"),
                "these parameters")
        return out

    def _batched(self, block: Tensor) -> Tensor:
        """Products of the rows of ``block`` by vmap or a loop: for ``"auto"`` the choice measured once per model shape,
        block size and machine, kept in ``ifscope.core.decisions`` (a fresh process need not measure again)."""
        def row(v: Tensor) -> Tensor:
            return self.space.flatten(self._hvp_dict(self.space.unflatten(v)))
        if self.batching != "auto":
            return choose(self.batching, (id(self.task.model), "curvature"), row, (block,))[1]
        from .decisions import decided, path_key
        key = f"curvature|{self.kind}|n={self.n}|" + path_key(self.params, len(block), max(map(batch_len, self.batches)),
                                                               block.dtype, block.device)

        def measure() -> tuple[BatchingChoice, Tensor]:
            how, out = choose("auto", (id(self.task.model), "curvature", len(block)), row, (block,))
            return BatchingChoice(how), out
        decision, out = decided(key, measure, kind=BatchingChoice)
        self.batching = decision.batching
        return out if out is not None else choose(self.batching, (), row, (block,))[1]

    def dense(self, chunk: int = 128) -> Tensor:
        """The full ``dim × dim`` matrix (symmetrised), for models small enough to hold it."""
        if self.dim > 20_000:
            raise ConfigError(f"the dense Hessian of {self.dim} parameters would need "
                              f"{self.dim ** 2 * 4 / 2**30:.1f} GiB; use method='arnoldi' or 'cg', or select fewer "
                              "parameters")
        first = next(iter(self.params.values()))
        eye = torch.eye(self.dim, dtype=first.dtype, device=first.device)
        h = self.matmat(eye, chunk=chunk)
        return (h + h.T) / 2

    def loss_and_grad(self) -> tuple[float, Tensor]:
        """``(L(θ), ∇L(θ))`` of the regularised loss on the sample, the gradient flat."""
        first = next(iter(self.params.values()))
        total, g = 0.0, torch.zeros(self.dim, dtype=first.dtype, device=first.device)
        for batch in self.batches:
            gb = grad(self._batch_loss(batch))(self.params)
            g = g + self.space.flatten(gb)
            with torch.no_grad():
                total += float(self._batch_loss(batch)(self.params))
        theta = self.space.flatten(self.params)
        total += 0.5 * self.weight_decay * float(theta @ theta)
        return total, g + self.weight_decay * theta
