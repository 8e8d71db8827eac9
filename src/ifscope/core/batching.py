"""Replicas of one computation over the rows of a batch of inputs: ``vmap`` or a Python loop, chosen by measured cost.

``vmap`` turns K copies of a small model into one call of larger kernels, which wins for dense layers; over
convolutions this PyTorch build's batching rules are slow (grouped convolutions), so a loop of K ordinary calls wins
there. :func:`choose` times both once per (model, kind of computation) and remembers the faster.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch.func import vmap
from torch.utils._pytree import tree_map

from .errors import ConfigError

BATCHINGS = ("auto", "vmap", "loop")
_chosen: dict[tuple, str] = {}  # (model id, kind) -> measured choice, for the life of the process


def check_batching(batching: str) -> str:
    if batching not in BATCHINGS:
        raise ConfigError(f"unknown batching {batching!r}; use one of {BATCHINGS}")
    return batching


def looped(fn: Callable[..., Any], in_dims: tuple[int | None, ...] | int = 0) -> Callable[..., Any]:
    """``vmap(fn, in_dims)`` computed by one ordinary call per row, outputs stacked along dimension 0."""
    def run(*args: Any) -> Any:
        dims = in_dims if isinstance(in_dims, tuple) else (in_dims,) * len(args)
        sizes = {len(_first(a)) for a, d in zip(args, dims) if d is not None}
        if len(sizes) != 1:
            raise ConfigError(f"looped: the batched arguments have different numbers of rows {sorted(sizes)}")
        outs = [fn(*(a if d is None else tree_map(lambda t, k=k: t[k], a) for a, d in zip(args, dims)))
                for k in range(sizes.pop())]
        return tree_map(lambda *rows: torch.stack(rows), *outs)
    return run


def _first(tree: Any) -> torch.Tensor:
    leaves = [t for t in tree.values()] if isinstance(tree, dict) else [tree]
    return leaves[0]


def batched(fn: Callable[..., Any], batching: str, in_dims: tuple[int | None, ...] | int = 0) -> Callable[..., Any]:
    """``fn`` mapped over the rows of its batched arguments, by ``vmap`` or by ``looped`` (``batching`` resolved)."""
    if batching == "vmap":
        return vmap(fn, in_dims=in_dims)
    if batching == "loop":
        return looped(fn, in_dims)
    raise ConfigError(f"batching must be resolved to 'vmap' or 'loop' before use, got {batching!r}")


def choose(batching: str, key: tuple, fn: Callable[..., Any], args: tuple,
           in_dims: tuple[int | None, ...] | int = 0) -> tuple[str, Any]:
    """``(choice, fn mapped over args)``: ``batching`` itself unless ``"auto"``; then the remembered choice for
    ``key``, or both are timed on ``args`` after an untimed call of each on two rows (the result of the faster one is
    returned, so the timing costs one call and the warm-up)."""
    check_batching(batching)
    if batching == "auto":
        batching = _chosen.get(key, "auto")
    if batching != "auto":
        return batching, batched(fn, batching, in_dims)(*args)
    timings, results = {}, {}
    dims = in_dims if isinstance(in_dims, tuple) else (in_dims,) * len(args)
    if set(dims) <= {0, None}:  # warm both up on two rows: the first call of each pays one-off set-up, not its cost
        few = tuple(a if d is None else tree_map(lambda t: t[:2], a) for a, d in zip(args, dims))
        for how in ("vmap", "loop"):
            batched(fn, how, in_dims)(*few)
    for how in ("vmap", "loop"):
        t0 = time.perf_counter()
        results[how] = batched(fn, how, in_dims)(*args)
        timings[how] = time.perf_counter() - t0
    best = min(timings, key=timings.get)
    _chosen[key] = best
    return best, results[best]


def resolved(key: tuple) -> str | None:
    """The choice :func:`choose` measured for ``key`` (None before the first use)."""
    return _chosen.get(key)


def other(batching: str) -> str:
    """The other kernel: ``loop`` for ``vmap`` and back (for a noise-floor replay)."""
    return "loop" if batching == "vmap" else "vmap"
