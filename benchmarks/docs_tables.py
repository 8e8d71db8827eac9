"""Tables of the README and docs, generated from the JSON output of the shipped commands (never retyped).

Each table names the command that produces it. ``--run NAME ...`` (or ``--run all``) runs those commands with
``--json`` on a fixed thread count and stores their output in ``docs/results/NAME.json`` together with the command,
the thread count, the machine and the duration; without ``--run`` the tables are rendered from the stored results
into the regions ``<!-- table:NAME -->`` … ``<!-- /table:NAME -->`` of the Markdown files. ``--check`` exits 1
when a file's table differs from what its stored result renders (tests/test_docs_tables.py runs it).

    PYTHONPATH=src python benchmarks/docs_tables.py --run all --threads 2   # minutes; on an idle machine
    PYTHONPATH=src python benchmarks/docs_tables.py                          # re-render from docs/results/
"""

from __future__ import annotations

import argparse
import json
import math
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

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"


@dataclass
class Table:
    """A table: the command (without ``--workdir`` and ``--json``), how to render its JSON, where it goes."""

    command: list[str]
    render: Callable[[dict[str, Any]], str]
    files: tuple[str, ...]
    source: str | None = None  # another table's stored result, rendered another way
    script: str | None = None  # a benchmark script (``--json FILE``) instead of ifscope
    peers: bool = True  # the script runs in the peers' environment (benchmarks/setup_peers.sh), else in this one
    sources: tuple[str, ...] = ()  # a summary of other tables' stored results: ``render({name: result})``


def _n(x: Any, digits: int = 3) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:.{digits}f}".replace("-", "−")
    return str(x)


def _g(x: Any) -> str:
    return "n/a" if x is None else f"{x:.2g}".replace("-", "−")


def _schedule(d: dict[str, Any]) -> str:
    """How a fade run continued training: full-batch GD or SGD with its batch size."""
    return "full-batch GD" if not d.get("train_batch_size") else f"SGD batch {d['train_batch_size']}"


def _threads(counts: Any) -> str:
    """The thread counts of several runs, ``"1/2"``."""
    return "/".join(map(str, sorted(set(counts))))


def _half(m: dict[str, Any], steps: list[int]) -> str:
    half = m.get("horizon_half")
    return f"> {steps[-1]}" if half is None and m["pearson"][0] and m["pearson"][0] > 0 else _n(half, 0)


def fade_table(d: dict[str, Any], key: str = "pearson") -> str:
    """Methods as rows, T as columns, the half-life last."""
    head = "| method | " + " | ".join(f"T={t}" for t in d["steps"]) + " | T½ |"
    rule = "|---|" + "---:|" * (len(d["steps"]) + 1)
    rows = []
    for name, m in d["methods"].items():
        rows.append(f"| {name} | " + " | ".join(_n(v) for v in m[key]) + f" | {_half(m, d['steps'])} |")
    gap = " → ".join(_g(g) for g in (d["gap"][0], d["gap"][-1]))
    run = d["config"]
    caption = (f"\n\n{d['n_ids']} {'removed' if d['mode'] == 'remove' else 're-weighted'} examples × {d['n_queries']} "
               f"queries; continued training lr {d['lr']:.3g}; the run's method is {run['method']}"
               + (f" rank {run['rank']}" if run.get("rank") else "") + f"; parameter gap {gap} (∝ T^"
               f"{d['gap_exponent']:.2f}); {d['_meta']['threads']} thread(s), {d['_meta']['seconds']:.0f} s.")
    validity = d.get("validity_horizon") or {}
    if validity:
        caption += (" Horizon of validity against `unrolled` (median over the queries of the largest T with "
                    "Spearman ≥ 0.9; – = not even at T = 1): "
                    + ", ".join(f"{n} {_n(v['summary']['median']).replace('n/a', '–')}" for n, v in validity.items())
                    + ".")
    return "\n".join([head, rule, *rows]) + caption


