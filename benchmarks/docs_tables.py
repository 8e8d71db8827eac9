"""Tables and quoted figures of the README and docs, generated from the JSON output of the shipped commands (never
retyped).

Each result names the command that produces it (``benchmarks/docs_registry.py``). ``--run NAME ...`` (or ``--run all``) runs those commands with
``--json`` on a fixed thread count and stores their output in ``docs/results/NAME.json``, with a ``_meta`` that only
this runner writes (the command, the thread count, the machine, the duration, the date); without ``--run`` the
results are rendered into the regions ``<!-- table:NAME -->`` … ``<!-- /table:NAME -->`` (a table with its command)
and ``<!-- figure:NAME -->`` … ``<!-- /figure:NAME -->`` (one figure inside a sentence) of README.md and docs/*.md.
``--check`` exits 1 when a region differs from what its stored result renders, when a marked region's result is not
stored, when a marker names no known table or figure, or when a Markdown table with numbers, a duration typed in
prose ("took 386 s") or a decimal typed in the prose of the pages it reads for them ("Pearson 0.93") sits outside every
marker (``benchmarks/docs_check.py``; tests/test_docs_tables.py runs it).

    PYTHONPATH=src python benchmarks/docs_tables.py --run all --threads 2   # minutes; on an idle machine
    PYTHONPATH=src python benchmarks/docs_tables.py --run lds-linear-exact   # one result, then re-render
    PYTHONPATH=src python benchmarks/docs_tables.py                          # re-render from docs/results/
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import docs_check
import docs_render as R
from docs_registry import FIGURES, TABLES, Table

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
META_KEYS = {"command", "threads", "seconds", "machine", "date"}  # what run() writes; "by_hand" marks any other


def _result(name: str) -> str:
    """The stored result a table renders (its own, or the one it shares)."""
    return TABLES[name].source or name


def _command(table: Table, threads: int) -> tuple[list[str], str]:
    """``(argv without the JSON output flag, the command as the docs show it)``."""
    if table.script is None:
        return [sys.executable, "-m", "ifscope", *table.command], "ifscope " + " ".join(table.command)
    python = Path(os.environ.get("BENCHENV", ROOT / ".benchenv")) / "bin" / "python" if table.peers \
        else Path(sys.executable)  # the peer libraries live in their own environment (benchmarks/setup_peers.sh)
    shown = (f"OMP_NUM_THREADS={threads} " + (".benchenv/bin/python" if table.peers else "PYTHONPATH=src python")
             + f" {table.script} " + " ".join(f'"{a}"' if " " in a or not a else a for a in table.command))
    return [str(python), str(ROOT / table.script), *table.command], shown.rstrip()


def run(name: str, threads: int) -> dict[str, Any]:
    """Run the command behind ``name`` and store its JSON with the runner's ``_meta``."""
    table = TABLES[name]
    if table.source is not None:
        return run(table.source, threads)
    if table.sources:
        return {source: run(source, threads) for source in table.sources}
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    argv, shown = _command(table, threads)
    if not Path(argv[0]).exists():
        raise SystemExit(f"{name}: no Python at {argv[0]}: build the peers' environment (benchmarks/setup_peers.sh) or "
                         "point BENCHENV at one (e.g. the main checkout's .benchenv from a worktree)")
    with tempfile.TemporaryDirectory() as workdir:
        if table.script is None:
            argv += ["--workdir", workdir, "--json"]
        else:
            argv += ["--json"] if table.json_to_stdout else ["--json", f"{workdir}/out.json"]
        t0 = time.time()
        proc = subprocess.run(argv, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise SystemExit(f"{name}: `{' '.join(argv)}` failed:\n{proc.stderr[-3000:]}")
        to_stdout = table.script is None or table.json_to_stdout
        out = json.loads(proc.stdout if to_stdout else Path(f"{workdir}/out.json").read_text())
    out = out if isinstance(out, dict) else {"rows": out}  # benchmark scripts print a list of rows
    out["_meta"] = {"command": shown, "threads": threads, "seconds": time.time() - t0,
                    "machine": f"{platform.machine()}, {os.cpu_count()} cores", "date": time.strftime("%Y-%m-%d")}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(out, indent=1) + "\n")
    return out


def load(result: str) -> dict[str, Any] | None:
    """A stored result, or None when it is not stored; a ``_meta`` not shaped like run()'s must say ``by_hand``."""
    path = RESULTS / f"{result}.json"
    if not path.exists():
        return None
    d = json.loads(path.read_text())
    meta = d.get("_meta", {})
    if set(meta) != META_KEYS and not meta.get("by_hand"):
        raise SystemExit(f"{path}: _meta has keys {sorted(meta)}, not the runner's {sorted(META_KEYS)}; rerun it with "
                         f"--run {result}, or say in _meta.by_hand what ran")
    return d


def needed(name: str, kind: str = "table") -> tuple[str, ...]:
    """The stored results a table or figure renders from."""
    if kind == "figure":
        return needed(FIGURES[name].source)
    return TABLES[name].sources or (_result(name),)


