"""``ifscope demo``: the whole pipeline on the built-in digits default, ending with the HTML report's path.

Each step is the subcommand itself, called with the same options a user would type; a step whose subcommand is
registered in ``SUBCOMMANDS`` joins the pipeline (``fade``, ``diagnose``, ``correct`` plug in that way).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

DEMO_WORKDIR = "ifscope-demo"
PLUGGABLE = ("fade", "diagnose", "correct")  # run between top and report when registered
# Sizes that keep the whole demo within minutes on 2 cores; --quick shrinks them to seconds (for tests).
# Every step reads the run that fit wrote (same estimator, same spectrum); only the sizes of each step differ.
# The fade keeps the recipe's continued training (digits-cnn: SGD batches of 64 at lr 0.001, up-weighting, T up to
# 300, where its scores fade; a full-batch step replays all 1000 images per replica, so full batch stopped at T = 30
# before anything had faded) on ids from the first batch (each acts from T = 1), its horizons cut to a 100 s budget
# of replays on a slower machine (it says so).
DEMO_FADE_BUDGET_S = "100"
STEP_OPTIONS = {
    "fade": ["--n-ids", "8", "--n-queries", "5", "--ids-from", "first_batch", "--budget-s", DEMO_FADE_BUDGET_S],
    "diagnose": ["--n-queries", "10", "--n-train", "100", "--n-ids", "4", "--steps", "1", "10", "--epsilons", "0.5"],
    "correct": [],  # the recipe's budget on every mistake
}
# The text demo (MiniLM-L6, 1.9M parameters over the last block): the fade keeps the recipe's minibatch SGD (ids from
# the first batch, lr 0.01, the checkpoint methods), since a full-batch step replays all 2,000 tweets per replica
# and unrolled's horizon of validity scores all 2,000 tweets per method (most of a fade's time); the diagnosis
# follows the recipe's SGD diagnose defaults, with fewer ids and horizons.
RECIPE_OPTIONS = {
    "tweets-minilm": {
        "fade": ["--n-ids", "8", "--n-queries", "5", "--steps", "1,3,10,30"],
        "diagnose": ["--n-queries", "5", "--n-train", "50", "--n-ids", "4", "--epsilon-ids", "2", "--steps", "1", "10", "30",
                     "--epsilons", "0.5"],
        "correct": ["--queries", "10"],  # each correction steps the BERT once per selection
    },
}
QUICK_FIT = ["--rank", "6", "--iterations", "20"]
QUICK_OPTIONS = {
    "fade": ["--n-ids", "3", "--n-queries", "3", "--steps", "1,10", "--krylov", "10", "--methods", "run,horizon,graddot"],
    "diagnose": ["--n-queries", "4", "--n-train", "30", "--n-ids", "2", "--steps", "1", "10", "--epsilons", "0.5"],
    "correct": ["--queries", "2", "--k", "4", "--steps", "3", "--anchor", "10"],
}


def default_recipe() -> str:
    from ..recipes import _registry
    return "digits-cnn" if "digits-cnn" in _registry() else "digits-mlp"


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("demo", help="run fit, scores, top, (fade, diagnose, correct,) report on the digits default")
    p.add_argument("--recipe", default=None, help="recipe (default: the built-in digits model)")
    p.add_argument("--workdir", default=DEMO_WORKDIR, help=f"run directory (default ./{DEMO_WORKDIR})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rank", type=int, default=None,
                   help="fit: eigenpairs kept (default: the recipe's, else the library's: 100)")
    p.add_argument("--iterations", type=int, default=None, help="fit: Arnoldi iterations (default: the recipe's)")
    p.add_argument("--queries", default="0-5", help="test examples shown in the gallery (default 0-5)")
    p.add_argument("-k", type=int, default=6, help="proponents and opponents per query (default 6)")
    p.add_argument("--quick", action="store_true", help="tiny sizes for every step (seconds; for smoke tests)")
    return p


def _fade_line(r: dict[str, Any]) -> str:
    steps, ref = r["steps"], r["reference_method"]
    p = r["methods"][ref]["pearson"]
    half = "beyond the grid" if r["horizon_half"] is None else f"{r['horizon_half']:.3g}"
    return (f"{ref} Pearson {p[0]:.3f} at T={steps[0]} -> {p[-1]:.3f} at T={steps[-1]} (half-life {half}); "
            + ", ".join(f"{n} {m['pearson'][0]:.2f}->{m['pearson'][-1]:.2f}" for n, m in r["methods"].items()
                        if n != ref and m["pearson"][0] is not None and m["pearson"][-1] is not None))


def _correct_line(r: dict[str, Any]) -> str:
    if not r["n_queries"]:
        return "no mistakes to correct"
    from .correct import figure_text
    fr = r["fix_rate"]
    fig = r.get("heldout_figure") or {"name": "accuracy", **r["heldout_accuracy"]}
    drop = "" if fig.get("before") is None or fig.get("after") is None else \
        (f"; held-out {fig['name']} {figure_text(fig['name'], fig['before'])} -> {figure_text(fig['name'], fig['after'])} "
         "(mean per correction)")
    return (f"influence fixed {round(fr['influence'] * r['n_queries'])}/{r['n_queries']} mistakes, "
            + ", ".join(f"{m} {v:.2f}" for m, v in fr.items() if m != "influence") + drop)


# the one line of a step's result the demo's closing summary shows (default: the first line of its summary)
HEADLINES = {
    "fade": _fade_line,
    "diagnose": lambda r: ", ".join(f"{n} {a['verdict']}" for n, a in r["assumptions"].items()),
    "correct": _correct_line,
}


def headline(name: str, result: dict[str, Any]) -> str | None:
    """One line saying what step ``name`` found."""
    if name in HEADLINES:
        return HEADLINES[name](result)
    return result["summary"].splitlines()[0] if result.get("summary") else None


def step(name: str, argv: list[str]) -> dict[str, Any]:
    """Run subcommand ``name`` in this process exactly as ``ifscope NAME ARGV...`` would."""
    from . import build_parser, record_options
    args = build_parser().parse_args([name, *argv])
    t0 = time.time()
    result = args.run(args)
    record_options(args, result)
    print(f"ifscope demo: {name} done in {time.time() - t0:.1f} s", file=sys.stderr)
    return result


def run(args: argparse.Namespace) -> dict[str, Any]:
    from . import SUBCOMMANDS
    t0 = time.time()
    recipe = args.recipe or default_recipe()
    common = ["--recipe", recipe, "--workdir", args.workdir, "--seed", str(args.seed)]
    steps: dict[str, dict[str, Any]] = {}
    sized = [a for flag, v in (("--rank", args.rank), ("--iterations", args.iterations)) if v is not None
             for a in (flag, str(v))]
    steps["fit"] = step("fit", [*common, *(sized or (QUICK_FIT if args.quick else []))])
    steps["scores"] = step("scores", common)
    steps["top"] = step("top", [*common, "--queries", args.queries, "-k", str(args.k)])
    sizes = QUICK_OPTIONS if args.quick else {**STEP_OPTIONS, **RECIPE_OPTIONS.get(recipe, {})}
    for name in PLUGGABLE:
        if name in SUBCOMMANDS:
            steps[name] = step(name, [*common, *sizes[name]])
    steps["report"] = step("report", [args.workdir])
    report = steps["report"]["report"]
    lines = [f"ifscope demo on {recipe} in {time.time() - t0:.0f} s, artifacts in {args.workdir}/"]
    lines += [f"  {name}: {line}" for name, r in steps.items() if (line := headline(name, r))]
    lines.append(f"report: {report}")
    for r in steps.values():
        r.pop("summary", None)
    return {"recipe": recipe, "workdir": args.workdir, "report": report, "seconds": time.time() - t0,
            "steps": steps, "summary": "\n".join(lines)}
