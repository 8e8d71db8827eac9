"""The figures quoted inside sentences of docs/diagnose.md and docs/experiments_correction.md (the fades' are in
``docs_figures_fade.py``), and the number formats they share: each ``Figure(result, render)`` renders a phrase from one
stored result of docs/results/ (``benchmarks/docs_registry.py`` adds them to its ``FIGURES``)."""

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


def span(values: list[float], digits: int = 2) -> str:
    """The range of ``values``: ``0.60–0.72``, or one number when they agree to ``digits``."""
    lo, hi = f(min(values), digits), f(max(values), digits)
    return lo if lo == hi else f"{lo}–{hi}" if min(values) >= 0 else f"{lo} to {hi}"




def assumption(d: dict[str, Any], name: str) -> dict[str, Any]:
    """One assumption's record of a stored ``ifscope diagnose`` result."""
    return d["assumptions"][name]


def _convexity(d: dict[str, Any]) -> str:
    c = assumption(d, "convexity")
    return f"λ_max {f(c['lambda_max'])}, λ_min {e(c['lambda_min'])} (ratio {e(c['negative_ratio'])})"


def _trajectory(d: dict[str, Any]) -> str:
    t = assumption(d, "trajectory")
    return (f"{pct(t['gradient_ratio'], 2 if t['gradient_ratio'] < 0.01 else 0)} of its value at the start of training "
            f"(loss {f(t['initial_loss'])} → {f(t['loss'], 3)})")


def _gap(d: dict[str, Any]) -> str:
    v = assumption(d, "divergence")
    return (f"from {e(v['gap'][0])} (T = {v['steps'][0]}) to {e(v['gap'][-1])} (T = {v['steps'][-1]}), fitted rate "
            f"{f(v['rate'], 3)}/step")


def _spearman_by_t(d: dict[str, Any]) -> str:
    v = assumption(d, "divergence")
    pairs = [f"{f(s)} at T = {t}" for s, t in zip(v["frozen"]["summary"]["mean_spearman"], v["steps"])]
    return ", ".join(pairs[:-1]) + f" and {pairs[-1]} (valid up to T = {v['frozen']['summary']['median']} for the " \
        "median query)"


def _first_order(d: dict[str, Any]) -> str:
    o, steps = assumption(d, "first_order"), assumption(d, "first_order")["steps"]
    slopes = ", ".join(f"{f(at(o['slope'], steps, t))} at T = {t}" for t in (steps[0], steps[-2], steps[-1]))
    return (f"slope of actual on `unrolled` {slopes}; remainder {f(o['remainder_vs_exact'][0], 3)} → "
            f"{f(o['max_remainder'], 3)} (`linear_up_to` {o['linear_up_to']}) — while the Pearson stays ≥ "
            f"{f(min(o['pearson_with_exact']), 3)}: removal magnitudes are off by about "
            f"{pct(o['slope'][-1] - 1)} at T = {steps[-1]}")


def _epsilon_sweep(d: dict[str, Any]) -> str:
    o = assumption(d, "first_order")
    return (f"only {f(o['remainder']['-1'][-1], 3)} off 100× the ε = 0.01 response at T = {o['steps'][-1]} (ε = 0.1: "
            f"{f(o['remainder']['0.1'][-1], 3)}")


def _cnn_divergence(d: dict[str, Any]) -> str:
    s = assumption(d, "divergence")["frozen"]["summary"]
    m, fr, steps = s["mean_spearman"], s["fraction_valid"], assumption(d, "divergence")["steps"]
    later = "none later" if not any(fr[2:]) else f"{pct(max(fr[2:]))} at most later"
    return (f"{f(m[0])} at T = {steps[0]} and {f(min(m[1:]))}–{f(max(m[1:]))} from T = {steps[1]} on "
            f"({pct(fr[0])} of the queries at ≥ 0.9 at T = {steps[0]}, {pct(fr[1])} at T = {steps[1]}, {later})")


def _cnn_first_order(d: dict[str, Any]) -> str:
    o = assumption(d, "first_order")
    r, steps = o["remainder_vs_exact"], o["steps"]
    worst = max(range(len(r)), key=lambda i: r[i])
    return (f"off by {pct(r[0], 1)} at T = {steps[0]}, {pct(r[1])} at T = {steps[1]} and {pct(r[worst])} at "
            f"T = {steps[worst]} (slope {f(o['slope'][worst])}), {pct(r[-1])} at T = {steps[-1]}, with Pearson ≥ "
            f"{f(min(o['pearson_with_exact']), 3)} throughout")