def rendered(name: str, kind: str = "table") -> str | None:
    """The Markdown of table (or figure) ``name`` from its stored results; None when one of them is not stored."""
    results = {r: load(r) for r in needed(name, kind)}
    if any(d is None for d in results.values()):
        return None
    if kind == "figure":  # a figure of a summary table gets all its results, else the one
        return FIGURES[name].render(results if TABLES[FIGURES[name].source].sources else next(iter(results.values())))
    if TABLES[name].sources:
        return TABLES[name].render(results)
    d = results[_result(name)]
    return R.command_line(d) + "\n\n" + TABLES[name].render(d)


def _region(kind: str, name: str) -> re.Pattern:
    if kind == "figure":  # inline: the figure sits inside a sentence
        return re.compile(rf"(<!-- figure:{re.escape(name)} -->)[^<]*(<!-- /figure:{re.escape(name)} -->)")
    return re.compile(rf"(<!-- table:{re.escape(name)} -->\n)(?:.*?\n)?(<!-- /table:{re.escape(name)} -->)", re.S)


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def update(check: bool) -> tuple[list[str], list[str]]:
    """Write (or, with ``check``, compare) every marked region: ``(files that differ, problems)``; a problem is a
    marker naming nothing known, a marked result not stored, or a numeric table outside every marker."""
    stale, problems = [], []
    for path in documents():
        file, text = str(path.relative_to(ROOT)), path.read_text()
        new = text
        for kind, known in (("table", TABLES), ("figure", FIGURES)):
            for name in docs_check.regions(text, kind):
                if name not in known:
                    problems.append(f"{file}: <!-- {kind}:{name} --> names no known {kind}")
                    continue
                body = rendered(name, kind)
                if body is None:
                    missing = [r for r in needed(name, kind) if not (RESULTS / f"{r}.json").exists()]
                    problems.append(f"{file}: {kind} {name} has no stored result ({', '.join(missing)}): "
                                    f"run benchmarks/docs_tables.py --run {' '.join(missing)}")
                    continue
                if not _region(kind, name).search(new):
                    problems.append(f"{file}: {kind} {name} has no closing <!-- /{kind}:{name} --> right after it")
                    continue
                if kind == "figure" and "<" in body:  # the region of a figure ends at the first '<'
                    problems.append(f"{file}: figure {name} renders a '<'; render '≤' or words instead")
                    continue
                body += "" if kind == "figure" else "\n"
                new = _region(kind, name).sub(lambda m, b=body: m.group(1) + b + m.group(2), new)
        for table in docs_check.unmarked_tables(file, new):
            if table.pending:
                print(f"{table}: a hand copy pending a rerun ({table.pending})", file=sys.stderr)
                continue
            problems.append(f"{table}: a table with numbers outside every <!-- table:NAME --> marker (render it from "
                            "a stored result, or mark it <!-- not-measured --> if its numbers are not measurements)")
        for duration in docs_check.unmarked_durations(file, new):
            if file in docs_check.DURATIONS_LISTED_ONLY:
                print(f"{duration}: a duration typed by hand (listed, not failed, while this page is rewritten)",
                      file=sys.stderr)
                continue
            problems.append(f"{duration}: a duration typed by hand outside every marker (render it as a "
                            "<!-- figure:NAME --> from a stored result, or drop it)")
        for decimal, listed in docs_check.unmarked_decimals(file, new):
            if listed:
                print(f"{decimal}: a decimal typed by hand (listed, not failed, while this section is rewritten)",
                      file=sys.stderr)
                continue
            problems.append(f"{decimal}: a decimal figure typed by hand in prose (render it as a <!-- figure:NAME --> "
                            "from a stored result, drop it, put a setting in `code`, or wrap prose about unstored runs "
                            "in <!-- not-stored --> … <!-- /not-stored --> saying so)")
        if new != text:
            stale.append(file)
            if not check:
                path.write_text(new)
    return stale, problems


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", nargs="*", default=[], help="tables to regenerate by running their commands (or 'all')")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--check", action="store_true",
                   help="exit 1 if a region differs from its stored result, a result is missing, or a table is unmarked")
    args = p.parse_args()
    names = [n for n, t in TABLES.items() if t.source is None and not t.sources] if args.run == ["all"] else args.run
    for name in names:
        if name not in TABLES:
            raise SystemExit(f"unknown table {name!r}; known: {', '.join(TABLES)}")
        print(f"running {name}: {TABLES[name].script or 'ifscope'} {' '.join(TABLES[name].command)}", file=sys.stderr,
              flush=True)
        run(name, args.threads)
    stale, problems = update(args.check)
    for problem in problems:
        print(problem, file=sys.stderr)
    if args.check and stale:
        print(f"tables out of date in {', '.join(stale)}: run benchmarks/docs_tables.py", file=sys.stderr)
    return 1 if problems or (args.check and stale) else 0


if __name__ == "__main__":
    raise SystemExit(main())
