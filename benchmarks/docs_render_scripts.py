"""How the stored output of a benchmark script (``docs/results/NAME.json``) is rendered into the docs: peers side by
side, ground-truth speed, the cost of ``unrolled``, and any list of rows by columns (``columns_table``)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from docs_render import num, run_caption, sig2, thread_counts

ROOT = Path(__file__).resolve().parents[1]


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
                  f"noise / signal {sig2(m['noise_ratio_Tmax'])} at the last T" if "noise_ratio_Tmax" in m else "")
        met = "" if key is None else ("yes" if m[key] <= bound else "no")
        target = "" if key is None else (f"≤ {bound:g} s" if key == "seconds" else f"≤ {bound:g}×")
        rows.append(f"| {m['benchmark']} | {m.get('batching', '')} | {m.get('dtype', '')} | {size} | "
                    f"{m['seconds']:.2f} | {figure} | {target} | {met} | {m['load'][0]:.1f} |")
    return "\n".join(rows) + (f"\n\n{thread_counts(m['threads'] for m in d['measurements'])} thread(s) on {d['_meta']['machine']}; load = "
                              "the 1-minute load average when the measurement ended.")


def peers_table(d: dict[str, Any]) -> str:
    """benchmarks/peers.py's table and its speed summary (ABIF against the peers, embedding against the floor)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import peers
    a = d["args"]
    data = a.get("data", "digits")
    caption = (f"\n\n{data} MLP {peers.arch(a['hidden'], data)} ({d['params']:,} parameters), {a['n_train']} training "
               f"examples × {a['queries']} queries; ground truth: remove each of {a['ids']} examples, full-batch GD "
               f"lr 1/λ_max = {d['lr']:.3g} ({d['ground_truth_s']:.0f} s); torch {d['torch']}, {d['threads']} "
               f"thread(s), {d['_meta']['seconds']:.0f} s in all, {d['_meta']['machine']}, {d['_meta']['date']}.")
    return peers.render(d["rows"], a["steps"]) + caption + "\n\n" + peers.render_summary(d, d["rows"]).replace(
        "\n", "  \n")


def peers_scaling_table(d: dict[str, Any]) -> str:
    """benchmarks/peers.py --scaling: each method's seconds at each training-set size."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import peers
    return peers.render_scaling(d) + f"\n\n{run_caption(d)} in all, {d['_meta']['machine']}, {d['_meta']['date']}."


def arnoldi_sweep_table(d: dict[str, Any]) -> str:
    """benchmarks/arnoldi_sweep.py: each option set's seconds, sizes, and agreement (with the ground truth at each T,
    and with the first row's scores), with its loss against the first row at each T."""
    steps, ref = d["args"]["steps"], d["rows"][0]
    lines = ["| options | seconds | rank | iterations run | Hessian sample | kept pairs with residual ≤ 0.1 λ | "
             "Spearman vs first row | " + " | ".join(f"vs truth T={t} (Δ)" for t in steps) + " |",
             "|---|---:|---:|---:|---:|---:|---:|" + "---:|" * len(steps)]
    for r in d["rows"]:
        cells = [f"{r[f'vs_gt_T{t}']:.2f} ({r[f'vs_gt_T{t}'] - ref[f'vs_gt_T{t}']:+.2f})" for t in steps]
        lines.append(f"| `{r['options']}` | {r['seconds']:.2f} | {r['rank']} | {r['iterations_used']} | "
                     f"{r['hessian_samples']} | {r['kept_residual_le_0.1']} | {r['vs_reference']:.2f} | "
                     + " | ".join(cells) + " |")
    a = d["args"]
    return "\n".join(lines) + (f"\n\n{a['data']} MLP ({d['params']:,} parameters), {a['n_train']} training examples × "
                               f"{a['queries']} queries, peers.py's checkpoint and ground truth ({a['ids']} removals, "
                               f"lr 1/λ_max = {d['lr']:.3g}); {run_caption(d)} in all, {d['_meta']['date']}.")


