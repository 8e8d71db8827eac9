"""The figures quoted inside sentences of docs/diagnose.md, docs/experiments.md, docs/experiments_correction.md,
docs/fade.md, docs/unrolled.md and docs/models.md: each ``Figure(result, render)`` renders a phrase from one stored
result of docs/results/ (``benchmarks/docs_registry.py`` adds them to its ``FIGURES``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class Figure:
    """One figure quoted inside a sentence: ``render(result)`` of a stored result, without its command."""

    source: str
    render: Callable[[dict[str, Any]], str]


def f(x: float, digits: int = 2) -> str:
    """``x`` to ``digits`` decimals, with a typographic minus."""
    return f"{x:.{digits}f}".replace("-", "−")


def e(x: float) -> str:
    """``x`` in short scientific notation, ``−1.3e-4`` (two significant digits ``0.081`` from 0.01 up)."""
    if abs(x) >= 0.01:
        return f"{x:.2g}".replace("-", "−")
    mantissa, exponent = f"{x:.1e}".split("e")
    return f"{mantissa}e{int(exponent)}".replace("-", "−", 1) if x < 0 else f"{mantissa}e{int(exponent)}"


def pct(x: float, digits: int = 0) -> str:
    """A fraction as a percentage: ``0.0023`` → ``0.23%`` with ``digits=2``."""
    return f"{100 * x:.{digits}f}%"


def at(values: list[float], steps: list[int], t: int) -> float:
    """The value of a per-T list at horizon ``t``."""
    return values[steps.index(t)]


def _a(d: dict[str, Any], name: str) -> dict[str, Any]:
    """One assumption's record of a stored ``ifscope diagnose`` result."""
    return d["assumptions"][name]


def _convexity(d: dict[str, Any]) -> str:
    c = _a(d, "convexity")
    return f"λ_max {f(c['lambda_max'])}, λ_min {e(c['lambda_min'])} (ratio {e(c['negative_ratio'])})"


def _trajectory(d: dict[str, Any]) -> str:
    t = _a(d, "trajectory")
    return (f"{pct(t['gradient_ratio'], 2 if t['gradient_ratio'] < 0.01 else 0)} of its value at the start of training "
            f"(loss {f(t['initial_loss'])} → {f(t['loss'], 3)})")


def _gap(d: dict[str, Any]) -> str:
    v = _a(d, "divergence")
    return (f"from {e(v['gap'][0])} (T = {v['steps'][0]}) to {e(v['gap'][-1])} (T = {v['steps'][-1]}), fitted rate "
            f"{f(v['rate'], 3)}/step")


def _spearman_by_t(d: dict[str, Any]) -> str:
    v = _a(d, "divergence")
    pairs = [f"{f(s)} at T = {t}" for s, t in zip(v["frozen"]["summary"]["mean_spearman"], v["steps"])]
    return ", ".join(pairs[:-1]) + f" and {pairs[-1]} (valid up to T = {v['frozen']['summary']['median']} for the " \
        "median query)"


def _first_order(d: dict[str, Any]) -> str:
    o, steps = _a(d, "first_order"), _a(d, "first_order")["steps"]
    slopes = ", ".join(f"{f(at(o['slope'], steps, t))} at T = {t}" for t in (steps[0], steps[-2], steps[-1]))
    return (f"slope of actual on `unrolled` {slopes}; remainder {f(o['remainder_vs_exact'][0], 3)} → "
            f"{f(o['max_remainder'], 3)} (`linear_up_to` {o['linear_up_to']}) — while the Pearson stays ≥ "
            f"{f(min(o['pearson_with_exact']), 3)}: removal magnitudes are off by about "
            f"{pct(o['slope'][-1] - 1)} at T = {steps[-1]}")


def _epsilon_sweep(d: dict[str, Any]) -> str:
    o = _a(d, "first_order")
    return (f"only {f(o['remainder']['-1'][-1], 3)} off 100× the ε = 0.01 response at T = {o['steps'][-1]} (ε = 0.1: "
            f"{f(o['remainder']['0.1'][-1], 3)}")


def _cnn_divergence(d: dict[str, Any]) -> str:
    s = _a(d, "divergence")["frozen"]["summary"]
    m, fr, steps = s["mean_spearman"], s["fraction_valid"], _a(d, "divergence")["steps"]
    later = "none later" if not any(fr[2:]) else f"{pct(max(fr[2:]))} at most later"
    return (f"{f(m[0])} at T = {steps[0]} and {f(min(m[1:]))}–{f(max(m[1:]))} from T = {steps[1]} on "
            f"({pct(fr[0])} of the queries at ≥ 0.9 at T = {steps[0]}, {pct(fr[1])} at T = {steps[1]}, {later})")


def _cnn_first_order(d: dict[str, Any]) -> str:
    o = _a(d, "first_order")
    r, steps = o["remainder_vs_exact"], o["steps"]
    worst = max(range(len(r)), key=lambda i: r[i])
    return (f"off by {pct(r[0], 1)} at T = {steps[0]}, {pct(r[1])} at T = {steps[1]} and {pct(r[worst])} at "
            f"T = {steps[worst]} (slope {f(o['slope'][worst])}), {pct(r[-1])} at T = {steps[-1]}, with Pearson ≥ "
            f"{f(min(o['pearson_with_exact']), 3)} throughout")


def _cnn_epsilon(d: dict[str, Any]) -> str:
    o = _a(d, "first_order")
    return f"by {f(at(o['remainder']['0.1'], o['steps'], 10))} at T = 10"