def fade_tables(d: dict[str, Any]) -> str:
    """Pearson over all pairs, Spearman per query, and the slope of actual on predicted change."""
    parts = [fade_table(d, "pearson")]
    for key, title in (("spearman_per_query", "Spearman per query, averaged"),
                       ("slope", "Slope of actual on predicted change")):
        head = "| method | " + " | ".join(f"T={t}" for t in d["steps"]) + " |"
        rows = [f"| {n} | " + " | ".join(_n(v) for v in m[key]) + " |" for n, m in d["methods"].items()]
        parts.append(f"{title} (`{key}`):\n\n" + "\n".join([head, "|---|" + "---:|" * len(d["steps"]), *rows]))
    return "\n\n".join(parts)


def fade_tables_floor(d: dict[str, Any]) -> str:
    """:func:`fade_tables` with how the ids were drawn and the ground truth's noise floor per T."""
    floor = d.get("noise_floor") or {}
    drawn = ("the ids drawn from the first minibatch of the continued training" if d.get("ids_from") == "first_batch"
             else "the ids drawn from the whole training set")
    how = _schedule(d)
    return (fade_tables(d) + f"\n\n{how}, {drawn}; ground truth in {d.get('truth_dtype')}, noise floor / RMS change "
            "per T: " + ", ".join(_g(r) for r in floor.get("ratio", [])) + f"; ground truth {d['truth_seconds']:.0f} s.")


def diagnose_table(d: dict[str, Any]) -> str:
    from ifscope.experiments.diagnose import CHECK_MODULES
    rows = ["| assumption | verdict | key figures |", "|---|---|---|"]
    for name, a in d["assumptions"].items():
        figures = CHECK_MODULES[name].key_figures(a).replace("|", "\\|")  # |λmin| inside a Markdown table
        rows.append(f"| {name} | {a['verdict']} | {figures} |")
    return "\n".join(rows) + (f"\n\nrun: {d['config']['method']} rank {d['config'].get('rank')}; "
                              f"{d['_meta']['threads']} thread(s), {d['_meta']['seconds']:.0f} s.")


def correct_table(d: dict[str, Any]) -> str:
    rows = ["| selection | fix rate | held-out accuracy after | broken predictions (mean) | s / correction |",
            "|---|---:|---:|---:|---:|"]
    for name, m in d["methods"].items():
        ref = " (reference)" if name in d.get("reference_only", []) else ""
        acc = m.get("heldout_accuracy_after")
        rows.append(f"| {name}{ref} | {_n(d['fix_rate'][name], 2)} | {'n/a' if acc is None else f'{100 * acc:.2f} %'}"
                    f" | {_n(m.get('broken'), 1)} | {_n(m.get('seconds'), 3)} |")
    before = d.get("heldout_accuracy", {}).get("before")
    return "\n".join(rows) + (f"\n\n{d['n_queries']} natural mistakes corrected, {d['n_heldout']} held-out examples"
                              + (f" (accuracy before {100 * before:.2f} %)" if before is not None else "")
                              + f"; {d['_meta']['threads']} thread(s), {d['_meta']['seconds']:.0f} s.")


def correct_lm_table(d: dict[str, Any]) -> str:
    """A correction run on a language model: fix rates, the held-out NLL per token (and perplexity) after."""
    fig, c = d["heldout_figure"], d["settings"]
    rows = ["| selection | fix rate | held-out NLL/token after (perplexity) | broken completions (mean) | s / correction |",
            "|---|---:|---:|---:|---:|"]
    for name, m in d["methods"].items():
        after = m.get("heldout_figure_after")
        shown = "n/a" if after is None else f"{after:.4f} ({math.exp(after):.2f})"
        ref = " (reference)" if name in d.get("reference_only", []) else ""
        rows.append(f"| {name}{ref} | {_n(d['fix_rate'][name], 2)} | {shown} | {_n(m.get('broken'), 1)} | "
                    f"{_n(m.get('seconds'), 3)} |")
    return "\n".join(rows) + (
        f"\n\n{d['n_queries']} completions that are not the greedy continuation, {d['n_heldout']} held-out tweets "
        f"(NLL/token before {fig['before']:.4f}, perplexity {math.exp(fig['before']):.2f}); budget: k {c['k']}, ≤ "
        f"{c['steps']} SGD steps at lr {c['lr']:.3g}" + (", stop when fixed" if c["stop_when_fixed"] else "")
        + f"; {d['_meta']['threads']} thread(s), {d['_meta']['seconds']:.0f} s.")


