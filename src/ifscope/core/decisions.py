"""Measured decisions made once per machine and kept: the same model, basis and batch size take the same projection
path in every later run, process and rank, so that a measured choice never changes a result (same answer twice).

Kept as JSON in the user cache (``$IFSCOPE_CACHE``, else ``~/.cache/ifscope``), ``projection-paths.json``, written
under a file lock: of processes that ask at once, one measures and the others read its answer.
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from .files import read_json, write_json
from .projection import PathChoice

FILE = "projection-paths.json"
# keys start with a version: measurements made before the paths or their timing changed are not reused (v2: the vmap
# path projects parameter by parameter without assembling flat gradients; v3: each path timed twice, the warm time
# kept, since a first call on a full batch also pays for its memory)
_memo: dict[str, Any] = {}
_held = [0]  # depth of decided() calls in progress in this process


def _read(root: Any) -> dict[str, Any]:
    try:
        return read_json(root / FILE) if (root / FILE).exists() else {}
    except (OSError, ValueError, json.JSONDecodeError):
        return {}  # a damaged file is measured anew, not trusted


def path_key(params: dict[str, Any], rank: int, batch_size: int, dtype: Any, device: Any) -> str:
    """What the cost of a projection depends on: the parameter shapes, the basis size, the batch, dtype, device and
    thread count."""
    import torch
    shapes = ";".join(f"{n}{tuple(p.shape)}" for n, p in params.items())
    return f"v3|{shapes}|k={rank}|b={batch_size}|{dtype}|{torch.device(device).type}|threads={torch.get_num_threads()}"


def decided(key: str, measure: Callable[[], tuple[Any, Any]], kind: type = PathChoice) -> tuple[Any, Any]:
    """The choice (a ``kind`` dataclass, a projection path by default) recorded for ``key``, else ``measure()``'s
    (recorded now); with the measurement's output, if any."""
    if key in _memo:
        return _memo[key], None
    from .cache import cache_dir
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    nested = _held[0] > 0  # a measurement that itself decides something (a block size timed by curvature products):
    with open(root / (FILE + ".lock"), "w") as lock:  # the outer call holds the lock; flock would wait on ourselves
        if not nested:
            fcntl.flock(lock, fcntl.LOCK_EX)
        _held[0] += 1
        try:
            known = _read(root)
            if key in known:
                _memo[key] = kind(**known[key])
                return _memo[key], None
            choice, out = measure()
            write_json(root / FILE, {**_read(root), key: asdict(choice)})  # read again: a nested call may have written
        finally:
            _held[0] -= 1
            if not nested:
                fcntl.flock(lock, fcntl.LOCK_UN)
    _memo[key] = choice
    return choice, out
