"""The figures quoted inside sentences about the stored fades (docs/fade.md, docs/unrolled.md, docs/diagnose.md and
docs/experiments.md): each ``Figure(result, render)`` renders a phrase from one stored result of docs/results/."""

from __future__ import annotations

from typing import Any

from docs_figures import Figure, assumption, at, e, f, span


def _m(d: dict[str, Any], method: str, key: str) -> list[float]:
    """A stored fade's per-T ``key`` (pearson, slope, ...) of ``method``."""
    return d["methods"][method][key]


def _slope_gap(d: dict[str, Any]) -> str:
    """How far ``horizon``'s slope is from ``unrolled``'s over a fade's grid, in percent: ``0.3–0.5 %``."""
    gaps = [abs(h / u - 1) for h, u in zip(_m(d, "horizon", "slope"), _m(d, "unrolled", "slope"))]
    return f"{100 * min(gaps):.1f}–{100 * max(gaps):.1f} %"


def _validity(d: dict[str, Any], method: str) -> str:
    s = d["validity_horizon"][method]["summary"]
    return (f"mean Spearman ≥ {f(min(s['mean_spearman']), 4)}, validity horizon {s['median']} for "
            f"{s['valid_at_every_T']} of the {d['n_queries']} queries")


def _schedule_path(d: dict[str, Any]) -> str:
    """``horizon_schedule``'s Pearson along an SGD fade: its start, how long it stays high, its dip and its end."""
    p, steps = _m(d, "horizon_schedule", "pearson"), d["steps"]
    dip = min(range(len(p)), key=lambda i: p[i])
    high = max(i for i in range(dip) if min(p[: i + 1]) >= 0.95)
    return (f"Pearson {f(p[0])} at T = {steps[0]}, ≥ {f(min(p[: high + 1]))} up to T = {steps[high]}, then a dip to "
            f"{f(p[dip])} at T = {steps[dip]} and a recovery to {f(p[-1])} at T = {steps[-1]}")


def _best_margin(d: dict[str, Any], method: str, others: tuple[str, ...]) -> str:
    """The most any of ``others`` is ahead of ``method`` by per-query Spearman over a fade's grid."""
    rows = [_m(d, o, "spearman_per_query") for o in others]
    return f(max(max(r[i] for r in rows) - v for i, v in enumerate(_m(d, method, "spearman_per_query"))), 3)


def _halves(d: dict[str, Any], methods: tuple[str, ...]) -> str:
    """The fade half-lives of ``methods``, one number when they agree: ``26`` or ``24–27``."""
    halves = sorted(f"{d['methods'][m]['horizon_half']:.0f}" for m in methods)
    return halves[0] if halves[0] == halves[-1] else f"{halves[0]}–{halves[-1]}"


def _checkpoint(d: dict[str, Any]) -> str:
    """The digits MLP's checkpoint as ``ifscope diagnose`` measured it: loss, gradient, the Hessian's spectrum."""
    t, c = assumption(d, "trajectory"), assumption(d, "convexity")
    return (f"final loss {f(t['loss'], 3)}, gradient norm {e(t['gradient_norm'])}; the Hessian's eigenvalues span "
            f"[{e(c['lambda_min'])}, {f(c['lambda_max'])}]")


SGD_FREE = ("horizon", "arnoldi", "arnoldi_horizon", "exact", "graddot", "tracin")  # the batch-order-free scores