def _bars(d: dict[str, Any]) -> tuple[float, dict[str, float]]:
    """``(influence's fix rate / random-k's, held-out accuracy drop in points per selection)`` of a correct run."""
    fr, before = d["fix_rate"], d["heldout_accuracy"]["before"]
    drop = {m: 100 * (before - s["heldout_accuracy_after"]) for m, s in d["methods"].items()}
    return (fr["influence"] / fr["random"] if fr.get("random") else float("inf")), drop


def correct_bars(d: dict[str, Any]) -> str:
    """:func:`correct_table` with issue 13's bars: the fix rate against random-k and the gold class, the drop."""
    fr, (ratio, drop) = d["fix_rate"], _bars(d)
    c = d["settings"]
    budget = (f"k {c['k']}, ≤ {c['steps']} SGD steps at lr {c['lr']:.3g}, anchor {c['anchor']}"
              + (", stop when fixed" if c["stop_when_fixed"] else "")
              + (f", guard of {c['guard']} training examples (≤ {100 * c['guard_drop']:g} points lost)"
                 if c.get("guard") else "") + (", unfixed corrections reverted" if c.get("revert_unfixed") else ""))
    return (correct_table(d) + f" Budget (every selection): {budget}. Fix rate {fr['influence']:.2f} = "
            f"{ratio:.1f}× random-k's {fr['random']:.2f} (bar ≥ 3×), gold class {fr['random_same_class']:.2f} "
            f"(bar: above it); held-out accuracy drop {drop['influence']:.2f} points (bar ≤ 1; random-k "
            f"{drop['random']:.2f}, gold class {drop['random_same_class']:.2f}).")


def correct_summary(results: dict[str, dict[str, Any]]) -> str:
    """One row per stored correction run: issue 13's bars side by side (the full tables are in the docs)."""
    rows = ["| command | mistakes | fixed by influence | random-k | gold-class random-k | × random | held-out drop "
            "(points) | bars met |", "|---|---:|---:|---:|---:|---:|---:|---|"]
    for d in results.values():
        fr, (ratio, drops) = d["fix_rate"], _bars(d)
        drop = drops["influence"]
        met = ratio >= 3 and fr["influence"] > fr["random_same_class"] and drop <= 1
        rows.append(f"| `{d['_meta']['command']}` | {d['n_queries']} | **{fr['influence']:.2f}** | {fr['random']:.2f} | "
                    f"{fr['random_same_class']:.2f} | {ratio:.1f} | {drop:.2f} | {'yes' if met else 'no'} |")
    return "\n".join(rows) + (f"\n\nEach run with the recipe's defaults; "
                              f"{_threads(d['_meta']['threads'] for d in results.values())} thread(s).")


# scores that look at the continued training itself, not only at the checkpoint: the claim is about the others
TRAJECTORY_METHODS = ("tracin", "unrolled")


def _range(values: list[float]) -> str:
    lo, hi = min(values), max(values)
    return _n(lo) if f"{lo:.3f}" == f"{hi:.3f}" else f"{_n(lo)}–{_n(hi)}"


def fade_verdict(first: float, last: list[float]) -> str:
    """Issue 13's bar on one run: a Pearson ≥ 0.9 at the smallest T, and whether those scores fade by the largest."""
    if first < 0.9:
        return "no: < 0.9 at the smallest T"
    if max(last) <= first / 2:
        return "yes: all fade to ≤ ½"
    if max(last) < 0.9 * first:
        return "fades, not to ½"
    return "not all fade"


