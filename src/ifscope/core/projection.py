"""Per-example gradients ``gᵢ = ∇ℓ(zᵢ)`` and their projections ``gᵢ·uⱼ`` onto a basis, by ``vmap`` or forward-mode JVPs."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch.func import grad, jvp, vmap
from torch.utils._pytree import tree_map

from .capabilities import Capabilities, capabilities
from .data import Batch, batch_len
from .errors import ConfigError, NonFiniteError
from .params import Params, ParamSpace
from .task import Task

PATHS = ("auto", "jvp", "vmap")
DEFAULT_MEMORY_BUDGET = 512 * 2**20  # bytes of per-example gradients the vmap path may hold at once
# Without a measurement (`project(path="auto")` called on its own): below this many directions, k batched JVPs beat
# materialising per-example gradients at every size measured (2k-120k parameters, batch 128, CPU):
# `python benchmarks/floor.py --paths`, table in docs/performance.md. Estimators measure instead (measure_paths).
VMAP_MIN_RANK = 96
JVP_CHUNK = 64  # tangents pushed through one vmapped JVP (the primal forward is shared by all of them)


def _finite(t: Tensor, what: str) -> Tensor:
    # one reduction instead of an elementwise mask: NaN and ±inf survive a sum, so a finite sum proves every element
    # finite (only an overflowing sum of finite values needs the full check)
    if not torch.isfinite(t.sum()) and not torch.isfinite(t).all():
        raise NonFiniteError(f"{what} are NaN or inf; check the inputs, the checkpoint, or use dtype=torch.float64")
    return t


def _rows(batch: Batch, start: int, stop: int) -> Batch:
    return tree_map(lambda t: t[start:stop], batch)


def per_example_grad_dict(task: Task, params: Params, rest: Mapping[str, Tensor], batch: Batch) -> Params:
    """``{name: [B, *shape]}``: each example's loss gradient per parameter tensor, by ``vmap(grad)``, or by a loop of
    ordinary gradients where the model does not run under ``vmap`` (:mod:`ifscope.core.capabilities`; not checked)."""
    def one(p: Params, example: Batch) -> Tensor:
        single = tree_map(lambda t: t.unsqueeze(0), example)
        return task.per_example_loss(p, rest, single)[0]
    if capabilities(task, params, rest, batch).vmap_ok:
        return vmap(grad(one), in_dims=(None, 0))(params, batch)
    rows = [grad(one)(params, tree_map(lambda t, i=i: t[i], batch)) for i in range(batch_len(batch))]
    return tree_map(lambda *r: torch.stack(r), *rows)


def per_example_grads(task: Task, params: Params, rest: Mapping[str, Tensor], batch: Batch,
                      chunk: int | None = None) -> Tensor:
    """``[B, dim]``: the flat gradient of each example's loss, by ``vmap(grad)`` in chunks of ``chunk`` examples."""
    space = ParamSpace(params)
    n = batch_len(batch)
    chunk = chunk or n
    outs = [space.flatten(per_example_grad_dict(task, params, rest, _rows(batch, s, s + chunk)))
            for s in range(0, n, chunk)]
    return _finite(outs[0] if len(outs) == 1 else torch.cat(outs), "per-example gradients")


def projected_grads(task: Task, params: Params, rest: Mapping[str, Tensor], batch: Batch, basis: Tensor,
                    check: bool = True) -> Tensor:
    """``[B, k]`` = ``G Uᵀ`` summed parameter tensor by parameter tensor, so that the flat ``[B, dim]`` gradients are
    never assembled (``G_p`` against its columns of ``basis``; low-precision ``basis``: see
    :func:`accumulated_product`); ``check=False`` leaves NaN/inf to the caller."""
    grads = per_example_grad_dict(task, params, rest, batch)
    space, out, start = ParamSpace(params), None, 0
    for name, size in zip(space.names, space.sizes):
        part = accumulated_product(grads[name].reshape(len(grads[name]), size), basis[:, start:start + size])
        out = part if out is None else out + part
        start += size
    assert out is not None
    return _finite(out, "gradient projections") if check else out


