"""``ifscope report DIR``: the static HTML report ``DIR/report/index.html`` (no network needed to view it)."""

from __future__ import annotations

import argparse
from typing import Any

from . import DEFAULT_WORKDIR


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("report", help="write DIR/report/index.html from the run directory's artifacts")
    p.add_argument("dir", nargs="?", default=None, help=f"run directory (default: --workdir, else {DEFAULT_WORKDIR})")
    p.add_argument("--workdir", default=None, help="same as DIR")
    p.add_argument("--recipe", default=None, help=argparse.SUPPRESS)  # accepted so every step takes the same options
    p.add_argument("--seed", type=int, default=None, help=argparse.SUPPRESS)
    return p


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ..report import SECTIONS, render_report
    workdir = args.dir or args.workdir or DEFAULT_WORKDIR
    path = render_report(workdir)
    html = path.read_text()
    sections = {sid: f'id="{sid}" data-computed="yes"' in html for sid in SECTIONS}
    missing = [s for s, ok in sections.items() if not ok]
    summary = f"report -> {path.resolve()}"
    if missing:
        summary += f"\nnot computed yet: {', '.join(missing)}"
    return {"report": str(path.resolve()), "sections": sections, "summary": summary}