def fade_summary(results: dict[str, dict[str, Any]]) -> str:
    """One row per stored fade run: the best checkpoint score at the smallest T and where the good ones end up."""
    rows = ["| command | continued training | best checkpoint score at the smallest T | those ≥ 0.9 there, at the "
            "largest T | their T½ | `unrolled` at the largest T | verdict |", "|---|---|---|---|---|---:|---|"]
    for d in results.values():
        steps, methods = d["steps"], d["methods"]
        ours = {n: m["pearson"] for n, m in methods.items() if n not in TRAJECTORY_METHODS and m["pearson"][0] is not None}
        best = max(p[0] for p in ours.values())
        tied = sorted(n for n, p in ours.items() if f"{p[0]:.3f}" == f"{best:.3f}")
        good = [n for n, p in ours.items() if p[0] >= 0.9 and p[-1] is not None] or tied
        halves = sorted({_half(methods[n], steps) for n in good}, key=lambda h: (h.startswith(">"), h))
        how = _schedule(d) + f", lr {d['lr']:.2g}, " + ("removal" if d["mode"] == "remove" else f"ε = {d['epsilon']:g}")
        unrolled = methods.get("unrolled", {}).get("pearson", [None])[-1]
        rows.append(f"| `{d['_meta']['command']}` | {how} | {_n(best)} at T = {steps[0]} ({', '.join(tied)}) | "
                    f"{_range([ours[n][-1] for n in good])} at T = {steps[-1]} ({len(good)} score{'s' if len(good) > 1 else ''}) | "
                    f"{' – '.join((halves[0], halves[-1])) if len(halves) > 1 else halves[0]} | {_n(unrolled)} | "
                    f"{fade_verdict(best, [ours[n][-1] for n in good])} |")
    return "\n".join(rows) + ("\n\nPearson of predicted against actual loss change over all (example, query) "
                              f"pairs; checkpoint scores are every method but {' and '.join(TRAJECTORY_METHODS)} "
                              "(which look at the continued training itself); "
                              f"{_threads(d['_meta']['threads'] for d in results.values())} thread(s).")


# issue 13's targets for benchmarks/groundtruth.py: (figure, bound) per measurement
GROUNDTRUTH_TARGETS = {
    "digits-cnn ground truth (minibatch)": ("seconds", 60.0),
    "digits-cnn full-batch replica-step vs floor": ("ratio", 1.5),
    "tweets-minilm last-block ground truth (minibatch)": ("seconds", 300.0),
}


def groundtruth_table(d: dict[str, Any]) -> str:
    """One row per measurement of benchmarks/groundtruth.py, against its target where issue 13 sets one."""
    rows = ["| measurement | replicas by | dtype | size | seconds | figure | target | met? | load |",
            "|---|---|---|---|---:|---|---|---|---|"]
    for m in d["measurements"]:
        key, bound = GROUNDTRUTH_TARGETS.get(m["benchmark"], (None, None))
        size = (f"{m['ids']} ids × {m['steps']} steps, batch {m['batch']}" if "ids" in m else
                f"per replica-step, {m['replicas']} replicas × {m['steps']} steps" if "replicas" in m else "")
        figure = (f"{m['ratio']:.2f}× the {1000 * m['floor_seconds']:.1f} ms floor" if "ratio" in m else
                  f"noise / signal {_g(m['noise_ratio_Tmax'])} at the last T" if "noise_ratio_Tmax" in m else "")
        met = "" if key is None else ("yes" if m[key] <= bound else "no")
        target = "" if key is None else (f"≤ {bound:g} s" if key == "seconds" else f"≤ {bound:g}×")
        rows.append(f"| {m['benchmark']} | {m.get('batching', '')} | {m.get('dtype', '')} | {size} | "
                    f"{m['seconds']:.2f} | {figure} | {target} | {met} | {m['load'][0]:.1f} |")
    return "\n".join(rows) + (f"\n\n{_threads(m['threads'] for m in d['measurements'])} thread(s) on {d['_meta']['machine']}; load = "
                              "the 1-minute load average when the measurement ended.")


CORRECT_SEEDS = (0, 1, 2)  # issue 13 asks for two; the third says whether the margins are luck


def _correct(recipe: str, seed: int) -> Table:
    return Table(["correct", "--recipe", recipe, "--seed", str(seed)], correct_bars, ("docs/experiments_correction.md",))