def jvp_projections(task: Task, params: Params, rest: Mapping[str, Tensor], batch: Batch, basis: Tensor,
                    chunk: int = JVP_CHUNK) -> Tensor:
    """``[B, k]``: ``∇ℓ(z_b)·u_j`` for each row ``u_j`` of ``basis`` [k, dim], one forward-mode JVP per direction."""
    space = ParamSpace(params)

    def along(u: Params) -> Tensor:
        return jvp(lambda p: task.per_example_loss(p, rest, batch), (params,), (u,))[1]

    outs = []
    for s in range(0, len(basis), chunk):
        block = space.unflatten(basis[s:s + chunk])  # split once per block, not once per tangent inside vmap
        outs.append(vmap(along)(block))
    return _finite(torch.cat(outs).T.contiguous(), "gradient projections")


def choose_path(path: str, n_examples: int, dim: int, itemsize: int,
                memory_budget: int = DEFAULT_MEMORY_BUDGET, rank: int | None = None) -> str:
    """``vmap`` when the basis has at least ``VMAP_MIN_RANK`` directions (``rank``; unknown counts as many) and the
    batch's per-example gradients fit the memory budget, else ``jvp`` (cost ∝ rank, memory ∝ rank · activations)."""
    if path not in PATHS:
        raise ConfigError(f"unknown projection path {path!r}; use one of {PATHS}")
    if path != "auto":
        return path
    fits = n_examples * dim * itemsize <= memory_budget
    return "vmap" if fits and (rank is None or rank >= VMAP_MIN_RANK) else "jvp"


LOW_PRECISION = (torch.bfloat16, torch.float16)
ACCUMULATE_CHUNK = 8192  # columns of one low-precision partial product; partial products are summed in float32


def accumulated_product(g: Tensor, basis: Tensor) -> Tensor:
    """``g uᵀ`` [B, k]: plainly when ``basis`` has ``g``'s dtype; when ``basis`` is bfloat16/float16, with ``g`` rounded
    to that dtype and the partial products over blocks of ``ACCUMULATE_CHUNK`` columns summed in float32 (the rounding
    of each product's output stays relative to a block, not to the whole sum)."""
    if basis.dtype not in LOW_PRECISION:
        return g @ basis.T
    out = torch.zeros(len(g), len(basis), dtype=torch.float32, device=g.device)
    for s in range(0, g.shape[1], ACCUMULATE_CHUNK):
        out += (g[:, s:s + ACCUMULATE_CHUNK].to(basis.dtype) @ basis[:, s:s + ACCUMULATE_CHUNK].T).float()
    return out.to(g.dtype)


def usable_path(path: str, caps: Capabilities, fallback: bool) -> str:
    """``path``, or the other one where the model lacks its transform (``fallback``; else a clear error): ``vmap``
    stays when neither transform works, its per-example gradients then come from a loop."""
    if path == "jvp" and not caps.jvp_ok:
        if not fallback:
            raise ConfigError(f"projection='jvp' needs forward-mode derivatives, which {caps.model} lacks in "
                              f"{caps.dtype} ({caps.forward_ad}); use projection='auto' or 'vmap'")
        return "vmap"
    if path == "vmap" and not caps.vmap_ok and caps.jvp_ok and fallback:
        return "jvp"
    return path


LOW_PRECISION_PROBE = 64  # examples on which low-precision projections are measured against full precision


def low_precision_error(task: Task, params: Params, rest: Mapping[str, Tensor], batch: Batch, basis: Tensor,
                        dtype: torch.dtype, weights: Tensor) -> float:
    """``‖(P_low − P) W‖ / ‖P W‖`` on the first ``LOW_PRECISION_PROBE`` examples of ``batch``: the relative error of
    projections made with ``basis`` rounded to ``dtype`` (by the ``vmap`` path, the one that uses it), each direction
    weighted by ``weights`` (e.g. ``√|1/λ|``, so that the error is measured in the metric the scores use)."""
    probe = _rows(batch, 0, LOW_PRECISION_PROBE)
    full = project(task, params, rest, probe, basis, path="vmap") * weights
    low = project(task, params, rest, probe, basis.to(dtype), path="vmap") * weights
    return float((low - full).norm() / full.norm().clamp_min(torch.finfo(full.dtype).tiny))


