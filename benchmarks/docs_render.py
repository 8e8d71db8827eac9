"""How each stored ``ifscope`` command output (``docs/results/NAME.json``) is rendered into the README and docs: one
function per kind of table or quoted figure, each ``render(result) -> Markdown`` (benchmark scripts' outputs:
``docs_render_scripts.py``). ``benchmarks/docs_tables.py`` says which command
produces which result and where its rendering goes."""

from __future__ import annotations

import math
from typing import Any


def num(x: Any, digits: int = 3) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:.{digits}f}".replace("-", "−")
    return str(x)


def sig2(x: Any) -> str:
    return "n/a" if x is None else f"{x:.2g}".replace("-", "−")


def _schedule(d: dict[str, Any]) -> str:
    """How a fade run continued training: full-batch GD or SGD with its batch size."""
    return "full-batch GD" if not d.get("train_batch_size") else f"SGD batch {d['train_batch_size']}"


def thread_counts(counts: Any) -> str:
    """The thread counts of several runs, ``"1/2"``."""
    return "/".join(map(str, sorted(set(counts))))


def _half(m: dict[str, Any], steps: list[int]) -> str:
    half = m.get("horizon_half")
    return f"> {steps[-1]}" if half is None and m["pearson"][0] and m["pearson"][0] > 0 else num(half, 0)


def fade_table(d: dict[str, Any], key: str = "pearson") -> str:
    """Methods as rows, T as columns, the half-life last."""
    head = "| method | " + " | ".join(f"T={t}" for t in d["steps"]) + " | T½ |"
    rule = "|---|" + "---:|" * (len(d["steps"]) + 1)
    rows = []
    for name, m in d["methods"].items():
        rows.append(f"| {name} | " + " | ".join(num(v) for v in m[key]) + f" | {_half(m, d['steps'])} |")
    gap = " → ".join(sig2(g) for g in (d["gap"][0], d["gap"][-1]))
    run = d["config"]
    caption = (f"\n\n{d['n_ids']} {'removed' if d['mode'] == 'remove' else 're-weighted'} examples × {d['n_queries']} "
               f"queries; continued training lr {d['lr']:.3g}; the run's method is {run['method']}"
               + (f" rank {run['rank']}" if run.get("rank") else "") + f"; parameter gap {gap} (∝ T^"
               f"{d['gap_exponent']:.2f}); {d['_meta']['threads']} thread(s), {d['_meta']['seconds']:.0f} s.")
    validity = d.get("validity_horizon") or {}
    if validity:
        caption += (" Horizon of validity against `unrolled` (median over the queries of the largest T with "
                    "Spearman ≥ 0.9; – = not even at T = 1): "
                    + ", ".join(f"{n} {num(v['summary']['median']).replace('n/a', '–')}" for n, v in validity.items())
                    + ".")
    return "\n".join([head, rule, *rows]) + caption


def fade_tables(d: dict[str, Any]) -> str:
    """Pearson over all pairs, Spearman per query, and the slope of actual on predicted change."""
    parts = [fade_table(d, "pearson")]
    for key, title in (("spearman_per_query", "Spearman per query, averaged"),
                       ("slope", "Slope of actual on predicted change")):
        head = "| method | " + " | ".join(f"T={t}" for t in d["steps"]) + " |"
        rows = [f"| {n} | " + " | ".join(num(v) for v in m[key]) + " |" for n, m in d["methods"].items()]
        parts.append(f"{title} (`{key}`):\n\n" + "\n".join([head, "|---|" + "---:|" * len(d["steps"]), *rows]))
    return "\n\n".join(parts)


def fade_tables_floor(d: dict[str, Any]) -> str:
    """:func:`fade_tables` with how the ids were drawn and the ground truth's noise floor per T."""
    floor = d.get("noise_floor") or {}
    drawn = ("the ids drawn from the first minibatch of the continued training" if d.get("ids_from") == "first_batch"
             else "the ids drawn from the whole training set")
    how = _schedule(d)
    return (fade_tables(d) + f"\n\n{how}, {drawn}; ground truth in {d.get('truth_dtype')}, noise floor / RMS change "
            "per T: " + ", ".join(sig2(r) for r in floor.get("ratio", [])) + f"; ground truth {d['truth_seconds']:.0f} s.")


