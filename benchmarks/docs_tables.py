"""Tables and quoted figures of the README and docs, generated from the JSON output of the shipped commands (never
retyped).

Each result names the command that produces it. ``--run NAME ...`` (or ``--run all``) runs those commands with
``--json`` on a fixed thread count and stores their output in ``docs/results/NAME.json``, with a ``_meta`` that only
this runner writes (the command, the thread count, the machine, the duration, the date); without ``--run`` the
results are rendered into the regions ``<!-- table:NAME -->`` … ``<!-- /table:NAME -->`` (a table with its command)
and ``<!-- figure:NAME -->`` … ``<!-- /figure:NAME -->`` (one figure inside a sentence) of README.md and docs/*.md.
``--check`` exits 1 when a region differs from what its stored result renders, when a marked region's result is not
stored, when a marker names no known table or figure, or when a Markdown table with numbers sits outside every
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docs_check
import docs_render as R
import docs_render_scripts as S

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
META_KEYS = {"command", "threads", "seconds", "machine", "date"}  # what run() writes; "by_hand" marks any other


@dataclass
class Table:
    """A table: the command (without ``--workdir`` and ``--json``), how to render its JSON, where it goes."""

    command: list[str]
    render: Callable[[dict[str, Any]], str]
    files: tuple[str, ...]
    source: str | None = None  # another table's stored result, rendered another way
    script: str | None = None  # a benchmark script instead of ifscope
    peers: bool = True  # the script runs in the peers' environment (benchmarks/setup_peers.sh), else in this one
    sources: tuple[str, ...] = ()  # a summary of other tables' stored results: ``render({name: result})``
    json_to_stdout: bool = False  # the script prints its JSON after ``--json`` instead of writing ``--json FILE``


@dataclass
class Figure:
    """One figure quoted inside a sentence: ``render(result)`` of a stored result, without its command."""

    source: str
    render: Callable[[dict[str, Any]], str]


CORRECT_SEEDS = (0, 1, 2)  # issue 13 asks for two; the third says whether the margins are luck


def _correct(recipe: str, seed: int) -> Table:
    return Table(["correct", "--recipe", recipe, "--seed", str(seed)], R.correct_bars, ("docs/experiments_correction.md",))


PEERS_WIDE = ["--hidden", "256", "256", "--rank", "100", "--skip", "reference", "exact", "ifscope cg", "ifscope lissa",
              "dattri cg", "pydvl cg", "explicit", "direct", "naive"]

PEERS_SMALL = ["--hidden", "32", "--rank", "100", "--skip", "ifscope cg", "ifscope lissa", "dattri cg", "pydvl cg"]

TABLES: dict[str, Table] = {
    "peers-wide": Table(PEERS_WIDE, S.peers_table, ("docs/performance.md",), script="benchmarks/peers.py"),
    "peers-small": Table(PEERS_SMALL, S.peers_table, ("docs/performance.md",), script="benchmarks/peers.py"),
    "fade-mlp-remove": Table(["fade", "--recipe", "digits-mlp", "--mode", "remove"], R.fade_table, ("README.md",)),
    "fade-mlp-remove-full": Table(["fade", "--recipe", "digits-mlp", "--mode", "remove"], R.fade_tables,
                                  ("docs/fade.md",), source="fade-mlp-remove"),
    "fade-mlp-upweight": Table(["fade", "--recipe", "digits-mlp", "--mode", "upweight", "--epsilon", "0.01"],
                               R.fade_tables, ("docs/fade.md",)),
    "fade-mlp-sgd": Table(["fade", "--recipe", "digits-mlp", "--mode", "remove", "--train-batch-size", "100"],
                          R.fade_tables, ("docs/fade.md",)),
    "fade-tweets-remove": Table(["fade", "--recipe", "tweets-minilm", "--mode", "remove"], R.fade_tables_floor,
                                ("docs/experiments.md",)),
    "fade-tweets-upweight": Table(["fade", "--recipe", "tweets-minilm", "--mode", "upweight", "--epsilon", "0.01"],
                                  R.fade_tables_floor, ("docs/experiments.md",)),
    "fade-tweets-lrmax": Table(["fade", "--recipe", "tweets-minilm", "--mode", "remove", "--lr", "0.12", "--n-ids", "10",
                                "--n-queries", "10", "--steps", "1,3,10,30", "--methods",
                                "run,arnoldi_horizon,graddot,horizon_schedule,unrolled"], R.fade_tables_floor,
                               ("docs/experiments.md",)),
    "diagnose-mlp": Table(["diagnose", "--recipe", "digits-mlp"], R.diagnose_table, ("README.md", "docs/diagnose.md")),
    "diagnose-mlp-bad": Table(["diagnose", "--recipe", "digits-mlp", "--recipe-arg", "steps=10", "--recipe-arg",
                               "weight_decay=0.0"], R.diagnose_table, ("README.md", "docs/diagnose.md")),
    "diagnose-cnn": Table(["diagnose", "--recipe", "digits-cnn"], R.diagnose_table, ("docs/diagnose.md",)),
    "fade-cnn": Table(["fade", "--recipe", "digits-cnn"], R.fade_tables_floor, ("docs/experiments.md",)),
    "fade-cnn-fast-linear": Table(["fade", "--recipe", "digits-cnn", "--lr", "0.010817", "--steps", "1,3,10,30",
                                   "--mode", "upweight", "--epsilon", "0.0001", "--truth-dtype", "float64"],
                                  R.fade_table, ("docs/experiments.md",)),
    **{f"correct-{r.split('-')[0]}-{s}": _correct(r, s) for r in ("tweets-minilm", "digits-cnn") for s in CORRECT_SEEDS},
    "correct-summary": Table([], R.correct_summary, ("README.md",),
                             sources=tuple(f"correct-{r}-{s}" for r in ("digits", "tweets") for s in CORRECT_SEEDS)),
    "groundtruth": Table(["cnn", "floor", "tweets", "--dtypes", "float32", "--batchings", "vmap,loop"],
                         S.groundtruth_table, ("docs/experiments.md",), script="benchmarks/groundtruth.py", peers=False),
    "fade-summary": Table([], R.fade_summary, ("README.md", "docs/experiments.md"),
                          sources=("fade-mlp-remove", "fade-mlp-upweight", "fade-mlp-sgd", "fade-cnn", "fade-cnn-fast-linear",
                                   "fade-tweets-remove", "fade-tweets-upweight", "fade-tweets-lrmax")),
}


TABLES.update({
    # README's prose figures
    "self-influence-flip": Table(["self-influence", "--recipe", "digits-mlp", "--recipe-arg", "flip=0.1"],
                                 R.self_influence_table, ()),
    "lds-linear-exact": Table(["lds", "--recipe", "digits-linear", "--method", "exact"], R.lds_table, ()),
    # docs/evaluation.md: the runs its text names (expensive: minutes each on 2 cores)
    "lds-linear": Table(["lds", "--recipe", "digits-linear", "--method", "exact,cg,arnoldi,lissa,graddot,horizon"],
                        R.lds_table, ("docs/evaluation.md",)),
    "lds-linear-continue": Table(["lds", "--recipe", "digits-linear", "--method", "exact,cg,arnoldi,lissa,graddot,horizon",
                                  "--retrain", "continue", "--steps", "100"], R.lds_table, ("docs/evaluation.md",)),
    "counterfactual-linear-continue": Table(["counterfactual", "--recipe", "digits-linear", "--method",
                                             "exact,graddot,arnoldi", "--retrain", "continue", "--steps", "100"],
                                            R.counterfactual_table, ("docs/evaluation.md",)),
    "counterfactual-linear": Table(["counterfactual", "--recipe", "digits-linear", "--method", "exact,graddot", "--k",
                                    "10,40"], R.counterfactual_table, ("docs/evaluation.md",)),
    "lds-linear-both": Table([], R.lds_side_by_side, ("docs/evaluation.md",),
                             sources=("lds-linear", "lds-linear-continue")),
    # docs/unrolled.md: the stored digits-mlp fades seen from unrolled's side, and its cost
    "unrolled-mlp-upweight": Table([], R.unrolled_rows, ("docs/unrolled.md",), source="fade-mlp-upweight"),
    "unrolled-mlp-remove": Table([], R.unrolled_rows, ("docs/unrolled.md",), source="fade-mlp-remove"),
    "unrolled-mlp-sgd": Table([], R.unrolled_rows, ("docs/unrolled.md",), source="fade-mlp-sgd"),
    "validity-mlp": Table([], R.validity_summary, ("docs/unrolled.md",),
                          sources=("fade-mlp-remove", "fade-mlp-sgd")),
    "unrolled-cost-1": Table(["--steps", "10", "30", "100", "300", "--queries", "1"], S.unrolled_cost,
                             ("docs/unrolled.md",), script="benchmarks/unrolled.py", peers=False, json_to_stdout=True),
    "unrolled-cost-20": Table(["--steps", "10", "30", "100", "--queries", "20"], S.unrolled_cost,
                              ("docs/unrolled.md",), script="benchmarks/unrolled.py", peers=False, json_to_stdout=True),
    "unrolled-cost-adam": Table(["--steps", "30", "100", "--queries", "1", "--optimizer", "adam", "--train-batch-size",
                                 "100"], S.unrolled_cost, ("docs/unrolled.md",), script="benchmarks/unrolled.py",
                                peers=False, json_to_stdout=True),
    "unrolled-cost": Table([], S.unrolled_cost_summary, ("docs/unrolled.md",),
                           sources=("unrolled-cost-1", "unrolled-cost-adam", "unrolled-cost-20")),
    "eigen-ratio": Table(["--rank", "150", "--iterations", "200"], S.columns_table(S.EIGEN_RATIO_COLUMNS),
                         ("docs/errors.md",), script="benchmarks/eigen_ratio.py", peers=False, json_to_stdout=True),
    "eigen-ratio-nowd": Table(["--rank", "200", "--iterations", "200", "--weight-decay", "0"],
                              S.columns_table(S.EIGEN_RATIO_COLUMNS), ("docs/errors.md",),
                              script="benchmarks/eigen_ratio.py", peers=False, json_to_stdout=True),
    "horizon-accuracy": Table([], S.columns_table(S.HORIZON_ACCURACY_COLUMNS), ("docs/fade.md",),
                              script="benchmarks/horizon_accuracy.py", peers=False, json_to_stdout=True),
    **{f"correct-mlp-{s}": Table(["correct", "--recipe", "digits-mlp", "--n-test", "797", "--seed", str(s)],
                                 R.correct_bars, ("docs/correct.md",)) for s in (0, 1)},
    # docs/performance.md (pending a rerun there): benchmarks/floor.py and benchmarks/streaming.py
    **{f"floor-rank{r}": Table(["--rank", str(r), "--iterations", str(n)], S.columns_table(S.FLOOR_COLUMNS),
                               ("docs/performance.md",), script="benchmarks/floor.py", peers=False, json_to_stdout=True)
       for r, n in ((10, 40), (20, 60))},
    "floor-paths": Table(["--paths"], S.columns_table(S.FLOOR_PATH_COLUMNS), ("docs/performance.md",),
                         script="benchmarks/floor.py", peers=False, json_to_stdout=True),
    "streaming": Table(["--n", "10000", "100000", "--materialise"], S.columns_table(S.STREAMING_COLUMNS),
                       ("docs/performance.md",), script="benchmarks/streaming.py", peers=False, json_to_stdout=True),
})
TABLES["peers-wide"].files += ("README.md",)

def _at(d: dict[str, Any], method: str, key: str, t: int) -> float:
    """A fade result's ``key`` (pearson, slope, ...) for ``method`` at horizon ``t``."""
    return d["methods"][method][key][d["steps"].index(t)]


