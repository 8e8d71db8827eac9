"""What a person reads in the report: tables with the horizon T as columns and rounded numbers, the figures that
decide each verdict, and one sentence per section on what the numbers mean for this model."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

TRACKS = 0.5  # a Spearman correlation at or above this: the ranking follows the actual effect
HORIZON_AWARE = ("horizon", "horizon_schedule", "arnoldi_horizon", "ekfac_horizon", "unrolled")  # scored per T


def rounded(x: Any, digits: int = 2) -> str:
    """A number as a person reads it: ``0.9312 → "0.93"``, ``42.0 → "42"``, ``1.14 → "1.14"``, ``1.0 → "1.00"`` (a
    correlation or a rate beside others of two decimals), ``0.0004 → "4.0e-04"``, ``None → "–"``; non-numbers escaped
    as they are."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return html.escape(str(x))
    if isinstance(x, int) or x == 0 or math.isinf(x):
        return str(x)
    size = abs(x)
    if size < 10 ** -digits or size >= 1e5:
        return f"{x:.1e}"
    if size < 10:
        return f"{x:.{digits}f}"
    return f"{x:.0f}" if size >= 1000 else f"{x:.3g}"


def t_table(steps: Sequence[Any], rows: Mapping[str, Sequence[Any]], corner: str = "") -> str:
    """An HTML table with one column per horizon T and one row per named series (values rounded)."""
    head = "".join(f"<th>T = {html.escape(str(t))}</th>" for t in steps)
    body = "".join(f"<tr><th>{html.escape(name)}</th>" + "".join(f"<td>{rounded(v)}</td>" for v in values) + "</tr>"
                   for name, values in rows.items())
    return f'<table class="t"><tr><th>{html.escape(corner)}</th>{head}</tr>{body}</table>'


def fade_rows(methods: Mapping[str, Mapping[str, Sequence[float]]]) -> dict[str, Sequence[float]]:
    """``{"arnoldi Spearman": [...], "arnoldi Pearson": [...], ...}``, Spearman first (the ranking is what is used)."""
    return {f"{name} {kind.capitalize()}": m[kind] for name, m in sorted(methods.items())
            for kind in ("spearman", "pearson") if kind in m}


def tracks_up_to(steps: Sequence[int], values: Sequence[float], level: float = TRACKS) -> int | None:
    """The largest T up to which ``values`` stay at or above ``level`` (``None`` if below at the first T)."""
    last = None
    for t, v in zip(steps, values):
        if v is None or not v >= level:
            break
        last = t
    return last


def fade_meaning(steps: Sequence[int], methods: Mapping[str, Mapping[str, Sequence[float]]],
                 mode: str = "remove") -> str:
    """Which method's ranking follows the actual effect of removal (or up-weighting) the longest on this model, then
    :func:`fade_shape`: which rankings fade over the grid and which do not."""
    reach = {name: tracks_up_to(steps, m.get("spearman", [])) for name, m in methods.items()}
    if not reach:
        return ""
    best = max(reach, key=lambda n: (reach[n] is not None, reach[n] or 0))
    if reach[best] is None:
        return (f"On this model no method's ranking follows the actual effect (Spearman < {TRACKS}) even at "
                f"T = {steps[0]}: read the scores as hints, not predictions.")
    what = "removing" if mode == "remove" else "up-weighting"
    head = f"On this model the {best} ranking follows what {what} an example actually does (Spearman ≥ {TRACKS})"
    if reach[best] == steps[-1]:
        head += f" at every horizon measured, up to T = {steps[-1]} steps of continued training."
    else:
        head += f" up to T = {reach[best]} steps of continued training; trust its rankings no further."
    return f"{head} {fade_shape(steps, methods)}".strip()


