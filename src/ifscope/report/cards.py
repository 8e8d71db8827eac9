"""Example cards (an image or a text with its label, prediction and score) and the sections made of them: the
proponents and opponents of each query, the mislabel suspects, and the corrected mistakes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .html import esc, missing


def corrected_examples(cor: dict, out: Path) -> str:
    """Each shown query (predicted before → after) beside the training examples its correction stepped on."""
    if not cor.get("examples"):
        return ""
    (out / "gallery").mkdir(exist_ok=True)
    parts = ["<p>Corrected queries, with the first training examples each correction stepped on (descent on "
             "proponents, ascent on opponents).</p>"]
    for q in cor["examples"]:
        qi = q["index"]
        after = {**q, "predicted": f"{_value(q['predicted'])} → {_value(q['predicted_after'])}"}
        if cor.get("classes"):
            c = cor["classes"]
            after["predicted"] = f"{c[q['predicted']]} → {c[q['predicted_after']]}"
        rows = [f'<div class="row"><div class="side">query ({"fixed" if q.get("fixed") else "not fixed"})</div>'
                f'{card(after, "test", cor, out, f"c{qi}", "")}</div>']
        for side, css in (("proponents", "pro"), ("opponents", "opp")):
            if q.get(side):
                cards = "".join(card(e, "train", cor, out, f"c{qi}_{side[:3]}{j}", css)
                                for j, e in enumerate(q[side]))
                rows.append(f'<div class="row"><div class="side">{side}</div>{cards}</div>')
        parts.append(f'<div class="query" data-corrected="{qi}">' + "".join(rows) + "</div>")
    return "".join(parts)


def _value(v: Any) -> str:
    """A target or prediction as shown on a card: a real value to four significant digits."""
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def card(e: dict, kind: str, top: dict, out: Path, name: str, css: str) -> str:
    from .figures import draw_image
    classes = top.get("classes")
    label = classes[e["label"]] if classes and isinstance(e.get("label"), int) and e["label"] < len(classes) \
        else e.get("label")
    lines = [f"{kind} #{e['index']}", esc(e["target"]) if "target" in e and label is e.get("label")
             else f"label {esc(_value(label))}"]
    if "predicted" in e:
        p = e["predicted"]
        named = classes and isinstance(p, int) and p < len(classes)
        lines.append(esc(e["prediction"]) if "prediction" in e and not named
                     else f"predicted {esc(classes[p] if named else _value(p))}")
    if "score" in e:
        lines.append(f"score {e['score']:+.3g}")
    if e.get("flipped"):
        lines.append('<span class="flag">flipped label</span>')
    if "pixels" in e and top.get("image_shape"):
        draw_image(e["pixels"], top["image_shape"], out / "gallery" / f"{name}.png")
        return (f'<div class="card {css}"><img src="gallery/{name}.png" alt="{kind} {e["index"]}">'
                + "<br>".join(lines) + "</div>")
    if "text" in e:
        return (f'<div class="card text {css}"><div class="t">{esc(e["text"])}</div>' + "<br>".join(lines)
                + "</div>")
    return f'<div class="card {css}">' + "<br>".join(lines) + "</div>"


def gallery_section(top: dict | None, out: Path) -> str:
    if not top or not top.get("queries"):
        return missing("gallery")
    (out / "gallery").mkdir(exist_ok=True)
    pro = [(q.get("label"), e.get("label")) for q in top["queries"] for e in q.get("proponents", [])]
    same = sum(1 for a, b in pro if a == b) / max(1, len(pro))
    grouped = (f"{same:.0%} of the proponents carry their query's label: "
               + ("the model leans on look-alike examples of the same class. " if same >= 0.5 else
                  "the model leans on examples of other classes, a sign of label noise or shortcut features. ")
               ) if top.get("grouped", True) else ""
    parts = [f"<p>{grouped}Method {esc(top.get('method'))}: the {top.get('k')} training examples whose up-weighting most lowers "
             "(proponents) or raises (opponents) each test example's loss. score/N is the predicted change of the "
             f"query loss when that example is removed (N = {esc(top.get('n_train'))}).</p>"]
    for q in top["queries"]:
        qi = q["index"]
        rows = [f'<div class="row"><div class="side">query</div>{card(q, "test", top, out, f"q{qi}", "")}</div>']
        for side, css in (("proponents", "pro"), ("opponents", "opp")):
            cards = "".join(card(e, "train", top, out, f"q{qi}_{side[:3]}{j}", css)
                            for j, e in enumerate(q.get(side, [])))
            rows.append(f'<div class="row"><div class="side">{side}</div>{cards}</div>')
        parts.append(f'<div class="query" data-query="{qi}">' + "".join(rows) + "</div>")
    return "".join(parts)


def suspects_section(si: dict | None, out: Path) -> str:
    if not si or not si.get("top"):
        return missing("suspects")
    (out / "gallery").mkdir(exist_ok=True)
    cards = "".join(card(e, "train", si, out, f"self{j}", "sus") for j, e in enumerate(si["top"]))
    flagged = [e for e in si["top"] if "flipped" in e]
    meaning = (f"{sum(e['flipped'] for e in flagged)} of these {len(si['top'])} are labels the recipe flipped; as a "
               f"detector of its {si.get('n_flipped')} flipped labels, self-influence has ROC AUC {si['auc']:.3f}."
               if si.get("auc") is not None and flagged else
               "Check their labels first: an example the model can only fit by memorising it has a large "
               "self-influence, and a wrong label is the usual reason.")
    return (f"<p>The {len(si['top'])} training examples (of {esc(si.get('n_train'))}) with the largest self-influence "
            f"score(z, z) = ∇ℓ(z)ᵀ H⁻¹ ∇ℓ(z), method {esc(si.get('method'))}. {esc(meaning)}</p>"
            f'<div class="row">{cards}</div>')