def _cnn_epsilon(d: dict[str, Any]) -> str:
    o = assumption(d, "first_order")
    return f"by {f(at(o['remainder']['0.1'], o['steps'], 10))} at T = 10"


def _bad_first_order(d: dict[str, Any]) -> str:
    o = assumption(d, "first_order")
    return (f"removal {f(o['slope'][-1])}× its exact first-order value at T = {o['steps'][-1]} (remainder "
            f"{f(o['max_remainder'], 3)}; ≤ 0.1 up to T = {o['linear_up_to']}), Pearson ≥ "
            f"{f(min(o['pearson_with_exact']), 3)}")


DIAGNOSE: dict[str, Figure] = {
    **{f"{n}-convexity": Figure(n, _convexity) for n in ("diagnose-mlp", "diagnose-mlp-bad")},
    **{f"{n}-trajectory": Figure(n, _trajectory) for n in ("diagnose-mlp", "diagnose-mlp-bad")},
    **{f"{n}-gap": Figure(n, _gap) for n in ("diagnose-mlp", "diagnose-mlp-bad")},
    **{f"{n}-truncation": Figure(n, lambda d: f(assumption(d, "stability")["agreement"]["rank_k_vs_half"]))
       for n in ("diagnose-mlp", "diagnose-mlp-bad")},
    "diagnose-mlp-condition": Figure("diagnose-mlp", lambda d: (
        f"`κ` of the {assumption(d, 'convexity')['kept']} kept eigenvalues is {assumption(d, 'stability')['condition']:.0f}, relative "
        f"residuals ≤ {e(assumption(d, 'stability')['max_relative_residual'])}")),
    "diagnose-mlp-lr": Figure("diagnose-mlp", lambda d: f(assumption(d, "divergence")["schedule"]["lr"])),
    "diagnose-mlp-frozen": Figure("diagnose-mlp", lambda d: (
        f"every T ≤ {assumption(d, 'divergence')['frozen_valid_up_to']} (mean per-query Spearman ≥ "
        f"{f(min(assumption(d, 'divergence')['frozen']['summary']['mean_spearman']), 5)})")),
    "diagnose-mlp-first-order": Figure("diagnose-mlp", _first_order),
    "diagnose-mlp-epsilon": Figure("diagnose-mlp", _epsilon_sweep),
    "diagnose-mlp-epsilon-max": Figure("diagnose-mlp", lambda d: f(assumption(d, "first_order")["epsilon_max_remainder"], 3)),
    "diagnose-mlp-eight-vs-all": Figure("diagnose-mlp", lambda d: (
        f"{f(assumption(d, 'first_order')['remainder']['-1'][-1], 3)} off its linear value at T = {assumption(d, 'first_order')['steps'][-1]}"
        f", that of all {d['settings']['n_ids']} is {f(assumption(d, 'first_order')['max_remainder'], 3)} off `unrolled`")),
    "diagnose-mlp-bad-spearman": Figure("diagnose-mlp-bad", _spearman_by_t),
    "diagnose-mlp-bad-first-order": Figure("diagnose-mlp-bad", _bad_first_order),
    "diagnose-cnn-divergence": Figure("diagnose-cnn", _cnn_divergence),
    "diagnose-cnn-gradient": Figure("diagnose-cnn", lambda d: pct(assumption(d, "trajectory")["gradient_ratio"])),
    "diagnose-cnn-first-order": Figure("diagnose-cnn", _cnn_first_order),
    "diagnose-cnn-epsilon": Figure("diagnose-cnn", _cnn_epsilon),
}


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
    "correct-mlp-0-mistakes": Figure("correct-mlp-0", lambda d: (
        f"{d['n_queries']} of them ({100 * d['n_queries'] / d['n_test']:.1f} %)")),
    "correct-mlp-1-rates": Figure("correct-mlp-1", lambda d: (
        " / ".join(f(d["fix_rate"][m]) for m in ("influence", "random", "random_same_class"))
        + f" at {f(_drop(d))} points")),
    **{f"{n}-bars": Figure(n, correct_bars) for n in ("correct-mlp-0", "correct-mlp-1", "correct-tweets-0",
                                                       "correct-tweets-1", "correct-tweets-2")},
    **{f"correct-{r}-spans": Figure("correct-summary", lambda rs, r=r: correct_spans(rs, r)) for r in ("digits", "tweets")},
}

FIGURES: dict[str, Figure] = {**DIAGNOSE, **CORRECTION}