def peers_table(d: dict[str, Any]) -> str:
    """benchmarks/peers.py's table and its speed summary (ABIF against the peers, embedding against the floor)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import peers
    a = d["args"]
    caption = (f"\n\ndigits MLP {peers.arch(a['hidden'])} ({d['params']:,} parameters), {a['n_train']} training "
               f"examples × {a['queries']} queries; ground truth: remove each of {a['ids']} examples, full-batch GD "
               f"lr 1/λ_max = {d['lr']:.3g} ({d['ground_truth_s']:.0f} s); torch {d['torch']}, {d['threads']} "
               f"thread(s), {d['_meta']['seconds']:.0f} s in all, {d['_meta']['machine']}, {d['_meta']['date']}.")
    return peers.render(d["rows"], a["steps"]) + caption + "\n\n" + peers.render_summary(d, d["rows"]).replace(
        "\n", "  \n")


def lds_table(d: dict[str, Any]) -> str:
    """benchmarks/lds.py: each method's LDS (ifscope's routine, with dattri's on the same inputs beside it) and seconds."""
    a = d["args"]
    how = f"from scratch, {a['seeds']} seed(s)" if a["retrain"] == "scratch" else f"continued {a['steps']} steps"
    lines = ["| method | LDS (95 % CI) | LDS by dattri.metric.lds | LDS margin | seconds |", "|---|---:|---:|---:|---:|"]
    ok = [r for r in d["rows"] if "error" not in r]
    best = max(r["loss"]["ifscope"] for r in ok)
    for r in sorted(ok, key=lambda r: -r["loss"]["ifscope"]):
        lo, hi = r["loss"]["ci"]
        value = f"{_n(r['loss']['ifscope'])} [{_n(lo)}, {_n(hi)}]"
        lines.append(f"| {r['method']} | {'**' + value + '**' if r['loss']['ifscope'] == best else value} | "
                     f"{_n(r['loss']['dattri'])} | {_n(r['margin']['ifscope']) if 'margin' in r else '–'} | "
                     f"{r['seconds']:.1f} |")
    lines += [f"| {r['method']} | failed: {r['error']} | | | |" for r in d["rows"] if "error" in r]
    return "\n".join(lines) + (f"\n\n{a['recipe']}: {a['subsets']} subsets of {a['fraction']:g} of the training set, "
                                f"retrained {how}; {a['queries']} queries; largest per-query difference between the "
                                f"two LDS routines {d['worst_diff']:.1e}; {d['_meta']['threads']} thread(s), "
                                f"{d['_meta']['seconds']:.0f} s in all, {d['_meta']['machine']}, {d['_meta']['date']}.")


def ekfac_table(d: dict[str, Any]) -> str:
    """benchmarks/ekfac_agreement.py: ifscope's ekfac against kronfluence's EK-FAC, agreement and seconds."""
    lines = ["| damping | Spearman per query (min / median) | relative difference | ifscope s | kronfluence s | ratio |",
             "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {r['damping']} | {r['spearman_min']:.4f} / {r['spearman_median']:.4f} | {r['relative_difference']:.1e} "
              f"| {r['ifscope_seconds']:.1f} | {r['kronfluence_seconds']:.1f} | {r['ratio']:.2f} |" for r in d["rows"]]
    return "\n".join(lines) + (f"\n\n{d['recipe']} ({d['parameters']:,} parameters), {d['n_train']} training examples × "
                                f"{d['n_queries']} queries, empirical Fisher on both; seconds: fit + scores, the "
                                f"fastest of {d['args'].get('repeats', 1)} interleaved runs after a warm-up; "
                                f"{d['threads']} thread(s), {d['_meta']['machine']}, {d['_meta']['date']}.")


LDS_MNIST1D = ["--recipe", "mnist1d-mlp", "--subsets", "50", "--methods", "graddot,arnoldi,horizon,kfac,ekfac,ekfac_horizon",
               "--peers", "arnoldi,datainf,kronfluence-ekfac"]

PEERS_WIDE = ["--hidden", "256", "256", "--rank", "100", "--skip", "reference", "exact", "ifscope cg", "ifscope lissa",
              "dattri cg", "pydvl cg", "explicit", "direct", "naive"]

PEERS_SMALL = ["--hidden", "32", "--rank", "100", "--skip", "ifscope cg", "ifscope lissa", "dattri cg", "pydvl cg"]