def unrolled_cost(d: dict[str, Any]) -> str:
    """benchmarks/unrolled.py: one reverse pass for a block of queries against one plain replay and against the floor
    (the replay plus a Hessian-vector product per query and step), and the step graphs and states kept."""
    rows = ["| T | queries | schedule | replay s | unrolled s | ratio | floor s | unrolled / floor | step graphs kept "
            "| checkpoints | peak states | peak state MiB | all states MiB |",
            "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in d["rows"]:
        how = f"{r['optimizer']}, " + (f"batch {r['train_batch_size']}" if r["train_batch_size"] else "full batch")
        rows.append(f"| {r['T']} | {r['queries']} | {how} | {r['replay_s']:.2f} | {r['unrolled_s']:.2f} | "
                    f"{r['ratio']:.2f} | {r['floor_s']:.2f} | {r['ratio_floor']:.2f} | {r['graphs']} | "
                    f"{r['checkpoints']} | {r['peak_states']} | {r['peak_state_mb']:.3f} | {r['naive_state_mb']:.3f} |")
    return "\n".join(rows) + f"\n\n{run_caption(d)}."


def columns_table(columns: list[tuple[str, Any]]) -> Callable[[dict[str, Any]], str]:
    """A renderer of a benchmark script's list of rows (stored as ``rows``): one column per ``(header, format)``, the
    format a ``str.format`` template over the row's keys, e.g. ``("floor s", "{floor_s:.3f}")``, or ``row -> str``."""
    def render(d: dict[str, Any]) -> str:
        head = "| " + " | ".join(h for h, _ in columns) + " |"
        rule = "|" + "---|" * len(columns)
        rows = ["| " + " | ".join(fmt(r) if callable(fmt) else fmt.format(**r) for _, fmt in columns) + " |"
                for r in d["rows"]]
        return "\n".join([head, rule, *rows]) + f"\n\n{run_caption(d)}."
    return render


FLOOR_COLUMNS = [("model", "{model}"), ("params", "{params:,}"), ("N", "{n_train:,}"), ("floor s", "{floor_s:.3f}"),
                 ("fit s (HVPs)", "{fit_s:.2f} ({fit_hvps})"), ("embed jvp s", "{embed_jvp_s:.3f}"),
                 ("embed vmap s", "{embed_vmap_s:.3f}"), ("auto", "{auto_picks}"),
                 ("embed (auto)/floor", "{ratio_embed_auto:.2f}×"), ("embed+top-k s", "{score_topk_s:.3f}"),
                 ("(embed+top-k)/floor", "{ratio_embed_and_score:.2f}×")]
FLOOR_PATH_COLUMNS = [("params", "{params:,}"), ("rank", "{rank}"), ("floor s", "{floor_s:.4f}"), ("jvp s", "{jvp:.4f}"),
                      ("vmap s", "{vmap:.4f}"), ("rank rule picks", "{rule}"), ("measured picks (probe s)",
                                                                                 "{auto} ({probe_s:.3f})")]
STREAMING_COLUMNS = [("N", "{n:,}"), ("queries × k", "{queries} × {k}"), ("top-k s", "{topk_s:.1f}"),
                     ("peak RSS before top-k MB", "{rss_before_mb:.0f}"), ("peak RSS after top-k MB", "{peak_rss_topk_mb:.0f}"),
                     ("full matrix MB", "{matrix_mb:.0f}"), ("peak RSS after full matrix MB", "{peak_rss_scores_mb:.0f}")]


def _proponents(r: dict[str, Any]) -> str:
    """The first query's top proponents (quoted texts, or ``#index``), and the query when it is a text."""
    texts = r.get("texts", not r["query"].startswith("#"))
    shown = [f'"{" ".join(t.split())}"' if texts else t for t in r["proponents"]]  # a tweet's line breaks: spaces
    query = f' (query: "{r["query"][:60]}")' if texts else ""
    return ("; ".join(shown) + query).replace("|", "\\|")


def _set_options(r: dict[str, Any]) -> str:
    """The options line of ``ifscope top`` without those left at the library's default."""
    method, _, options = r["chose"].partition(": ")
    return f"{method}: " + ", ".join(o for o in options.split(", ") if not o.endswith("(library)"))


def _short_warning(line: str) -> str:
    """The gist of a NumericalWarning line of ``ifscope top``: a Hessian sample's drift, unconverged kept pairs, or the
    warning's first words."""
    import re
    drift = re.search(r"Hessian sample of (\d+) examples differ by a median (\d+%)", line)
    if drift:
        return f"the {drift[1]}-example Hessian sample drifts {drift[2]}"
    ritz = re.search(r"(\d+) of the (\d+) kept Ritz pairs had not converged after (\d+) iterations", line)
    if ritz:
        return f"{ritz[1]} of {ritz[2]} kept pairs unconverged after {ritz[3]} steps"
    return line.split("NumericalWarning: ", 1)[-1][:60] + "…"


def _wall(r: dict[str, Any]) -> str:
    """The wall seconds; with ``--repeat``, the median and each run's, in order."""
    walls = r.get("walls") or []
    return f"{r['seconds']:.1f}" + (f" (runs: {', '.join(f'{w:.1f}' for w in walls)})" if len(walls) > 1 else "")


DEFAULTS_COLUMNS = [("recipe", "{recipe}"), ("wall s (median)", _wall), ("CPU s (user + sys)", "{cpu_seconds:.1f}"),
                    ("load at end", "{load:.1f}"), ("options set (the rest: the library's)", _set_options),
                    ("fit's warnings", lambda r: "not recorded" if "warnings" not in r
                     else "; ".join(_short_warning(w) for w in r["warnings"]) or "none"),
                    ("first query's top proponents", _proponents)]


def unrolled_cost_summary(results: dict[str, dict[str, Any]]) -> str:
    """Several runs of benchmarks/unrolled.py as one table, with the command of each."""
    rows = [r for d in results.values() for r in d["rows"]]
    table = unrolled_cost({"rows": rows, "_meta": {"threads": 0, "seconds": 0}}).rsplit("\n\n", 1)[0]
    return ("\n".join(f"`{d['_meta']['command']}`  " for d in results.values()) + "\n\n" + table
            + f"\n\n{thread_counts(d['_meta']['threads'] for d in results.values())} thread(s); best of 2, replay "
            "and unrolled alternating; the floor's products best of 3.")


def ratio_range(results: dict[str, dict[str, Any]], queries: int, per_query: bool = False) -> str:
    """``3.1–3.6 plain replays (target ≤ 4: met)`` over the rows of benchmarks/unrolled.py runs with that block size;
    ``per_query`` adds the cost per query of the block; both add the range against the floor."""
    rows = [r for d in results.values() for r in d["rows"] if r["queries"] == queries]
    lo, hi = min(r["ratio"] for r in rows), max(r["ratio"] for r in rows)
    flo, fhi = min(r["ratio_floor"] for r in rows), max(r["ratio_floor"] for r in rows)
    text = f"{lo:.1f}–{hi:.1f} plain replays (target ≤ 4: {'met' if hi <= 4 else 'not met'})"
    if per_query:
        text += f", i.e. {lo / queries:.2f}–{hi / queries:.2f} replay per query"
    return text + f", and {flo:.2f}–{fhi:.2f}× the floor"


COMMANDS_COLUMNS = [("command", "`{command}`"), ("wall s", "{seconds:.0f}"), ("CPU s", "{cpu_seconds:.0f}"),
                    ("peak RSS MB", "{peak_rss_mb:,}"),
                    ("within 5 min", lambda r: f"**no**: stopped at {r['seconds']:.0f} s" if r["timed_out"] else
                     "yes" if r["within_target"] else "**no**")]
EIGEN_RATIO_COLUMNS = [("k", "{k}"), ("λ_k", "{eigenvalue:.3g}"), ("λ_k / λ_1", "{ratio:.2g}")]
HORIZON_ACCURACY_COLUMNS = [("T", "{T}"), ("solver", "{solver}"), ("Lanczos steps", lambda r: str(r["krylov"] or "–")),
                            ("relative error", "{relative_error:.1e}"), ("seconds", "{seconds:.1f}")]


def eigen_summary(d: dict[str, Any]) -> str:
    """benchmarks/eigen_ratio.py in a clause: how many eigenpairs were kept, the extremes, the warnings."""
    first, last = d["rows"][0], d["rows"][-1]
    return (f"{d['kept']} kept, largest {first['eigenvalue']:.4g}, smallest kept ratio {last['ratio']:.2g} "
            f"(λ_{last['k']} = {last['eigenvalue']:.3g}); "
            + ("no warning" if not d["warnings"] else "warning: " + "; ".join(f"\"{w}\"" for w in d["warnings"])))


def lds_script_table(d: dict[str, Any]) -> str:
    """benchmarks/lds.py: each method's LDS (ifscope's routine, with dattri's on the same inputs beside it) and seconds."""
    a = d["args"]
    how = f"from scratch, {a['seeds']} seed(s)" if a["retrain"] == "scratch" else f"continued {a['steps']} steps"
    lines = ["| method | LDS (95 % CI) | LDS by dattri.metric.lds | LDS margin | seconds |", "|---|---:|---:|---:|---:|"]
    ok = [r for r in d["rows"] if "error" not in r]
    best = max(r["loss"]["ifscope"] for r in ok)
    for r in sorted(ok, key=lambda r: -r["loss"]["ifscope"]):
        lo, hi = r["loss"]["ci"]
        value = f"{num(r['loss']['ifscope'])} [{num(lo)}, {num(hi)}]"
        lines.append(f"| {r['method']} | {'**' + value + '**' if r['loss']['ifscope'] == best else value} | "
                     f"{num(r['loss']['dattri'])} | {num(r['margin']['ifscope']) if 'margin' in r else '–'} | "
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


def ekfac_settings_table(d: dict[str, Any]) -> str:
    """benchmarks/ekfac_settings.py: which settings separate the LDS benchmark's EK-FAC rows."""
    lines = ["| score matrices compared | mean Spearman per query |", "|---|---:|"]
    lines += [f"| {r['pair']} | {r['spearman']:.3f} |" for r in d["rows"]]
    return "\n".join(lines) + (f"\n\n{d['recipe']} ({d['parameters']:,} parameters), {d['n_train']} training examples × "
                                f"{d['n_queries']} queries, damping heuristic on both; {d['_meta']['threads']} thread(s), "
                                f"{d['_meta']['machine']}, {d['_meta']['date']}.")


def scale_summary(results: dict[str, dict[str, Any]]) -> str:
    """benchmarks/scale.py's configurations in one table, what they say about linear cost and flat memory, the
    targets, and the command of each stored run."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import scale
    rows = sorted((r for d in results.values() for r in d["rows"]), key=lambda r: (r["last_blocks"], r["n_train"]))
    runs = "; ".join(f"`{d['_meta']['command']}` ({d['_meta']['seconds']:.0f} s)" for d in results.values())
    meta = next(iter(results.values()))["_meta"]
    threads = thread_counts(r["threads"] for r in rows)
    return (scale.render_rows(rows) + "\n\n" + "  \n".join(scale.verdict(rows) + scale.targets(rows))
            + f"\n\n{threads} thread(s), {meta['machine']}, {meta['date']}; runs: {runs}.")


def streaming_growth(d: dict[str, Any]) -> str:
    """benchmarks/streaming.py in a clause: how peak memory and time grow from the first N to the last."""
    a, b = d["rows"][0], d["rows"][-1]
    return (f"{b['n'] / a['n']:.0f} times the training set: {b['peak_rss_topk_mb'] - a['peak_rss_topk_mb']:+.0f} MB of "
            f"peak memory for streamed top-k ({a['queries']} queries × top-{a['k']}), "
            f"{b['peak_rss_scores_mb'] - a['peak_rss_scores_mb']:+.0f} MB when the full {a['queries']} × N matrix is "
            f"materialised ({b['matrix_mb']:.0f} MB at N = {b['n']:,}); top-k took {a['topk_s']:.1f} s and "
            f"{b['topk_s']:.1f} s ({b['topk_s'] / a['topk_s']:.1f}× for {b['n'] / a['n']:.0f}× N)")


def sweep_row(options: str) -> Callable[[dict[str, Any]], str]:
    """A figure of benchmarks/arnoldi_sweep.py: the row of ``options`` against the first row, in words:
    ``+0.01 / -0.24 of Spearman at T = 10 / 100, 3.40 s against 6.03 s``."""
    def render(d: dict[str, Any]) -> str:
        ref = d["rows"][0]
        r = next(r for r in d["rows"] if r["options"] == options)
        steps = d["args"]["steps"]
        deltas = " / ".join(f"{r[f'vs_gt_T{t}'] - ref[f'vs_gt_T{t}']:+.2f}" for t in steps)
        return (f"{deltas} of Spearman at T = {' / '.join(map(str, steps))}, {r['seconds']:.2f} s against "
                f"{ref['seconds']:.2f} s")
    return render


def peers_same_kind(d: dict[str, Any]) -> str:
    """A figure of benchmarks/peers.py: in how many same-kind pairings ifscope was faster, with each ratio."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import peers_report
    return peers_report.same_kind(d["rows"])


def peers_every_t(d: dict[str, Any], name: str = "ifscope defaults", target: float = 0.5) -> str:
    """A figure of benchmarks/peers.py: ``name``'s seconds against the fastest peer at least as good at every T."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import peers_report
    v = peers_report.verdict(d["rows"], list(d["args"]["steps"]), name)
    if v is None or v["fastest_as_good"] is None:
        return "no peer is as good at every T (met)"
    return (f"{v['ratio']:.2f}× {v['fastest_as_good']} ({v['seconds']:.2f} s against {v['its_seconds']:.2f} s; "
            f"{'met' if v['ratio'] <= target else 'not met'})")


def peers_defaults_loss(d: dict[str, Any], name: str = "ifscope defaults", reference: str = "ifscope arnoldi",
                        allowed: float = 0.02) -> str:
    """A figure of benchmarks/peers.py: ``name``'s Spearman with the ground truth less ``reference``'s, at each T."""
    rows = {r["method"]: r for r in d["rows"]}
    steps = d["args"]["steps"]
    deltas = [rows[name][f"vs_gt_T{t}"] - rows[reference][f"vs_gt_T{t}"] for t in steps]
    missed = [t for t, x in zip(steps, deltas) if x < -allowed]
    return (" / ".join(f"{x:+.2f}" for x in deltas) + f" at T = {' / '.join(map(str, steps))} (at most {allowed} "
            "lost: " + ("met" if not missed else f"not met at T = {', '.join(map(str, missed))}") + ")")