def _best(d: dict[str, Any], method: str) -> str:
    """A method's best Pearson over a fade's grid and the T where it is reached: ``0.70, near T = 30``."""
    p = d["methods"][method]["pearson"]
    i = max(range(len(p)), key=lambda k: p[k])
    return f"{p[i]:.2f}, near T = {d['steps'][i]}"


FIGURES: dict[str, Figure] = {
    "self-influence-auc": Figure("self-influence-flip", lambda d: f"{d['auc']:.3f}"),
    "lds-linear-exact": Figure("lds-linear-exact", lambda d: R.lds_with_ci(d["methods"]["exact"])),
    "mlp-graddot-half": Figure("fade-mlp-remove", lambda d: f"{d['methods']['graddot']['horizon_half']:.0f}"),
    "mlp-arnoldi-horizon-last": Figure("fade-mlp-remove", lambda d: f"{d['methods']['arnoldi_horizon']['pearson'][-1]:.2f} "
                                       f"by T = {d['steps'][-1]}"),
    "mlp-arnoldi-best": Figure("fade-mlp-remove", lambda d: _best(d, "arnoldi")),
    "mlp-unrolled-upweight-min": Figure("fade-mlp-upweight", lambda d: f"{min(d['methods']['unrolled']['pearson']):.3f}"),
    "mlp-unrolled-remove-slope": Figure("fade-mlp-remove", lambda d: f"slope {_at(d, 'unrolled', 'slope', 10):.2f} at "
                                        f"T = 10, {d['methods']['unrolled']['slope'][-1]:.2f} at T = {d['steps'][-1]}"),
    "unrolled-cost-one": Figure("unrolled-cost", lambda rs: S.ratio_range(rs, queries=1)),
    "unrolled-cost-block": Figure("unrolled-cost", lambda rs: S.ratio_range(rs, queries=20, per_query=True)),
    "unrolled-cost-rss": Figure("unrolled-cost-1", lambda d: f"{d['rows'][0]['process_peak_rss_mb']:.0f} to "
                                f"{d['rows'][-1]['process_peak_rss_mb']:.0f} MiB between T = {d['rows'][0]['T']} and "
                                f"T = {d['rows'][-1]['T']}"),
    "eigen-ratio-kept": Figure("eigen-ratio", S.eigen_summary),
    "eigen-ratio-nowd": Figure("eigen-ratio-nowd", S.eigen_summary),
    "real-default-best": Figure("fade-summary", lambda rs: R.best_at_first_step(
        [rs[n] for n in ("fade-cnn", "fade-tweets-remove", "fade-tweets-upweight")])),
    "peers-exact-agree": Figure("peers-small", lambda d: f"{min(r['vs_exact'] for r in d['rows'] if r['vs_exact'] > 0.99):.2f}"),
}


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
             + f" {table.script} " + " ".join(f'"{a}"' if " " in a else a for a in table.command))
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
                body += "" if kind == "figure" else "\n"
                new = _region(kind, name).sub(lambda m, b=body: m.group(1) + b + m.group(2), new)
        for table in docs_check.unmarked_tables(file, new):
            if table.pending:
                print(f"{table}: a hand copy pending a rerun ({table.pending})", file=sys.stderr)
                continue
            problems.append(f"{table}: a table with numbers outside every <!-- table:NAME --> marker (render it from "
                            "a stored result, or mark it <!-- not-measured --> if its numbers are not measurements)")
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