def diagnose_table(d: dict[str, Any]) -> str:
    from ifscope.experiments.diagnose import CHECK_MODULES
    rows = ["| assumption | verdict | key figures |", "|---|---|---|"]
    for name, a in d["assumptions"].items():
        figures = CHECK_MODULES[name].key_figures(a).replace("|", "\\|")  # |λmin| inside a Markdown table
        rows.append(f"| {name} | {a['verdict']} | {figures} |")
    return "\n".join(rows) + (f"\n\nrun: {d['config']['method']} rank {d['config'].get('rank')}; "
                              f"{d['_meta']['threads']} thread(s), {d['_meta']['seconds']:.0f} s.")


def correct_table(d: dict[str, Any]) -> str:
    """Per selection: fix rate, the task's held-out figure after (accuracy, squared error, ...), broken, time."""
    name = (d.get("heldout_figure") or {}).get("name", "accuracy")
    key = "heldout_accuracy_after" if name == "accuracy" else "heldout_figure_after"

    def shown(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.2f} %" if name == "accuracy" else f"{v:.4g}"
    rows = [f"| selection | fix rate | held-out {name} after | broken predictions (mean) | s / correction |",
            "|---|---:|---:|---:|---:|"]
    for method, m in d["methods"].items():
        ref = " (reference)" if method in d.get("reference_only", []) else ""
        rows.append(f"| {method}{ref} | {num(d['fix_rate'][method], 2)} | {shown(m.get(key))}"
                    f" | {num(m.get('broken'), 1)} | {num(m.get('seconds'), 3)} |")
    before = (d.get("heldout_figure") or d.get("heldout_accuracy", {})).get("before")
    return "\n".join(rows) + (f"\n\n{d['n_queries']} natural mistakes corrected, {d['n_heldout']} held-out examples"
                              + (f" ({name} before {shown(before)})" if before is not None else "")
                              + f"; {d['_meta']['threads']} thread(s), {d['_meta']['seconds']:.0f} s.")


def _bars(d: dict[str, Any]) -> tuple[float, dict[str, float]]:
    """``(influence's fix rate / random-k's, held-out accuracy drop in points per selection)`` of a correct run."""
    fr, before = d["fix_rate"], d["heldout_accuracy"]["before"]
    drop = {m: 100 * (before - s["heldout_accuracy_after"]) for m, s in d["methods"].items()}
    return (fr["influence"] / fr["random"] if fr.get("random") else float("inf")), drop


def correct_lm_table(d: dict[str, Any]) -> str:
    """A correction run on a language model: fix rates, the held-out NLL per token (and perplexity) after."""
    fig, c = d["heldout_figure"], d["settings"]
    rows = ["| selection | fix rate | held-out NLL/token after (perplexity) | broken completions (mean) | s / correction |",
            "|---|---:|---:|---:|---:|"]
    for name, m in d["methods"].items():
        after = m.get("heldout_figure_after")
        shown = "n/a" if after is None else f"{after:.4f} ({math.exp(after):.2f})"
        ref = " (reference)" if name in d.get("reference_only", []) else ""
        rows.append(f"| {name}{ref} | {num(d['fix_rate'][name], 2)} | {shown} | {num(m.get('broken'), 1)} | "
                    f"{num(m.get('seconds'), 3)} |")
    fr = d["fix_rate"]
    ratio = fr["influence"] / fr["random"] if fr.get("random") else float("inf")
    change = {n: 100 * (math.exp(m["heldout_figure_after"] - fig["before"]) - 1) for n, m in d["methods"].items()
              if m.get("heldout_figure_after") is not None}
    return "\n".join(rows) + (
        f"\n\n{d['n_queries']} completions that are not the greedy continuation, {d['n_heldout']} held-out tweets "
        f"(NLL/token before {fig['before']:.4f}, perplexity {math.exp(fig['before']):.2f}); budget: k {c['k']}, ≤ "
        f"{c['steps']} SGD steps at lr {c['lr']:.3g}" + (", stop when fixed" if c["stop_when_fixed"] else "")
        + f", ranked by {c.get('rank_by', 'checkpoint')} scores. Fix rate {fr['influence']:.2f} against random-k's "
        f"{fr['random']:.2f} ({'no random-k fix' if ratio == float('inf') else f'{ratio:.1f}×'}; bar ≥ 3×) and "
        f"{fr.get('random_same_class', float('nan')):.2f} for the same sentiment; held-out perplexity "
        + ", ".join(f"{v:+.1f} % ({n})" for n, v in change.items())
        + f"; {d['_meta']['threads']} thread(s), {d['_meta']['seconds']:.0f} s.")


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
                              f"{thread_counts(d['_meta']['threads'] for d in results.values())} thread(s).")