TABLES: dict[str, Table] = {
    "peers-wide": Table(PEERS_WIDE, peers_table, ("docs/performance.md",), script="benchmarks/peers.py"),
    "peers-small": Table(PEERS_SMALL, peers_table, ("docs/performance.md",), script="benchmarks/peers.py"),
    "lds-mnist1d-mlp": Table(LDS_MNIST1D, lds_table, ("docs/evaluation.md",), script="benchmarks/lds.py"),
    "lds-mnist1d-mlp-continue": Table([*LDS_MNIST1D, "--retrain", "continue", "--steps", "100"], lds_table,
                                      ("docs/evaluation.md",), script="benchmarks/lds.py"),
    "ekfac-kronfluence": Table(["--recipe", "mnist1d-mlp"], lambda d: ekfac_table(d), ("docs/evaluation.md",),
                               script="benchmarks/ekfac_agreement.py"),
    "fade-mnist1d-mlp": Table(["fade", "--recipe", "mnist1d-mlp", "--methods",
                               "run,horizon,arnoldi_horizon,ekfac_horizon,graddot,unrolled", "--steps", "1,3,10,30,100",
                               "--n-ids", "20", "--n-queries", "10"], fade_table, ("docs/evaluation.md",)),
    "fade-mlp-remove": Table(["fade", "--recipe", "digits-mlp", "--mode", "remove"], fade_table, ("README.md",)),
    "fade-mlp-remove-full": Table(["fade", "--recipe", "digits-mlp", "--mode", "remove"], fade_tables,
                                  ("docs/fade.md",), source="fade-mlp-remove"),
    "fade-mlp-upweight": Table(["fade", "--recipe", "digits-mlp", "--mode", "upweight", "--epsilon", "0.01"],
                               fade_tables, ("docs/fade.md",)),
    "fade-mlp-sgd": Table(["fade", "--recipe", "digits-mlp", "--mode", "remove", "--train-batch-size", "100"],
                          fade_tables, ("docs/fade.md",)),
    "fade-tweets-remove": Table(["fade", "--recipe", "tweets-minilm", "--mode", "remove"], fade_tables_floor,
                                ("docs/experiments.md",)),
    "fade-tweets-upweight": Table(["fade", "--recipe", "tweets-minilm", "--mode", "upweight", "--epsilon", "0.01"],
                                  fade_tables_floor, ("docs/experiments.md",)),
    "fade-tweets-lrmax": Table(["fade", "--recipe", "tweets-minilm", "--mode", "remove", "--lr", "0.12", "--n-ids", "10",
                                "--n-queries", "10", "--steps", "1,3,10,30", "--methods",
                                "run,arnoldi_horizon,graddot,horizon_schedule,unrolled"], fade_tables_floor,
                               ("docs/experiments.md",)),
    "diagnose-mlp": Table(["diagnose", "--recipe", "digits-mlp"], diagnose_table, ("README.md", "docs/diagnose.md")),
    "diagnose-mlp-bad": Table(["diagnose", "--recipe", "digits-mlp", "--recipe-arg", "steps=10", "--recipe-arg",
                               "weight_decay=0.0"], diagnose_table, ("README.md", "docs/diagnose.md")),
    "diagnose-cnn": Table(["diagnose", "--recipe", "digits-cnn"], diagnose_table, ("docs/diagnose.md",)),
    "fade-cnn": Table(["fade", "--recipe", "digits-cnn"], fade_tables_floor, ("docs/experiments.md",)),
    "fade-cnn-fast-linear": Table(["fade", "--recipe", "digits-cnn", "--lr", "0.010817", "--steps", "1,3,10,30",
                                   "--mode", "upweight", "--epsilon", "0.0001", "--truth-dtype", "float64"],
                                  fade_table, ("docs/experiments.md",)),
    **{f"correct-{r.split('-')[0]}-{s}": _correct(r, s) for r in ("tweets-minilm", "digits-cnn") for s in CORRECT_SEEDS},
    **{f"correct-tweets-gpt-{s}": Table(["correct", "--recipe", "tweets-gpt", "--seed", str(s)], correct_lm_table,
                                        ("docs/experiments.md",)) for s in (0, 1)},
    "correct-summary": Table([], correct_summary, ("README.md",),
                             sources=tuple(f"correct-{r}-{s}" for r in ("digits", "tweets") for s in CORRECT_SEEDS)),
    "groundtruth": Table(["cnn", "floor", "tweets", "--dtypes", "float32", "--batchings", "vmap,loop"],
                         groundtruth_table, ("docs/experiments.md",), script="benchmarks/groundtruth.py", peers=False),
    "fade-summary": Table([], fade_summary, ("README.md", "docs/experiments.md"),
                          sources=("fade-mlp-remove", "fade-mlp-upweight", "fade-mlp-sgd", "fade-cnn", "fade-cnn-fast-linear",
                                   "fade-tweets-remove", "fade-tweets-upweight", "fade-tweets-lrmax")),
}


