"""The HTML report of a run directory: one static page, ``DIR/report/index.html``, with its figures beside it.

Each section is drawn from the artifact that holds it (``fade.json``, ``diagnose.json``, ``correct.json``,
``curvature.safetensors``, ``top.json``) and says which command makes it when that artifact is absent.
No script or style is fetched from the network.
"""

from __future__ import annotations

import html
import shutil
import time
from pathlib import Path
from typing import Any

from ..core.errors import ArtifactError
from ..core.files import atomic_write_bytes
from ..run.store import CURVATURE, MANIFEST, RunDir
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

SECTIONS = {  # id: (title, the command that computes it)
    "fade": ("Influence fades", "ifscope fade"),
    "gap": ("Parameter gap", "ifscope fade"),
    "spectrum": ("Spectrum", "ifscope fit"),
    "assumptions": ("Assumptions", "ifscope diagnose"),
    "correction": ("Correcting mis-predictions", "ifscope correct"),
    "gallery": ("Proponents and opponents", "ifscope top"),
    "suspects": ("Mislabel candidates", "ifscope self-influence"),
    "lds": ("Linear datamodeling score", "ifscope lds"),
}
VERDICT_COLORS = {"holds": "#1a7f37", "questionable": "#b08800", "violated": "#cf222e"}

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;
color:#1f2328;background:#fff;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em} h2{border-bottom:1px solid #d0d7de;padding-bottom:.2em;margin-top:1.6em}
.meta{color:#57606a;font-size:.9em} table{border-collapse:collapse;margin:.6em 0}
td,th{border:1px solid #d0d7de;padding:.3em .6em;text-align:left;vertical-align:top;font-size:.92em}
th{background:#f6f8fa} .missing{background:#fff8c5;border:1px solid #d4a72c;padding:.6em 1em;border-radius:6px}
.verdict{color:#fff;border-radius:10px;padding:.1em .6em;font-weight:600;font-size:.85em}
.query{border:1px solid #d0d7de;border-radius:8px;padding:.6em;margin:.8em 0}
.row{display:flex;flex-wrap:wrap;gap:.5em;align-items:flex-start;margin:.3em 0}
.side{width:6.5em;font-weight:600;padding-top:.5em}
.card{border:1px solid #d0d7de;border-radius:6px;padding:.3em;width:7.5em;font-size:.78em;text-align:center}
.card img{width:64px;height:64px;image-rendering:pixelated;display:block;margin:0 auto .2em auto}
.card.text{width:15em;text-align:left} .card .t{white-space:pre-wrap;max-height:8em;overflow:auto}
.pro{background:#dafbe1} .opp{background:#ffebe9} .sus{background:#fff8c5} .flag{color:#cf222e;font-weight:600}
table.t td{text-align:right;font-variant-numeric:tabular-nums} figure{margin:.5em 0} figure img{max-width:100%} figcaption{color:#57606a;font-size:.9em}
"""

# marks data-images-ok="loaded/total" on <body> once the page has loaded (read by the browser test)
SCRIPT = """window.addEventListener('load',function(){var i=Array.prototype.slice.call(document.images);
document.body.setAttribute('data-images-ok',i.filter(function(x){return x.complete&&x.naturalWidth>0}).length+'/'+i.length);});"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _missing(section: str) -> str:
    return f'<p class="missing">not computed — run <code>{_e(SECTIONS[section][1])}</code></p>'


def _section(sid: str, body: str) -> str:
    computed = "no" if 'class="missing"' in body else "yes"
    return f'<section id="{sid}" data-computed="{computed}"><h2>{_e(SECTIONS[sid][0])}</h2>\n{body}</section>\n'


def _figure(src: str, caption: str) -> str:
    return f'<figure><img src="{_e(src)}" alt="{_e(caption)}"><figcaption>{caption}</figcaption></figure>'


def _load(run: RunDir, name: str) -> Any:
    """An artifact recorded in the manifest (so made under the run's current fit), else None."""
    return run.load_json(name) if run.has(name) else None


def _fade_sections(fade: dict | None, out: Path) -> tuple[str, str]:
    from .figures import fade_figure, gap_figure
    if not fade:
        return _missing("fade"), _missing("gap")
    steps = fade.get("steps", [])
    fade_figure(steps, fade.get("methods", {}), out / "fade.png")
    cap = (f"Correlation between influence predicted at the checkpoint and the actual change of the query loss "
           f"after T steps with a training example {'removed' if fade.get('mode') == 'remove' else 're-weighted'} "
           f"(mode: {_e(fade.get('mode', '?'))}).")
    methods = fade.get("methods", {})
    fade_html = (f"<p>{_e(fade_meaning(steps, methods))}</p>" + _figure("fade.png", cap)
                 + t_table(steps, fade_rows(methods), "correlation with the actual change"))
    validity = fade.get("validity_horizon") or {}
    if validity:
        medians = ", ".join(f"{_e(n)} {rounded(v['summary']['median'])}" for n, v in validity.items())
        fade_html += ("<p>Horizon of validity: per query, the largest T up to which the method ranks the whole "
                      "training set like the exact unrolled derivative (Spearman ≥ 0.9 at every T so far); median "
                      f"over the queries: {medians}.</p>"
                      + t_table(steps, {n: v["summary"]["mean_spearman"] for n, v in validity.items()},
                                "mean Spearman with unrolled"))
    if fade.get("gap") is None:
        return fade_html, _missing("gap")
    gap_figure(steps, fade["gap"], out / "gap.png")
    gap_html = _figure("gap.png", gap_meaning(fade))
    return fade_html, gap_html


def _spectrum_section(run: RunDir, out: Path) -> str:
    from .figures import spectrum_figure
    method = run.config.get("method")
    if not run.has(CURVATURE) and method in (None, "arnoldi"):
        return _missing("spectrum")
    state = run.load_tensors(CURVATURE) if run.has(CURVATURE) else {}
    if "eigenvalues" not in state:
        return f"<p>Method {_e(method)} keeps no eigenvalues, so there is no spectrum to draw (use --method arnoldi).</p>"
    kept = state["eigenvalues"].double().numpy()
    ritz = state.get("ritz_values", state["eigenvalues"]).double().numpy()
    spectrum_figure(ritz, kept, out / "spectrum.png")
    neg = int((ritz < 0).sum())
    return _figure("spectrum.png", f"{len(ritz)} Ritz values of the Hessian from the Arnoldi iteration; "
                                   f"{len(kept)} kept (from {kept.max():.4g} down to {kept.min():.4g}); "
                                   f"{neg} negative, of magnitude up to {abs(min(ritz.min(), 0)):.4g}.")


def _assumptions_section(diag: dict | None) -> str:
    if not diag or not diag.get("assumptions"):
        return _missing("assumptions")
    rows = []
    for name, a in diag["assumptions"].items():
        verdict = str(a.get("verdict", "?"))
        color = VERDICT_COLORS.get(verdict, "#57606a")
        figures = figures_cell(name, a)
        rows.append(f'<tr data-assumption="{_e(name)}"><td>{_e(name)}</td><td><span class="verdict" '
                    f'style="background:{color}">{_e(verdict)}</span></td><td>{_e(a.get("advice", ""))}</td>'
                    f"<td>{figures}</td></tr>")
    return (f"<p>{_e(assumptions_meaning(diag['assumptions']))}</p>"
            "<table><tr><th>assumption</th><th>verdict</th><th>advice</th><th>measured (what the verdict is graded on)"
            "</th></tr>" + "".join(rows) + "</table>" + per_t_tables(diag["assumptions"]))


def _correction_section(cor: dict | None, out: Path) -> str:
    if not cor:
        return _missing("correction")
    fix = cor.get("fix_rate", {})
    rows = "".join(f"<tr><td>{_e(k)}</td><td>{rounded(v)}</td></tr>" for k, v in fix.items())
    acc = cor.get("heldout_accuracy", {})
    fixed = sum(1 for q in cor.get("queries", []) if q.get("fixed"))
    return (f"<p>{_e(correction_meaning(cor))} {_e(cor.get('n_queries', '?'))} misclassified test examples; a few "
            f"steps on the training examples chosen by each rule ({fixed} of the listed queries fixed by influence).</p>"
            f"<table><tr><th>training examples chosen by</th><th>fix rate</th></tr>{rows}</table>"
            f"<table><tr><th>held-out accuracy before</th><th>after</th><th>broken</th><th>seconds per correction</th>"
            f"</tr><tr><td>{rounded(acc.get('before'), 3)}</td><td>{rounded(acc.get('after'), 3)}</td>"
            f"<td>{rounded(cor.get('broken'))}</td><td>{rounded(cor.get('seconds_per_correction'))}</td></tr></table>"
            + _corrected_examples(cor, out))


def _corrected_examples(cor: dict, out: Path) -> str:
    """Each shown query (predicted before → after) beside the training examples its correction stepped on."""
    if not cor.get("examples"):
        return ""
    (out / "gallery").mkdir(exist_ok=True)
    parts = ["<p>Corrected queries, with the first training examples each correction stepped on (descent on "
             "proponents, ascent on opponents).</p>"]
    for q in cor["examples"]:
        qi = q["index"]
        after = {**q, "predicted": f"{q['predicted']} → {q['predicted_after']}"}
        if cor.get("classes"):
            c = cor["classes"]
            after["predicted"] = f"{c[q['predicted']]} → {c[q['predicted_after']]}"
        rows = [f'<div class="row"><div class="side">query ({"fixed" if q.get("fixed") else "not fixed"})</div>'
                f'{_card(after, "test", cor, out, f"c{qi}", "")}</div>']
        for side, css in (("proponents", "pro"), ("opponents", "opp")):
            if q.get(side):
                cards = "".join(_card(e, "train", cor, out, f"c{qi}_{side[:3]}{j}", css)
                                for j, e in enumerate(q[side]))
                rows.append(f'<div class="row"><div class="side">{side}</div>{cards}</div>')
        parts.append(f'<div class="query" data-corrected="{qi}">' + "".join(rows) + "</div>")
    return "".join(parts)


def _card(e: dict, kind: str, top: dict, out: Path, name: str, css: str) -> str:
    from .figures import draw_image
    classes = top.get("classes")
    label = classes[e["label"]] if classes and isinstance(e.get("label"), int) and e["label"] < len(classes) \
        else e.get("label")
    lines = [f"{kind} #{e['index']}", f"label {_e(label)}"]
    if "predicted" in e:
        p = e["predicted"]
        lines.append(f"predicted {_e(classes[p] if classes and isinstance(p, int) and p < len(classes) else p)}")
    if "score" in e:
        lines.append(f"score {e['score']:+.3g}")
    if e.get("flipped"):
        lines.append('<span class="flag">flipped label</span>')
    if "pixels" in e and top.get("image_shape"):
        draw_image(e["pixels"], top["image_shape"], out / "gallery" / f"{name}.png")
        return (f'<div class="card {css}"><img src="gallery/{name}.png" alt="{kind} {e["index"]}">'
                + "<br>".join(lines) + "</div>")
    if "text" in e:
        return (f'<div class="card text {css}"><div class="t">{_e(e["text"])}</div>' + "<br>".join(lines)
                + "</div>")
    return f'<div class="card {css}">' + "<br>".join(lines) + "</div>"


def _gallery_section(top: dict | None, out: Path) -> str:
    if not top or not top.get("queries"):
        return _missing("gallery")
    (out / "gallery").mkdir(exist_ok=True)
    pro = [(q.get("label"), e.get("label")) for q in top["queries"] for e in q.get("proponents", [])]
    same = sum(1 for a, b in pro if a == b) / max(1, len(pro))
    parts = [f"<p>{same:.0%} of the proponents carry their query's label: "
             + ("the model leans on look-alike examples of the same class. " if same >= 0.5 else
                "the model leans on examples of other classes, a sign of label noise or shortcut features. ")
             + f"Method {_e(top.get('method'))}: the {top.get('k')} training examples whose up-weighting most lowers "
             "(proponents) or raises (opponents) each test example's loss. score/N is the predicted change of the "
             f"query loss when that example is removed (N = {_e(top.get('n_train'))}).</p>"]
    for q in top["queries"]:
        qi = q["index"]
        rows = [f'<div class="row"><div class="side">query</div>{_card(q, "test", top, out, f"q{qi}", "")}</div>']
        for side, css in (("proponents", "pro"), ("opponents", "opp")):
            cards = "".join(_card(e, "train", top, out, f"q{qi}_{side[:3]}{j}", css)
                            for j, e in enumerate(q.get(side, [])))
            rows.append(f'<div class="row"><div class="side">{side}</div>{cards}</div>')
        parts.append(f'<div class="query" data-query="{qi}">' + "".join(rows) + "</div>")
    return "".join(parts)


def _suspects_section(si: dict | None, out: Path) -> str:
    if not si or not si.get("top"):
        return _missing("suspects")
    (out / "gallery").mkdir(exist_ok=True)
    cards = "".join(_card(e, "train", si, out, f"self{j}", "sus") for j, e in enumerate(si["top"]))
    flagged = [e for e in si["top"] if "flipped" in e]
    meaning = (f"{sum(e['flipped'] for e in flagged)} of these {len(si['top'])} are labels the recipe flipped; as a "
               f"detector of its {si.get('n_flipped')} flipped labels, self-influence has ROC AUC {si['auc']:.3f}."
               if si.get("auc") is not None and flagged else
               "Check their labels first: an example the model can only fit by memorising it has a large "
               "self-influence, and a wrong label is the usual reason.")
    return (f"<p>The {len(si['top'])} training examples (of {_e(si.get('n_train'))}) with the largest self-influence "
            f"score(z, z) = ∇ℓ(z)ᵀ H⁻¹ ∇ℓ(z), method {_e(si.get('method'))}. {_e(meaning)}</p>"
            f'<div class="row">{cards}</div>')


def _lds_section(lds: dict | None) -> str:
    """LDS per method with its bootstrap interval (``lds.json``), and what it measures."""
    if not lds or not lds.get("methods"):
        return _missing("lds")
    how = ("models retrained from scratch on each subset" if lds.get("retrain") == "scratch" else
           f"training continued from the checkpoint for {lds.get('steps')} steps on each subset")
    rows = "".join(f"<tr><td>{_e(name)}</td><td>{rounded(m.get('lds'))}</td>"
                   f"<td>[{rounded((m.get('ci') or [None, None])[0])}, {rounded((m.get('ci') or [None, None])[1])}]"
                   f"</td><td>{rounded(m.get('lds_margin'))}</td></tr>" for name, m in lds["methods"].items())
    return (f"<p>Per query, the Spearman correlation over {_e(lds.get('subsets'))} random {rounded(lds.get('fraction'))}"
            f" subsets of the training set between the predicted group effect (the sum of the subset's scores) and "
            f"the query loss of {how}, averaged over {_e(lds.get('n_queries'))} queries: how well the scores predict "
            "retraining on subsets, a different question from the fade curve's (continued training with one example "
            "re-weighted).</p><table><tr><th>method</th><th>LDS (loss)</th><th>95 % interval</th><th>LDS (margin)</th>"
            f"</tr>{rows}</table>")


def render_report(workdir: str | Path) -> Path:
    """Write ``workdir/report/index.html`` and its figures from whatever the run directory holds; return its path."""
    run = RunDir(workdir)
    if not run.exists:
        raise ArtifactError(f"{Path(workdir) / MANIFEST} does not exist: {workdir} is not an ifscope run directory; "
                            "run `ifscope fit --workdir DIR` (or `ifscope demo`) first")
    out = run.path / "report"
    for name in [n for n in run.manifest.get("artifacts", {}) if n.startswith("report/")]:
        run.drop(name, save=False)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    fade_html, gap_html = _fade_sections(_load(run, "fade.json"), out)
    body = {
        "fade": fade_html, "gap": gap_html, "spectrum": _spectrum_section(run, out),
        "assumptions": _assumptions_section(_load(run, "diagnose.json")),
        "correction": _correction_section(_load(run, "correct.json"), out),
        "gallery": _gallery_section(_load(run, "top.json"), out),
        "suspects": _suspects_section(_load(run, "self_influence.json"), out),
        "lds": _lds_section(_load(run, "lds.json")),
    }
    cfg = run.config
    m = run.manifest
    meta = (f"method <b>{_e(cfg.get('method', '?'))}</b> · "
            + " · ".join(f"{_e(k)} {_e(v)}" for k, v in cfg.items() if k in ("rank", "iterations", "select",
                                                                             "damping", "weight_decay", "dtype"))
            + f"<br>model {_e(m.get('fingerprints', {}).get('model', '?')[:12])} · training data "
            f"{_e(m.get('fingerprints', {}).get('train', '?')[:12])} · "
            + " · ".join(f"{_e(k)} {_e(v)}" for k, v in m.get("versions", {}).items())
            + f"<br>report written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>ifscope report: '
            f"{_e(run.path.resolve().name)}</title><style>{STYLE}</style><script>{SCRIPT}</script></head>\n"
            f'<body><h1>ifscope report: {_e(run.path.resolve().name)}</h1><p class="meta">{meta}</p>\n'
            f"<p>Scores follow one convention: score(query, train) = ∇ℓ(query)ᵀ H⁻¹ ∇ℓ(train); positive = proponent.</p>\n"
            + "".join(_section(sid, body[sid]) for sid in SECTIONS) + "</body></html>\n")
    atomic_write_bytes(out / "index.html", page.encode())
    diag = _load(run, "diagnose.json")
    if diag and diag.get("assumptions"):
        from .diagnose_figures import diagnose_figures
        diagnose_figures(diag, out)
    for file in sorted(out.rglob("*")):  # every file of the report is recorded, so a refit drops it
        if file.is_file():
            run.record(str(file.relative_to(run.path)))
    return out / "index.html"


__all__ = ["SECTIONS", "render_report"]