FADE: dict[str, Figure] = {
    "mlp-checkpoint": Figure("diagnose-mlp", _checkpoint),
    "mlp-lr": Figure("fade-mlp-remove", lambda d: f(d["lr"], 3)),
    "mlp-upweight-pearson": Figure("fade-mlp-upweight", lambda d: (
        f"Pearson {f(min(_m(d, 'unrolled', 'pearson') + _m(d, 'horizon', 'pearson')), 3)}")),
    "mlp-gap-exponent": Figure("fade-mlp-remove", lambda d: f"T^{d['gap_exponent']:.1f}"),
    "mlp-fixed-half": Figure("fade-mlp-remove", lambda d: _halves(d, ("graddot", "tracin"))),
    "mlp-sgd-first": Figure("fade-mlp-sgd", lambda d: (
        f"pooled {f(_m(d, 'arnoldi', 'pearson')[0])} vs {f(_m(d, 'horizon', 'pearson')[0])}")),
    "mlp-sgd-margin": Figure("fade-mlp-sgd", lambda d: _best_margin(d, "horizon", SGD_FREE[1:])),
    "mlp-sgd-schedule": Figure("fade-mlp-sgd", _schedule_path),
    "mlp-sgd-unrolled": Figure("fade-mlp-sgd", lambda d: (
        f"{f(min(_m(d, 'unrolled', 'pearson')))}–{f(max(_m(d, 'unrolled', 'pearson')))} to T = {d['steps'][-1]} (slope "
        f"{f(_m(d, 'unrolled', 'slope')[0])} → {f(_m(d, 'unrolled', 'slope')[-1])})")),
    "mlp-sgd-schedule-slope": Figure("fade-mlp-sgd", lambda d: (
        f"slope {f(_m(d, 'horizon_schedule', 'slope')[0])} at T = 1, "
        f"{f(at(_m(d, 'horizon_schedule', 'slope'), d['steps'], 10), 1)} at T = 10")),
    "mlp-unrolled-upweight-slope": Figure("fade-mlp-upweight", lambda d: (
        f"slope {f(min(_m(d, 'unrolled', 'slope')), 3)}–{f(max(_m(d, 'unrolled', 'slope')), 3)}")),
    "mlp-horizon-unrolled-slope-gap": Figure("fade-mlp-remove", _slope_gap),
    "mlp-horizon-validity": Figure("fade-mlp-remove", lambda d: _validity(d, "horizon")),
    "mlp-horizon-median": Figure("fade-mlp-remove", lambda d: (
        f"median {d['validity_horizon']['horizon']['summary']['median']}")),
}



def _across(d: dict[str, Any], methods: tuple[str, ...], key: str, t: int, digits: int = 2) -> str:
    """The range of ``key`` over ``methods`` at horizon ``t`` of a stored fade."""
    return span([at(_m(d, m, key), d["steps"], t) for m in methods], digits)


def _floor(d: dict[str, Any], percent: bool = False) -> str:
    """The range of a fade's ground-truth noise floor over T, relative to the changes."""
    r = d["noise_floor"]["ratio"]
    return f"{100 * min(r):.1f}–{100 * max(r):.1f} %" if percent else f"{min(r):.0e}–{max(r):.0e}".replace("e-0", "e−")


QUERY_SIDE = ("horizon", "arnoldi_horizon", "graddot", "horizon_schedule")  # the checkpoint scores of the tweets fade
BATCH_FREE = ("horizon", "arnoldi_horizon", "graddot", "tracin")  # the CNN fade's scores that ignore the batch order


def _cnn_schedule(d: dict[str, Any]) -> str:
    p, steps = _m(d, "horizon_schedule", "pearson"), d["steps"]
    later = ", ".join(f"{f(at(p, steps, t))} (T = {t})" for t in steps[3:])
    return (f"{f(p[0], 3)} at T = {steps[0]}, {f(p[1], 3)} at T = {steps[1]}, then a decay to {later}, half-life "
            f"{d['methods']['horizon_schedule']['horizon_half']:.0f} steps, while the parameter gap grows "
            f"{d['gap'][-1] / d['gap'][0]:.0f}-fold ({e(d['gap'][0])} → {e(d['gap'][-1])})")


def _tweets_fade(d: dict[str, Any]) -> str:
    steps, last = d["steps"], d["steps"][-1]
    halves = [d["methods"][m]["horizon_half"] for m in QUERY_SIDE]
    return (f"reaches Pearson {_across(d, QUERY_SIDE, 'pearson', 1, 3)} at T = 1 (per-query Spearman "
            f"{_across(d, QUERY_SIDE, 'spearman_per_query', 1, 3)}), keeps ≥ "
            f"{f(min(min(_m(d, m, 'pearson')[: steps.index(10) + 1]) for m in QUERY_SIDE))} to T = 10, and fades to "
            f"{_across(d, QUERY_SIDE, 'pearson', 300)} by T = 300 and {_across(d, QUERY_SIDE, 'pearson', last)} by "
            f"T = {last} (per-query Spearman {_across(d, QUERY_SIDE, 'spearman_per_query', last)}), half-lives "
            f"{min(halves):.0f}–{max(halves):.0f} steps")