def fade_shape(steps: Sequence[int], methods: Mapping[str, Mapping[str, Sequence[float]]]) -> str:
    """What the curves show between the first and the last horizon: the rankings that fade (Spearman below
    ``TRACKS``, or below half its first value), those that do not, and that the horizon-aware methods, recomputed
    for each T, are built not to fade as a score fixed at the checkpoint does
    (docs/science.md, 'The horizon response')."""
    ends = {n: (v[0], v[-1]) for n, m in methods.items() if (v := list(m.get("spearman") or [])) and
            v[0] is not None and v[-1] is not None}
    if len(steps) < 2 or not ends:
        return ""
    fade = [n for n, (a, b) in sorted(ends.items()) if b < a and (b < TRACKS or b <= a / 2)]
    keep = [n for n, (a, b) in sorted(ends.items()) if n not in fade and b >= TRACKS]
    low = [n for n in sorted(ends) if n not in fade and n not in keep]

    def listed(names: list[str]) -> str:
        return ", ".join(f"{n} ({rounded(ends[n][0])} → {rounded(ends[n][1])})" for n in names)
    span = f"from T = {steps[0]} to T = {steps[-1]}"
    below = f"; below {TRACKS} without fading for {listed(low)}" if low else ""
    if not fade:
        return (f"No ranking fades {span} ({listed(keep)}{below}): the grid ends before the runs with and without "
                "an example part.")
    text = f"Spearman {span}: fading for {listed(fade)}" + (f"; holding for {listed(keep)}" if keep else "") + below
    aware = [n for n in keep if n in HORIZON_AWARE]
    if aware:
        text += (f". {', '.join(aware)} {'is' if len(aware) == 1 else 'are'} recomputed for each T (the response to T "
                 "steps of training), so built not to fade the way a score fixed at the checkpoint does")
    return text + "."


def gap_meaning(fade: Mapping[str, Any]) -> str:
    """What the parameter-gap curve shows: how it grows with T (the exponent a of gap ∝ T^a, 1 = linear), and what
    the fitted ``c·(e^{rT} − 1)/r`` says of it (r > 0 divergence, r < 0 a gap levelling off towards c/|r|)."""
    steps, gap = list(fade.get("steps") or []), [g for g in fade.get("gap") or [] if g is not None]
    if len(gap) < 2 or len(gap) != len(steps):
        return "Distance between the parameters trained with and without the example."
    a, r, c = fade.get("gap_exponent"), fade.get("gap_rate"), fade.get("gap_scale")
    grows = gap[-1] > gap[0]
    text = (f"Distance between the parameters trained with and without the example: it {'grows' if grows else 'shrinks'}"
            f" from {rounded(gap[0])} at T = {steps[0]} to {rounded(gap[-1])} at T = {steps[-1]}")
    last = (math.log(gap[-1] / gap[-2]) / math.log(steps[-1] / steps[-2])
            if gap[-1] > 0 and gap[-2] > 0 and steps[-1] > steps[-2] else float("nan"))
    if isinstance(a, (int, float)) and math.isfinite(a) and grows:
        shape = ("faster than linearly: the runs diverge" if a > 1.1 else "about linearly" if a >= 0.9 else
                 "more slowly than linearly" + (": it is levelling off" if last < 0.9 else ""))
        text += f", as T^{a:.2f} ({shape})"
        if last > 1.1 and a <= 1.1:
            text += f"; between the last two horizons as T^{last:.2f}"
    if isinstance(r, (int, float)) and math.isfinite(r) and grows:
        if r > 0:
            text += f"; fitted exponential rate {rounded(r)} per step (×e every {rounded(1 / r)} steps)"
        elif r < 0 and isinstance(c, (int, float)) and math.isfinite(c) and c / -r >= gap[-1]:
            text += f"; the fit c·(e^(rT) − 1)/r levels off at {rounded(c / -r)} (r = {rounded(r)} per step)"
    half = fade.get("horizon_half")
    return text + (f". The correlation has not halved by T = {steps[-1]}." if half is None else
                   f". Horizon at which the correlation halves: {rounded(half)} steps.")


def _first(a: Mapping[str, Any], *keys: str) -> list[tuple[str, Any]]:
    return [(k, a[k]) for k in keys if a.get(k) is not None]