def _bad_first_order(d: dict[str, Any]) -> str:
    o = _a(d, "first_order")
    return (f"removal {f(o['slope'][-1])}× its exact first-order value at T = {o['steps'][-1]} (remainder "
            f"{f(o['max_remainder'], 3)}; ≤ 0.1 up to T = {o['linear_up_to']}), Pearson ≥ "
            f"{f(min(o['pearson_with_exact']), 3)}")


DIAGNOSE: dict[str, Figure] = {
    **{f"{n}-convexity": Figure(n, _convexity) for n in ("diagnose-mlp", "diagnose-mlp-bad")},
    **{f"{n}-trajectory": Figure(n, _trajectory) for n in ("diagnose-mlp", "diagnose-mlp-bad")},
    **{f"{n}-gap": Figure(n, _gap) for n in ("diagnose-mlp", "diagnose-mlp-bad")},
    **{f"{n}-truncation": Figure(n, lambda d: f(_a(d, "stability")["agreement"]["rank_k_vs_half"]))
       for n in ("diagnose-mlp", "diagnose-mlp-bad")},
    "diagnose-mlp-condition": Figure("diagnose-mlp", lambda d: (
        f"`κ` of the {_a(d, 'convexity')['kept']} kept eigenvalues is {_a(d, 'stability')['condition']:.0f}, relative "
        f"residuals ≤ {e(_a(d, 'stability')['max_relative_residual'])}")),
    "diagnose-mlp-lr": Figure("diagnose-mlp", lambda d: f(_a(d, "divergence")["schedule"]["lr"])),
    "diagnose-mlp-frozen": Figure("diagnose-mlp", lambda d: (
        f"every T ≤ {_a(d, 'divergence')['frozen_valid_up_to']} (mean per-query Spearman ≥ "
        f"{f(min(_a(d, 'divergence')['frozen']['summary']['mean_spearman']), 5)})")),
    "diagnose-mlp-first-order": Figure("diagnose-mlp", _first_order),
    "diagnose-mlp-epsilon": Figure("diagnose-mlp", _epsilon_sweep),
    "diagnose-mlp-epsilon-max": Figure("diagnose-mlp", lambda d: f(_a(d, "first_order")["epsilon_max_remainder"], 3)),
    "diagnose-mlp-eight-vs-all": Figure("diagnose-mlp", lambda d: (
        f"{f(_a(d, 'first_order')['remainder']['-1'][-1], 3)} off its linear value at T = {_a(d, 'first_order')['steps'][-1]}"
        f", that of all {d['settings']['n_ids']} is {f(_a(d, 'first_order')['max_remainder'], 3)} off `unrolled`")),
    "diagnose-mlp-bad-spearman": Figure("diagnose-mlp-bad", _spearman_by_t),
    "diagnose-mlp-bad-first-order": Figure("diagnose-mlp-bad", _bad_first_order),
    "diagnose-cnn-divergence": Figure("diagnose-cnn", _cnn_divergence),
    "diagnose-cnn-gradient": Figure("diagnose-cnn", lambda d: pct(_a(d, "trajectory")["gradient_ratio"])),
    "diagnose-cnn-first-order": Figure("diagnose-cnn", _cnn_first_order),
    "diagnose-cnn-epsilon": Figure("diagnose-cnn", _cnn_epsilon),
}

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
    t, c = _a(d, "trajectory"), _a(d, "convexity")
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
}

FIGURES: dict[str, Figure] = {**DIAGNOSE, **FADE}


def span(values: list[float], digits: int = 2) -> str:
    """The range of ``values``: ``0.60–0.72``, or one number when they agree to ``digits``."""
    lo, hi = f(min(values), digits), f(max(values), digits)
    return lo if lo == hi else f"{lo}–{hi}" if min(values) >= 0 else f"{lo} to {hi}"


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
FIGURES.update(EXPERIMENTS)


def _drop(d: dict[str, Any], method: str = "influence") -> float:
    """A correction run's held-out accuracy drop in points for one selection."""
    return 100 * (d["heldout_accuracy"]["before"] - d["methods"][method]["heldout_accuracy_after"])


def correct_spans(results: dict[str, dict[str, Any]], recipe: str) -> str:
    """Issue 13's figures over the stored seeds of one recipe: ``0.76–0.79 against 0.07–0.21 for random-k ...``."""
    runs = [d for name, d in results.items() if name.startswith(f"correct-{recipe}-")]
    rates = {m: span([d["fix_rate"][m] for d in runs]) for m in ("influence", "random", "random_same_class")}
    return (f"{rates['influence']} fixed against {rates['random']} for random-k and {rates['random_same_class']} for "
            f"the gold class, drop {span([_drop(d) for d in runs])} points")


def correct_bars(d: dict[str, Any]) -> str:
    """One correction run against issue 13's bars: ``0.50 (10/20) against 0.15 for random-k (3.3×) and 0.40 ...``."""
    fr, n = d["fix_rate"], d["n_queries"]
    ratio = f" ({fr['influence'] / fr['random']:.1f}×)" if fr["random"] else ""
    return (f"{f(fr['influence'])} ({round(fr['influence'] * n)}/{n}) against {f(fr['random'])} for random-k{ratio} "
            f"and {f(fr['random_same_class'])} for random-k of the gold class, held-out drop {f(_drop(d))} points")


CORRECTION: dict[str, Figure] = {
    **{f"{n}-bars": Figure(n, correct_bars) for n in ("correct-mlp-0", "correct-mlp-1", "correct-tweets-0",
                                                       "correct-tweets-1", "correct-tweets-2")},
    **{f"correct-{r}-spans": Figure("correct-summary", lambda rs, r=r: correct_spans(rs, r)) for r in ("digits", "tweets")},
}
FIGURES.update(CORRECTION)