def project(task: Task, params: Params, rest: Mapping[str, Tensor], batch: Batch, basis: Tensor,
            path: str = "auto", memory_budget: int = DEFAULT_MEMORY_BUDGET, fallback: bool = False) -> Tensor:
    """``[B, k]`` projections ``G Uᵀ`` of the batch's per-example gradients onto ``basis`` [k, dim]; a bfloat16/float16
    ``basis`` makes the product low-precision with float32 accumulation (:func:`accumulated_product`; the ``jvp`` path
    runs in the parameters' dtype). A path the model does not support is swapped for the other under ``"auto"`` or
    ``fallback`` (a measured choice), refused with a clear error when asked for by name."""
    n, dim = batch_len(batch), basis.shape[1]
    first = next(iter(params.values()))
    chosen = choose_path(path, n, dim, first.element_size(), memory_budget, rank=len(basis))
    chosen = usable_path(chosen, capabilities(task, params, rest, batch), fallback or path == "auto")
    if chosen == "jvp":
        return jvp_projections(task, params, rest, batch, basis.to(first.dtype))
    # project each chunk as it comes, so that at most `chunk` per-example gradients exist at once
    chunk = max(1, memory_budget // max(1, dim * first.element_size()))
    outs = [projected_grads(task, params, rest, _rows(batch, s, s + chunk), basis) for s in range(0, n, chunk)]
    return outs[0] if len(outs) == 1 else torch.cat(outs)


@dataclass
class PathChoice:
    """The projection path an estimator uses, and why: ``seconds`` per example of each path on the probe batch."""

    path: str
    reason: str
    seconds: dict[str, float] = field(default_factory=dict)
    asked: str = "auto"  # the projection option this choice answers


def _timed(fn) -> tuple[float, Tensor]:
    t0 = time.perf_counter()
    out = fn()
    if out.is_cuda:
        torch.cuda.synchronize(out.device)
    return time.perf_counter() - t0, out


def measure_paths(task: Task, params: Params, rest: Mapping[str, Tensor], batch: Batch, basis: Tensor,
                  batch_size: int | None = None, memory_budget: int = DEFAULT_MEMORY_BUDGET
                  ) -> tuple[PathChoice, Tensor | None]:
    """The faster of ``jvp`` and ``vmap`` for this model and basis, each timed twice on the whole ``batch`` after an
    untimed call on one example (set-up), the faster time kept (a first call on a full batch also pays for first
    touching its memory, which later batches reuse), and the batch's projections by the faster path; ``None`` when
    nothing was timed. ``vmap`` is only a candidate when a batch of ``batch_size`` per-example gradients fits
    ``memory_budget``."""
    n, dim = batch_len(batch), basis.shape[1]
    itemsize = next(iter(params.values())).element_size()
    caps = capabilities(task, params, rest, batch)
    if not (caps.jvp_ok and caps.vmap_ok):  # nothing to time: the path that works (vmap's loop when neither does)
        path = "jvp" if caps.jvp_ok else "vmap"
        return PathChoice(path, (caps.fallbacks() or [""])[0]), None
    if choose_path("auto", batch_size or n, dim, itemsize, memory_budget, rank=None) == "jvp":
        return PathChoice("jvp", f"per-example gradients of a batch exceed {memory_budget >> 20} MiB"), None
    one = _rows(batch, 0, 1)
    seconds, outputs = {}, {}
    for path in ("jvp", "vmap"):
        project(task, params, rest, one, basis, path=path, memory_budget=memory_budget)
        took = []
        for _ in range(2):
            t, outputs[path] = _timed(lambda p=path: project(task, params, rest, batch, basis, path=p,
                                                             memory_budget=memory_budget))
            took.append(t)
        seconds[path] = min(took) / n
    path = min(seconds, key=seconds.__getitem__)
    return PathChoice(path, f"measured on a batch of {n} examples with {len(basis)} directions", seconds), \
        outputs[path]
