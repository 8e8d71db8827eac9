"""``ifscope correct``: fix the recipe's mis-predicted test examples by a few steps on influential training examples.

Every option left out on the command line comes from the recipe's ``defaults["correct"]`` (sized to that model and
measured, see docs/experiments_correction.md), then from :class:`ifscope.experiments.correct.CorrectOptions` and the influence
defaults below. A text model whose influence starts at a transformer block runs on the cached output of the frozen
blocks below it (:func:`ifscope.truth.prefix.cache_prefix`): the same losses, at the cost of the selected blocks only.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from ..core.errors import ConfigError
from ..options import CorrectSelection
from . import add_options, common_arguments, fitted_for, influence_arguments, resolve_command, run_facts

SHOWN = 6  # corrected queries drawn in the report, with the training examples stepped on  # which test examples: passed to the recipe / the first N mistakes


HELP = {  # CorrectOptions is the experiment's dataclass; its flags' help is said here
    "k": "training examples per correction",
    "steps": "SGD steps per correction",
    "lr": "the correction's SGD step size (default min(0.1, 0.25/λ_max), λ_max of the fitted estimator)",
    "strategy": "proponents (descend), opponents (ascend), or both",
    "anchor": "other random training examples kept in each step to hold the model in place (0 = none)",
    "stop_when_fixed": "stop each correction at the first step after which its query is predicted correctly",
    "guard": "stop a correction before the first step after which the fraction of N seeded training examples the "
             "task's judge counts right (a classifier's accuracy) falls more than --guard-drop below the checkpoint's "
             "(0 = no guard)",
    "guard_drop": "the fraction of the guard a correction may turn wrong (accuracy, for a classifier)",
    "revert_unfixed": "return a correction that did not fix its query to the checkpoint (no side effects)",
    "baselines": "random, random_same_class, query_itself",
    "group": "one correction for all queries at once (summed scores)",
    "include_correct": "also fine-tune queries already predicted correctly",
    "rank_by": "checkpoint: the run's scores; horizon: the run's fit with the horizon filter of the correction's own "
               "steps and lr (no refit); unrolled: unrolled influence through the correction's own steps and lr",
    "tolerance": "regression: a mistake is |ŷ − y| above this, fixed when below (required for a regressor without "
                 "its own tolerance)",
}


def _classes() -> tuple[type, ...]:
    from ..experiments.correct import CorrectOptions
    return (CorrectOptions, CorrectSelection)


def add_parser(sub) -> argparse.ArgumentParser:
    import dataclasses

    from ..experiments.correct import METHODS, STRATEGIES
    from ..experiments.correct_ranking import RANKINGS
    p = sub.add_parser("correct", help="fix mis-predictions with a few fine-tuning steps on influential examples",
                       description="Queries are the test examples the model mis-predicts (or --indices); the "
                                   "held-out set for side effects is every other test example. Options left out "
                                   "come from the run's last correction, the recipe's defaults['correct'], then the "
                                   "library; the ranking is the run's fitted estimator (fitted here only when the run "
                                   "directory has none).")
    classes = _classes()
    influence_arguments(common_arguments(p), exclude=tuple(f.name for c in classes for f in dataclasses.fields(c)))
    add_options(p, classes, "correct options (default: the run's last, the recipe's, then the library's)",
                flags={"lr": "--correct-lr"}, helps=HELP,
                choices={"strategy": STRATEGIES, "rank_by": RANKINGS, "baselines": METHODS[1:]})
    p.add_argument("--n-test", type=int, default=None,
                   help="passed to the recipe as n_test (digits recipes: up to 797, all images not used for training)")
    p.add_argument("--indices", type=int, nargs="+", default=None,
                   help="test positions to correct (already-correct ones are skipped unless --include-correct); "
                        "not with --queries")
    p.add_argument("--save", action="store_true", help="write the corrected parameters to DIR/corrected.safetensors")
    return p


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ..core.data import as_dataset, take
    from ..experiments.correct import correct, save_params, split_mispredicted
    from ..experiments.correct.cost import sized_correction
    from ..truth.prefix import cache_prefix
    from . import recipe_for

    t0 = time.time()
    recipe = recipe_for(args, **({"n_test": args.n_test} if args.n_test is not None else {}))
    if args.indices is not None and args.queries is not None:
        raise ConfigError("give --queries N (the first N mistakes) or --indices (test positions), not both")
    resolved = resolve_command(args, recipe, "correct", _classes(), fixed={"seed": args.seed})
    budget, selection = resolved.objects
    t_fit = time.time()
    run_inf = fitted_for(args, recipe)
    fit_seconds = time.time() - t_fit
    # a text model's frozen prefix is computed once; the run's fit is read on the cached features (same parameters)
    pre = cache_prefix(run_inf.task, run_inf.train, recipe.test, batch_size=run_inf.config["batch_size"])
    inf = run_inf.derive(task=pre.task, train=pre.datasets[0]) if pre.start is not None else run_inf
    test = as_dataset(pre.datasets[1], "test")
    q_idx, h_idx = split_mispredicted(inf, test, n=selection.queries, indices=args.indices,
                                      tolerance=budget.tolerance)
    given = [k for k in ("queries", "steps") if resolved.source.get(k) == "flag"]
    given += ["queries"] if args.indices is not None else []  # the test positions named: all of them corrected
    q_idx, h_idx, budget, chosen = sized_correction(inf, test, q_idx, h_idx, budget, selection.budget_s, given)
    if chosen is not None:
        print(f"ifscope: correct {chosen}", file=sys.stderr)
    workdir = Path(args.workdir)
    print(f"ifscope: correcting {len(q_idx)} test examples with {inf.method} over {inf.estimator.ctx.space.dim} "
          "parameters", file=sys.stderr)
    result = correct(inf, test, heldout=take(test, h_idx) if h_idx else None, indices=q_idx, options=budget)
    out = result.to_dict()
    out["settings"] = out.pop("config")  # the correction's own settings; `config` is the run's fit
    out.update(run_facts(run_inf))
    if args.save and result.params:
        out["saved"] = save_params(result, workdir / "corrected.safetensors").name
    out["recipe"] = args.recipe
    out["n_test"], out["n_heldout"] = len(test), len(h_idx)
    out["fit_seconds"] = fit_seconds
    out["influence"] = {"method": inf.method, "n_parameters": inf.estimator.ctx.space.dim,
                        "prefix_cached": pre.start is not None, "prefix_seconds": pre.seconds}
    out["heldout"] = "every test example not used as a query"
    out["chosen"] = None if chosen is None else chosen.as_dict()
    out.update(examples(recipe, out))
    out["seconds"] = time.time() - t0
    run_inf.run.save_json("correct.json", out)
    out["summary"] = _summary(out, workdir)
    return out


def examples(recipe: Any, d: dict[str, Any], n: int = SHOWN, per: int = 4) -> dict[str, Any]:
    """What the report draws: for the first ``n`` corrected queries, the query and the first ``per`` training
    examples each correction stepped on, as pixels or text (the recipe's ``info``), with targets and predictions."""
    from ..core.data import as_dataset
    from .top import _view
    test, train = as_dataset(recipe.test, "test"), as_dataset(recipe.train, "train")
    labels = train_labels(recipe)
    shown = []
    for q in d["queries"][:n]:
        o = q["methods"]["influence"]
        shown.append({"index": q["index"], "label": q["label"], "predicted": q["predicted_before"],
                      "predicted_after": o["predicted_after"], "fixed": o["fixed"], **_view(recipe, "test", test,
                                                                                              q["index"]),
                      "proponents": [{"index": i, "label": labels[i], **_view(recipe, "train", train, i)}
                                     for i in o["selected"][:per]],
                      "opponents": [{"index": i, "label": labels[i], **_view(recipe, "train", train, i)}
                                    for i in o["ascended"][:per]]})
    return {"examples": shown, "classes": recipe.info.get("classes"),
            "image_shape": list(recipe.info.get("image_shape", []))}


def train_labels(recipe: Any) -> list[Any]:
    """Every training example's target as the task's judge gives it (class index, real value or text)."""
    from ..core.data import as_dataset, batches
    from ..core.judges import require_judge, target_value
    judge = require_judge(recipe.task.judge, "correct")
    data = as_dataset(recipe.train, "train")
    return [target_value(judge, b, i) for _, b in batches(data, 4096) for i in range(len(recipe.task.targets(b)))]


def _summary(d: dict[str, Any], workdir: Path) -> str:
    c = d["settings"]
    lines = [f"{d['recipe']}: corrected {d['n_queries']} mis-predicted test examples ({len(d['skipped'])} already "
             f"correct, left alone) with {c['steps']} SGD steps, lr {c['lr']:g}, on k={c['k']} training examples "
             f"({c['strategy']}, anchor {c['anchor']}, ranked by {c.get('rank_by', 'checkpoint')} scores"
             + (f", guard: at most {c['guard_drop']:g} of {c['guard']} training examples turned wrong" if c.get("guard")
                else "") + (", unfixed ones reverted" if c.get("revert_unfixed") else "")
             + f"); held-out set: {d['n_heldout']} other test examples"]
    if d["n_queries"]:
        name = d.get("heldout_figure", {}).get("name", "accuracy")
        lines.append(f"{'selection':<20} {'fix rate':>8} {'held-out ' + name:>16} {'broken':>7} {'s/corr':>7}")
        for m, s in d["methods"].items():
            figure = figure_text(name, s.get("heldout_figure_after"))
            broken = "-" if s["broken"] is None else f"{s['broken']:.1f}"
            ref = " (reference)" if m in d["reference_only"] else ""
            lines.append(f"{m + ref:<20} {d['fix_rate'][m]:>8.2f} {figure:>16} {broken:>7} {s['seconds']:>7.3f}")
        before = d.get("heldout_figure", {}).get("before")
        if before is not None:
            lines.append(f"held-out {name} before: {figure_text(name, before)}; side effects are means over corrections")
    lines.append(f"wrote {workdir / 'correct.json'} in {d['seconds']:.1f} s")
    return "\n".join(lines)


def figure_text(name: str, value: float | None) -> str:
    """A held-out figure as printed: accuracy in percent, anything else to four significant digits."""
    if value is None:
        return "-"
    return f"{100 * value:.2f}%" if name == "accuracy" else f"{value:.4g}"