# scores that look at the continued training itself, not only at the checkpoint: the claim is about the others
TRAJECTORY_METHODS = ("tracin", "unrolled")


def _range(values: list[float]) -> str:
    lo, hi = min(values), max(values)
    return num(lo) if f"{lo:.3f}" == f"{hi:.3f}" else f"{num(lo)}–{num(hi)}"


def fade_verdict(first: float, last: list[float]) -> str:
    """Issue 13's bar on one run: a Pearson ≥ 0.9 at the smallest T, and whether those scores fade by the largest."""
    if first < 0.9:
        return "no: < 0.9 at the smallest T"
    if max(last) <= first / 2:
        return "yes: all fade to ≤ ½"
    if max(last) < 0.9 * first:
        return "fades, not to ½"
    return "not all fade"


def best_at_first_step(results: list[dict[str, Any]]) -> str:
    """The smallest, over fade runs, of the best checkpoint score's Pearson at each run's smallest T: ``≥ 0.999``."""
    best = [max(m["pearson"][0] for n, m in d["methods"].items()
                if n not in TRAJECTORY_METHODS and m["pearson"][0] is not None) for d in results]
    return f"≥ {num(min(best))}"


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
        rows.append(f"| `{d['_meta']['command']}` | {how} | {num(best)} at T = {steps[0]} ({', '.join(tied)}) | "
                    f"{_range([ours[n][-1] for n in good])} at T = {steps[-1]} ({len(good)} score{'s' if len(good) > 1 else ''}) | "
                    f"{' – '.join((halves[0], halves[-1])) if len(halves) > 1 else halves[0]} | {num(unrolled)} | "
                    f"{fade_verdict(best, [ours[n][-1] for n in good])} |")
    return "\n".join(rows) + ("\n\nPearson of predicted against actual loss change over all (example, query) "
                              f"pairs; checkpoint scores are every method but {' and '.join(TRAJECTORY_METHODS)} "
                              "(which look at the continued training itself); "
                              f"{thread_counts(d['_meta']['threads'] for d in results.values())} thread(s).")


def command_line(d: dict[str, Any]) -> str:
    """The command a stored result came from, as the first line of its table; a result not stored by the runner
    says so, and what ran."""
    meta = d["_meta"]
    hand = f" (recorded by hand, not by `benchmarks/docs_tables.py`: {meta['by_hand']})" if meta.get("by_hand") else ""
    return f"`{meta['command']}`{hand}"


def run_caption(d: dict[str, Any]) -> str:
    return f"{d['_meta']['threads']} thread(s), {d['_meta']['seconds']:.0f} s"


def fit_sample_table(results: dict[str, dict[str, Any]]) -> str:
    """``ifscope fit`` runs side by side: the Hessian sample, its measured drift on a disjoint sample, whether the
    fit warned, and the seconds."""
    rows = ["| command | Hessian sample | drift on a disjoint sample | warned | fit s |", "|---|---:|---:|---|---:|"]
    for d in results.values():
        check = (d["sample_checks"] or [None])[-1]
        drift = f"{check['drift']:.1%}" if check else "– (nothing to check)"
        rows.append(f"| `{d['_meta']['command']}` | {check['hessian_samples'] if check else 'all ' + str(d['n_train'])} "
                    f"| {drift} | "
                    f"{'yes' if d['warnings'] else 'no'} | {d['seconds']:.1f} |")
    return "\n".join(rows) + f"\n\n{thread_counts(d['_meta']['threads'] for d in results.values())} thread(s)."


def self_influence_table(d: dict[str, Any]) -> str:
    """The flip detector's ROC AUC and the top suspects, of ``ifscope self-influence`` on a recipe that flips labels."""
    rows = ["| rank | training example | self-influence | flipped |", "|---:|---:|---:|---|"]
    for i, t in enumerate(d["top"][:10], 1):
        rows.append(f"| {i} | {t['index']} | {sig2(t['score'])} | {'yes' if t.get('flipped') else 'no'} |")
    return "\n".join(rows) + (f"\n\n{d.get('n_flipped')} of {d['n_train']} labels flipped; ROC AUC of self-influence "
                              f"as their detector {num(d['auc'])}; {run_caption(d)}.")


def lds_with_ci(m: dict[str, Any], key: str = "lds") -> str:
    """``0.955 [0.951, 0.959]``: an LDS with its bootstrap interval."""
    ci = m.get("ci" if key == "lds" else "ci_margin")
    return num(m[key]) + ("" if not ci else f" [{num(ci[0])}, {num(ci[1])}]")