def run(name: str, threads: int) -> dict[str, Any]:
    table = TABLES[name]
    if table.source is not None:
        return run(table.source, threads)
    if table.sources:
        return {source: run(source, threads) for source in table.sources}
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with tempfile.TemporaryDirectory() as workdir:
        if table.script is None:
            argv = [sys.executable, "-m", "ifscope", *table.command, "--workdir", workdir, "--json"]
        else:  # the peer libraries live in their own environment (benchmarks/setup_peers.sh)
            python = Path(os.environ.get("BENCHENV", ROOT / ".benchenv")) / "bin" / "python" if table.peers \
                else Path(sys.executable)
            argv = [str(python), str(ROOT / table.script), *table.command, "--json", f"{workdir}/out.json"]
        t0 = time.time()
        proc = subprocess.run(argv, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise SystemExit(f"{name}: `{' '.join(argv)}` failed:\n{proc.stderr[-3000:]}")
        out = json.loads(proc.stdout if table.script is None else Path(f"{workdir}/out.json").read_text())
    shown = "ifscope " + " ".join(table.command) if table.script is None else \
        f"OMP_NUM_THREADS={threads} " + (".benchenv/bin/python" if table.peers else "PYTHONPATH=src python") + \
        f" {table.script} " + " ".join(f'"{a}"' if " " in a else a for a in table.command)
    out["_meta"] = {"command": shown, "threads": threads,
                    "seconds": time.time() - t0, "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                    "date": time.strftime("%Y-%m-%d")}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(out, indent=1) + "\n")
    return out


def rendered(name: str) -> str | None:
    if TABLES[name].sources:
        found = {s: json.loads((RESULTS / f"{s}.json").read_text()) for s in TABLES[name].sources
                 if (RESULTS / f"{s}.json").exists()}
        return TABLES[name].render(found) if found else None
    path = RESULTS / f"{TABLES[name].source or name}.json"
    if not path.exists():
        return None
    d = json.loads(path.read_text())
    return f"`{d['_meta']['command']}`\n\n" + TABLES[name].render(d)


def update(check: bool) -> list[str]:
    """Write (or, with ``check``, compare) every marked region; returns the regions that differ."""
    stale = []
    for file in sorted({f for t in TABLES.values() for f in t.files}):
        path = ROOT / file
        text = path.read_text()
        new = text
        for name in TABLES:
            body = rendered(name)
            pattern = re.compile(rf"(<!-- table:{re.escape(name)} -->\n)(?:.*?\n)?(<!-- /table:{re.escape(name)} -->)",
                                 re.S)
            if body is not None and pattern.search(new):
                new = pattern.sub(lambda m, b=body: m.group(1) + b + "\n" + m.group(2), new)
        if new != text:
            stale.append(file)
            if not check:
                path.write_text(new)
    return stale


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", nargs="*", default=[], help="tables to regenerate by running their commands (or 'all')")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--check", action="store_true", help="exit 1 if a file's tables differ from the stored results")
    args = p.parse_args()
    names = [n for n, t in TABLES.items() if t.source is None and not t.sources] if args.run == ["all"] else args.run
    for name in names:
        if name not in TABLES:
            raise SystemExit(f"unknown table {name!r}; known: {', '.join(TABLES)}")
        print(f"running {name}: {TABLES[name].script or 'ifscope'} {' '.join(TABLES[name].command)}", file=sys.stderr,
              flush=True)
        run(name, args.threads)
    stale = update(args.check)
    if args.check and stale:
        print(f"tables out of date in {', '.join(stale)}: run benchmarks/docs_tables.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
