"""Progress on stderr: a live bar on a terminal; otherwise a few plain lines, no carriage returns, so that logs and
CI output stay readable: a line at a 10 % mark when 5 s have passed since the last one, at least one every 30 s,
and one at the end of any task that took a second or more (tasks shorter than that stay silent)."""

from __future__ import annotations

import sys
import time
from typing import Any

from tqdm.auto import tqdm

PLAIN_STEPS = 10  # marks per task when stderr is not a terminal
PLAIN_GAP = 5.0  # seconds between two lines at the least
PLAIN_SECONDS = 30.0  # ... and at most, on long tasks
PLAIN_QUIET = 1.0  # tasks shorter than this print nothing


class PlainProgress:
    """The part of tqdm's interface ifscope uses, printing whole lines."""

    def __init__(self, desc: str, total: int | None, file: Any = None):
        self.desc, self.total, self.n, self.file = desc, total, 0, file or sys.stderr
        self.postfix = ""
        self.t0 = self.last_time = time.time()
        self.next_mark = self._mark(1)
        self.closed = False

    def _mark(self, k: int) -> float:
        return float("inf") if not self.total else self.total * k / PLAIN_STEPS

    def _line(self, state: str) -> None:
        count = f"{self.n}/{self.total}" if self.total else str(self.n)
        extra = f" ({self.postfix})" if self.postfix else ""
        print(f"ifscope: {self.desc}: {count} {state}{extra} [{time.time() - self.t0:.0f} s]", file=self.file,
              flush=True)
        self.last_time = time.time()

    def update(self, n: int = 1) -> None:
        self.n += n
        since = time.time() - self.last_time
        marked = self.n >= self.next_mark
        while self.n >= self.next_mark:
            self.next_mark += self._mark(1)
        if (marked and since >= PLAIN_GAP) or since > PLAIN_SECONDS:
            if self.total is None or self.n < self.total:
                self._line("")

    def set_postfix(self, **kw: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in kw.items())

    def set_postfix_str(self, text: str) -> None:
        self.postfix = text

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if time.time() - self.t0 >= PLAIN_QUIET:
                self._line("done")

    def __iter__(self):  # pragma: no cover - iteration is not used with plain progress
        raise TypeError("PlainProgress does not wrap iterables")


class Silent:
    """A progress reporter that reports nothing."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **kw: Any) -> None:
        pass

    def set_postfix_str(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(desc: str, total: int | None, show: bool = True, **kw: Any) -> Any:
    """A progress reporter for ``total`` units of work: tqdm on a terminal, :class:`PlainProgress` elsewhere,
    :class:`Silent` when ``show`` is false."""
    if not show:
        return Silent()
    if sys.stderr.isatty():
        return tqdm(total=total, desc=desc, file=sys.stderr, leave=False, dynamic_ncols=True, **kw)
    return PlainProgress(desc, total)
