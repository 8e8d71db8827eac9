"""The report's measured sections: fade and parameter gap, spectrum, assumptions, correction, LDS; each from the
artifact that holds it, or a note naming the command that makes it."""

from __future__ import annotations

from pathlib import Path

from ..run.store import CURVATURE, RunDir
from .cards import corrected_examples
from .html import VERDICT_COLORS, esc, figure, missing
from .tables import (
    assumptions_meaning,
    correction_meaning,
    fade_meaning,
    fade_rows,
    figures_cell,
    gap_meaning,
    per_t_tables,
    rounded,
    t_table,
)


def fade_sections(fade: dict | None, out: Path) -> tuple[str, str]:
    from .figures import fade_figure, gap_figure
    if not fade:
        return missing("fade"), missing("gap")
    steps = fade.get("steps", [])
    fade_figure(steps, fade.get("methods", {}), out / "fade.png")
    cap = (f"Correlation between each method's predicted change of the query loss (from the checkpoint; the "
           f"horizon-aware methods for each T) and the actual change after T steps of continued training with a "
           f"training example {'removed' if fade.get('mode') == 'remove' else 're-weighted'} "
           f"(mode: {esc(fade.get('mode', '?'))}).")
    methods = fade.get("methods", {})
    fade_html = (f"<p>{esc(fade_meaning(steps, methods, fade.get('mode', 'remove')))}</p>" + figure("fade.png", cap)
                 + t_table(steps, fade_rows(methods), "correlation with the actual change"))
    validity = fade.get("validity_horizon") or {}
    if validity:
        medians = ", ".join(f"{esc(n)} {rounded(v['summary']['median'])}" for n, v in validity.items())
        ranked = next(iter(validity.values())).get("n_train")  # older fade.json: the whole training set
        over = ("the whole training set" if ranked is None or ranked == fade.get("n_train") else
                f"a seeded sample of {ranked} of the {fade.get('n_train')} training examples")
        fade_html += ("<p>Horizon of validity: per query, the largest T up to which the method ranks "
                      f"{over} like the exact unrolled derivative (Spearman ≥ 0.9 at every T so far); median "
                      f"over the queries: {medians}.</p>"
                      + t_table(steps, {n: v["summary"]["mean_spearman"] for n, v in validity.items()},
                                "mean Spearman with unrolled"))
    if fade.get("gap") is None:
        return fade_html, missing("gap")
    gap_figure(steps, fade["gap"], out / "gap.png")
    gap_html = figure("gap.png", gap_meaning(fade))
    return fade_html, gap_html


def spectrum_section(run: RunDir, out: Path) -> str:
    from .figures import spectrum_figure
    method = run.config.get("method")
    if not run.has(CURVATURE) and method in (None, "arnoldi"):
        return missing("spectrum")
    state = run.load_tensors(CURVATURE) if run.has(CURVATURE) else {}
    if "eigenvalues" not in state:
        return f"<p>Method {esc(method)} keeps no eigenvalues, so there is no spectrum to draw (use --method arnoldi).</p>"
    kept = state["eigenvalues"].double().numpy()
    ritz = state.get("ritz_values", state["eigenvalues"]).double().numpy()
    spectrum_figure(ritz, kept, out / "spectrum.png")
    neg = int((ritz < 0).sum())
    return figure("spectrum.png", f"{len(ritz)} Ritz values of the Hessian from the Arnoldi iteration; "
                                   f"{len(kept)} kept (from {kept.max():.4g} down to {kept.min():.4g}); "
                                   f"{neg} negative, of magnitude up to {abs(min(ritz.min(), 0)):.4g}.")


def assumptions_section(diag: dict | None) -> str:
    if not diag or not diag.get("assumptions"):
        return missing("assumptions")
    rows = []
    for name, a in diag["assumptions"].items():
        verdict = str(a.get("verdict", "?"))
        color = VERDICT_COLORS.get(verdict, "#57606a")
        figures = figures_cell(name, a)
        rows.append(f'<tr data-assumption="{esc(name)}"><td>{esc(name)}</td><td><span class="verdict" '
                    f'style="background:{color}">{esc(verdict)}</span></td><td>{esc(a.get("advice", ""))}</td>'
                    f"<td>{figures}</td></tr>")
    return (f"<p>{esc(assumptions_meaning(diag['assumptions']))}</p>"
            "<table><tr><th>assumption</th><th>verdict</th><th>advice</th><th>measured (what the verdict is graded on)"
            "</th></tr>" + "".join(rows) + "</table>" + per_t_tables(diag["assumptions"]))


def correction_section(cor: dict | None, out: Path) -> str:
    if not cor:
        return missing("correction")
    fix = cor.get("fix_rate", {})
    rows = "".join(f"<tr><td>{esc(k)}</td><td>{rounded(v)}</td></tr>" for k, v in fix.items())
    figure = cor.get("heldout_figure") or {"name": "accuracy", **cor.get("heldout_accuracy", {})}
    fixed = sum(1 for q in cor.get("queries", []) if q.get("fixed"))
    return (f"<p>{esc(correction_meaning(cor))} {esc(cor.get('n_queries', '?'))} mis-predicted test examples; a few "
            f"steps on the training examples chosen by each rule ({fixed} of the listed queries fixed by influence).</p>"
            f"<table><tr><th>training examples chosen by</th><th>fix rate</th></tr>{rows}</table>"
            f"<table><tr><th>held-out {esc(figure['name'])} before</th><th>after</th><th>broken</th>"
            f"<th>seconds per correction</th></tr><tr><td>{rounded(figure.get('before'), 3)}</td>"
            f"<td>{rounded(figure.get('after'), 3)}</td>"
            f"<td>{rounded(cor.get('broken'))}</td><td>{rounded(cor.get('seconds_per_correction'))}</td></tr></table>"
            + corrected_examples(cor, out))


def lds_section(lds: dict | None) -> str:
    """LDS per method with its bootstrap interval (``lds.json``), and what it measures."""
    if not lds or not lds.get("methods"):
        return missing("lds")
    how = ("models retrained from scratch on each subset" if lds.get("retrain") == "scratch" else
           f"training continued from the checkpoint for {lds.get('steps')} steps on each subset")
    rows = "".join(f"<tr><td>{esc(name)}</td><td>{rounded(m.get('lds'))}</td>"
                   f"<td>[{rounded((m.get('ci') or [None, None])[0])}, {rounded((m.get('ci') or [None, None])[1])}]"
                   f"</td><td>{rounded(m.get('lds_margin'))}</td></tr>" for name, m in lds["methods"].items())
    return (f"<p>Per query, the Spearman correlation over {esc(lds.get('subsets'))} random {rounded(lds.get('fraction'))}"
            f" subsets of the training set between the predicted group effect (the sum of the subset's scores) and "
            f"the query loss of {how}, averaged over {esc(lds.get('n_queries'))} queries: how well the scores predict "
            "retraining on subsets, a different question from the fade curve's (continued training with one example "
            "re-weighted).</p><table><tr><th>method</th><th>LDS (loss)</th><th>95 % interval</th><th>LDS (margin)</th>"
            f"</tr>{rows}</table>")
