"""An advisory lock on a run directory (``fcntl.flock`` on ``DIR/.ifscope.lock``), re-entrant within a process; a
process that has to wait says on stderr which process (pid and command line) holds it."""

from __future__ import annotations

import fcntl
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..core.errors import ArtifactError

LOCK = ".ifscope.lock"
_held: dict[str, int] = {}  # resolved run directory -> depth of this process's nested holds


def holder() -> str:
    """``"pid 123 (ifscope fit --rank 10)"``: this process, as a waiting one (or a refused write) names it."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    argv = ["ifscope" if name == "__main__.py" else name, *sys.argv[1:]]  # python -m ifscope
    return f"pid {os.getpid()} ({' '.join(argv)[:200]})"


@contextmanager
def locked(root: Path) -> Iterator[None]:
    """Hold the run directory's lock (waiting, with a message, while another process holds it)."""
    key = str(root.resolve())
    if key in _held:  # flock is per open file: a second open in this process would wait on itself
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    root.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(root / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise ArtifactError(f"cannot write in run directory {root} ({exc.strerror}); commands that only read a "
                            "finished run work there, others need a writable copy (cp -r) as --workdir") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            who = os.pread(fd, 512, 0).decode(errors="replace").strip() or "another process"
            print(f"ifscope: waiting for {who}, which holds the lock on run directory {root}", file=sys.stderr)
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder().encode(), 0)
        _held[key] = 1
        yield
    finally:
        _held.pop(key, None)
        os.close(fd)  # releases the lock