def lds_table(d: dict[str, Any]) -> str:
    """One row per method of ``ifscope lds``: the LDS on the loss with its interval, and on the margin."""
    rows = ["| method | LDS (95 % CI) | LDS on the margin (95 % CI) |", "|---|---:|---:|"]
    for name, m in d["methods"].items():
        rows.append(f"| {name} | {lds_with_ci(m)} | {lds_with_ci(m, 'lds_margin')} |")
    retrain = "retrained from scratch" if d["retrain"] == "scratch" else f"continued {d['steps']} steps"
    agree = d.get("seed_agreement")
    return "\n".join(rows) + (f"\n\n{d['subsets']} subsets of {d['fraction']:g} of the training set, {retrain}, "
                              f"{d['seeds']} seed(s) each, {d['n_queries']} queries"
                              + ("" if agree is None else f"; seed agreement {num(agree)}") + f"; {run_caption(d)}.")


UNROLLED_ROWS = ("unrolled", "horizon", "horizon_schedule", "arnoldi_horizon", "graddot")


def unrolled_rows(d: dict[str, Any]) -> str:
    """A fade run seen from ``unrolled``'s side: Pearson and slope per T of the scores that model continued training."""
    head = "| method | " + " | ".join(f"T={t}" for t in d["steps"]) + " |"
    rows = [head, "|---|" + "---:|" * len(d["steps"])]
    for name in UNROLLED_ROWS:
        for key in ("pearson", "slope"):
            if name in d["methods"]:
                rows.append(f"| {name} ({key}) | " + " | ".join(num(v) for v in d["methods"][name][key]) + " |")
    mode = "removal" if d["mode"] == "remove" else f"up-weighting by ε = {d['epsilon']:g}"
    return "\n".join(rows) + (f"\n\n{d['n_ids']} ids × {d['n_queries']} queries, {mode}, {_schedule(d)}, lr "
                              f"{d['lr']:.3g}; {run_caption(d)}.")


def validity_summary(results: dict[str, dict[str, Any]]) -> str:
    """Horizon of validity against ``unrolled`` of every method of several fade runs (their ``validity_horizon``)."""
    rows = ["| run | method | median | min | max | mean Spearman per T |", "|---|---|---:|---:|---:|---|"]
    for name, d in results.items():
        for method, v in (d.get("validity_horizon") or {}).items():
            s = v["summary"]
            rows.append(f"| {name} | {method} | {num(s['median'])} | {num(s['min'])} | {num(s['max'])} | "
                        + " ".join(f"{x:.2f}" for x in s["mean_spearman"]) + " |")
    steps = next(iter(results.values()))["steps"]
    return "\n".join(rows) + (f"\n\nLargest T with per-query Spearman ≥ 0.9 against `unrolled` over every training "
                              f"example (n/a: not even at T = {steps[0]}); T = {', '.join(map(str, steps))}; "
                              f"{thread_counts(d['_meta']['threads'] for d in results.values())} thread(s).")


def _signed(x: float, digits: int = 3) -> str:
    return f"{x:+.{digits}f}".replace("-", "−")


def counterfactual_table(d: dict[str, Any]) -> str:
    """``ifscope counterfactual``: per k, the mean change of a query's loss (± its standard error over queries) after
    removing k random examples, or a method's k top proponents or opponents, and the first-order prediction."""
    head = "| removed | " + " | ".join(f"k = {k}" for k in d["k"]) + " | first-order prediction `Σ score/N` |"
    rows = [head, "|---|" + "---:|" * len(d["k"]) + "---:|"]

    def row(label: str, s: dict[str, Any]) -> str:
        cells = [f"{_signed(m)} ± {se:.3f}" for m, se in zip(s["increase"], s["stderr"])]
        predicted = " / ".join(_signed(v) for v in s["predicted"]) if s.get("predicted") else ""
        return f"| {label} | " + " | ".join(cells) + f" | {predicted} |"
    rows.append(row("random", d["random"]))
    for side in ("proponents", "opponents"):
        rows += [row(f"{name} {side}", m[side]) for name, m in d["methods"].items()]
    how = "retrained from scratch" if d["retrain"] == "scratch" else f"continued {d['steps']} steps"
    return "\n".join(rows) + (f"\n\n{d['n_queries']} queries, {how}, {d['seeds']} seed(s); mean query loss before "
                              f"{num(d['base_loss_mean'])}; {run_caption(d)}.")