EXPERIMENTS: dict[str, Figure] = {
    "cnn-lr-ratio": Figure("fade-summary", lambda rs: (  # fade-cnn-fast-linear ran at the old default lr 1/λ_max
        f"about {rs['fade-cnn']['lr'] / rs['fade-cnn-fast-linear']['lr']:.2f}/λ_max")),
    "cnn-schedule": Figure("fade-cnn", _cnn_schedule),
    "cnn-batch-free-first": Figure("fade-cnn", lambda d: _across(d, BATCH_FREE, "pearson", 1)),
    "cnn-batch-free-peak": Figure("fade-cnn", lambda d: (
        f"peak at {_across(d, BATCH_FREE, 'pearson', 30)} around T = 30 before falling to "
        f"{_across(d, BATCH_FREE, 'pearson', 300)} by T = 300")),
    "cnn-unrolled": Figure("fade-cnn", lambda d: f"{f(_m(d, 'unrolled', 'pearson')[0], 3)} → "
                           f"{f(_m(d, 'unrolled', 'pearson')[-1])}"),
    "cnn-floor": Figure("fade-cnn", lambda d: f"{max(d['noise_floor']['ratio']):.0e}".replace("e-", "e−")),
    "cnn-fast-linear": Figure("fade-cnn-fast-linear", lambda d: (
        f"`unrolled` {f(min(_m(d, 'unrolled', 'pearson')), 3)} to T = {d['steps'][-1]}; horizon_schedule's "
        f"{f(_m(d, 'horizon_schedule', 'pearson')[0], 3)} at T = 1 but {f(_m(d, 'horizon_schedule', 'pearson')[1])} at "
        "T = 3")),
    **{f"{n}-fade": Figure(n, _tweets_fade) for n in ("fade-tweets-remove", "fade-tweets-upweight")},
    "tweets-gap": Figure("fade-tweets-remove", lambda d: (
        f"from {e(d['gap'][0])} to {e(d['gap'][-1])} after shrinking to {e(min(d['gap']))} at "
        f"T = {d['steps'][d['gap'].index(min(d['gap']))]}")),
    "tweets-arnoldi": Figure("fade-tweets-remove", lambda d: f(_m(d, "arnoldi", "pearson")[0], 3)),
    "tweets-arnoldi-last": Figure("fade-tweets-remove", lambda d: (
        f"{f(_m(d, 'arnoldi', 'pearson')[-1])} at T = {d['steps'][-1]}")),
    "tweets-slopes": Figure("fade-tweets-remove", lambda d: (
        f"slope {f(_m(d, 'horizon_schedule', 'slope')[0])} at T = 1): the averaged formulas of `horizon` and "
        f"`arnoldi_horizon` do not know that the tweet was in the first batch with weight N/|b| = "
        f"{d['n_train'] / d['train_batch_size']:.1f}, hence their slope {_m(d, 'horizon', 'slope')[0]:.0f} at T = 1")),
    "tweets-remove-floor": Figure("fade-tweets-remove", _floor),
    "tweets-upweight-gap": Figure("fade-tweets-upweight", lambda d: f"gap {e(d['gap'][0])} → {e(d['gap'][-1])}"),
    "tweets-upweight-floor": Figure("fade-tweets-upweight", lambda d: _floor(d, percent=True)),
    "tweets-lrmax": Figure("fade-tweets-lrmax", lambda d: (
        f"reach {_across(d, ('arnoldi', *QUERY_SIDE[1:]), 'pearson', 1)} at T = 1 and fall to about 0 at T = 3 "
        f"({_across(d, ('arnoldi', *QUERY_SIDE[1:]), 'pearson', 3)}; "
        f"{_across(d, ('arnoldi', *QUERY_SIDE[1:]), 'pearson', 10)} at T = 10), while `unrolled` (the exact "
        f"derivative through the same SGD steps) stays at {span(_m(d, 'unrolled', 'pearson'), 3)} at every T")),
}

FIGURES: dict[str, Figure] = {**FADE, **EXPERIMENTS}