def deciding_figures(name: str, a: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The figures a verdict is graded on (diagnose's thresholds apply to these), as ``(label, value)`` pairs."""
    if name == "convexity":
        return _first(a, "negative_ratio", "kept_negative", "negative_mass")
    if name == "stability":
        agree = {k: v for k, v in (a.get("agreement") or {}).items() if v is not None}
        figs = _first(a, "condition_times_epsilon", "max_relative_residual")
        if agree:
            low = min(agree, key=agree.__getitem__)
            figs.append((f"lowest agreement ({low})", agree[low]))
        return figs
    if name == "trajectory":
        figs = _first(a, "gradient_ratio")
        if a.get("checkpoint_agreement"):
            figs.append(("checkpoint agreement", a["checkpoint_agreement"][-1]))
        return figs
    if name == "divergence":
        figs = []
        if a.get("agreement_with_unrolled"):
            figs.append(("lowest Spearman horizon vs unrolled", min(a["agreement_with_unrolled"])))
            figs.append(("frozen checkpoint valid up to T", a.get("frozen_valid_up_to") or "–"))
        return [*figs, ("horizon (steps)", a.get("horizon", "unbounded") if a.get("horizon") is not None
                        else "unbounded"), *_first(a, "rate")]
    if name == "first_order":
        figs = _first(a, "max_remainder", "linear_up_to")
        if isinstance(a.get("slope"), list) and a["slope"]:  # per T (older diagnose.json files: absent)
            figs.append(("slope actual / unrolled at the longest T", a["slope"][-1]))
        if a.get("r2"):
            figs.append(("min R²", min(a["r2"])))
        return figs
    return [(k, v) for k, v in a.items() if isinstance(v, (int, float)) and not isinstance(v, bool)][:3]


def figures_cell(name: str, a: Mapping[str, Any]) -> str:
    """The "measured" cell: the deciding figures, one per line, rounded."""
    return "<br>".join(f"{html.escape(k.replace('_', ' '))}: {rounded(v)}" for k, v in deciding_figures(name, a))


def per_t_tables(assumptions: Mapping[str, Mapping[str, Any]]) -> str:
    """The assumptions measured along T (parameter gap, first-order remainder per ε) as tables with T columns."""
    parts = []
    div = assumptions.get("divergence", {})
    if div.get("steps") and div.get("gap"):
        parts.append("<p>Distance between the parameters trained with and without the removed examples:</p>"
                     + t_table(div["steps"], {"mean ‖θ₋(T) − θ(T)‖": div["gap"]}))
    if div.get("steps") and div.get("agreement_with_unrolled"):
        parts.append("<p>Mean per-query Spearman between the response frozen at the checkpoint (horizon) and the "
                     "exact one (unrolled):</p>" + t_table(div["steps"], {"Spearman": div["agreement_with_unrolled"]}))
    fo = assumptions.get("first_order", {})
    if fo.get("steps") and fo.get("remainder_vs_exact"):
        parts.append("<p>Removal against the exact first-order prediction (unrolled):</p>"
                     + t_table(fo["steps"], {"‖actual − unrolled‖ / ‖actual‖": fo["remainder_vs_exact"],
                                             "slope": fo["slope"]}))
    if fo.get("steps") and fo.get("remainder"):
        rows = {f"ε = {e}" if e != "-1" else "removal": v for e, v in fo["remainder"].items()}
        parts.append("<p>First-order remainder ‖actual − linear‖ / ‖linear‖ per perturbation size:</p>"
                     + t_table(fo["steps"], rows))
    return "".join(parts)


def assumptions_meaning(assumptions: Mapping[str, Mapping[str, Any]]) -> str:
    """One sentence: how many assumptions hold, and what the worst one means for reading this model's scores."""
    order = {"violated": 0, "questionable": 1, "holds": 2}
    worst = min(assumptions, key=lambda n: order.get(str(assumptions[n].get("verdict")), 3))
    held = sum(1 for a in assumptions.values() if a.get("verdict") == "holds")
    if assumptions[worst].get("verdict") == "holds":
        return f"All {len(assumptions)} assumptions hold for this model: scores can be read as predictions."
    return (f"{held} of {len(assumptions)} assumptions hold for this model; the weakest is {worst} "
            f"({assumptions[worst].get('verdict')}): {assumptions[worst].get('advice', '')}.")


def correction_meaning(cor: Mapping[str, Any]) -> str:
    """One sentence: does influence pick better training examples to fix a mistake than chance does."""
    fix = cor.get("fix_rate", {})
    if "influence" not in fix:
        return ""
    others = {k: v for k, v in fix.items() if k not in ("influence", "query_itself") and v is not None}
    if not others:
        return f"Steps on influential examples fixed {fix['influence']:.0%} of the mistakes."
    best = max(others, key=others.__getitem__)
    verdict = "better than" if fix["influence"] > others[best] else "no better than"
    return (f"On this model, steps on the most influential examples fix {fix['influence']:.0%} of the mistakes, "
            f"{verdict} the best baseline ({best.replace('_', ' ')}, {others[best]:.0%}).")
