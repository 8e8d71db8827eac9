"""The page's frame: its sections and their titles, style, and the small HTML helpers every section uses."""

from __future__ import annotations

import html
from typing import Any

SECTIONS = {  # id: (title, the command that computes it)
    "fade": ("How far ahead influence predicts", "ifscope fade"),
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


def esc(value: Any) -> str:
    return html.escape(str(value))


def missing(section: str) -> str:
    return f'<p class="missing">not computed — run <code>{esc(SECTIONS[section][1])}</code></p>'


def section(sid: str, body: str) -> str:
    computed = "no" if 'class="missing"' in body else "yes"
    return f'<section id="{sid}" data-computed="{computed}"><h2>{esc(SECTIONS[sid][0])}</h2>\n{body}</section>\n'


def figure(src: str, caption: str) -> str:
    return f'<figure><img src="{esc(src)}" alt="{esc(caption)}"><figcaption>{caption}</figcaption></figure>'




def page(title: str, meta: str, body: dict[str, str]) -> str:
    """The whole page: a header with the run's configuration, then every section of ``SECTIONS`` in order."""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>ifscope report: '
            f"{esc(title)}</title><style>{STYLE}</style><script>{SCRIPT}</script></head>\n"
            f'<body><h1>ifscope report: {esc(title)}</h1><p class="meta">{meta}</p>\n'
            f"<p>Scores follow one convention: score(query, train) = ∇ℓ(query)ᵀ H⁻¹ ∇ℓ(train); positive = proponent.</p>\n"
            + "".join(section(sid, body[sid]) for sid in SECTIONS) + "</body></html>\n")
