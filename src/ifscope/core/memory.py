"""Handing the memory PyTorch has freed back to the operating system during long streaming loops.

Per-example gradients of batches whose shapes differ (text batches are cut to their longest row) leave glibc's heap
fragmented: freed blocks stay mapped, and the process's resident memory grows with every batch although nothing is
kept (on tweets-minilm, gigabytes over its 38k tweets, nearly all of it returned by one ``malloc_trim``). :func:`release_freed` calls ``malloc_trim(0)`` at most once per ``interval_s`` seconds, so the
resident memory of a streamed embedding stays flat in the number of examples; elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import time

INTERVAL_S = 2.0  # seconds between trims: a trim walks the heap (milliseconds), a batch takes a fraction of a second

_state: dict[str, object] = {"libc": None, "last": 0.0}


def _trim_function():
    """glibc's ``malloc_trim``, or None where there is none (macOS, Windows, musl)."""
    if _state["libc"] is None:
        fn = None
        if sys.platform.startswith("linux"):
            try:
                fn = getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), "malloc_trim", None)
            except OSError:
                fn = None
        _state["libc"] = fn or False
    return _state["libc"] or None


def release_freed(interval_s: float = INTERVAL_S) -> bool:
    """Return the heap's free pages to the operating system when ``interval_s`` seconds have passed since the last
    time (0: now); True when a trim ran."""
    now = time.monotonic()
    if now - float(_state["last"]) < interval_s:  # type: ignore[arg-type]
        return False
    fn = _trim_function()
    if fn is None:
        return False
    fn(0)
    _state["last"] = time.monotonic()
    return True
