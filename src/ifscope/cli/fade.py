"""``ifscope fade``: correlation of each method's predictions with the actual effect of continued training, per T.

The run's fitted estimator is one of the methods (its label: its method name); the others are references built
with the run's shared options: ``horizon`` (and ``horizon_schedule`` under minibatches), ``arnoldi_horizon`` (the
run's own eigenpairs with the horizon filter, when the run is arnoldi), ``ekfac_horizon`` (when asked for: EK-FAC
with the filter, its own fit), ``graddot``, ``tracin`` along the actual continued trajectory, ``unrolled`` (the exact
derivative through the fade's own continued training, and the reference of each checkpoint method's horizon of
validity) and ``exact`` on small models. Options
(:class:`ifscope.options.FadeOptions`) left out come from the run's last fade, the recipe's ``defaults["fade"]``,
then the library.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from typing import Any

from ..options import FadeOptions
from . import add_options, common_arguments, fitted_for, influence_arguments, resolve_command, run_facts


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("fade", help="how far ahead influence predicts continued training (fade.json, figures)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    influence_arguments(common_arguments(p), exclude=tuple(f.name for f in dataclasses.fields(FadeOptions)))
    add_options(p, (FadeOptions,), "fade options (default: the run's last, the recipe's, then the library's)")
    return p


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The experiment (:func:`ifscope.experiments.fade_run.run_fade`) on the fitted run; records fade.json and the
    figure in the run directory."""
    from ..experiments.fade import plot_fade
    from ..experiments.fade_run import run_fade
    from ..experiments.sizing import SIZED
    from . import recipe_for

    t0 = time.time()
    recipe = recipe_for(args)
    resolved = resolve_command(args, recipe, "fade")
    o, explicit = resolved.options, [k for k in SIZED if resolved.source.get(k) == "flag"]
    inf = fitted_for(args, recipe)
    fade = run_fade(inf, recipe.test, o, seed=args.seed, explicit=explicit, recipe=args.recipe)
    out = {**run_facts(inf), **fade.record, "seconds": time.time() - t0}
    run_dir = inf.run
    path = run_dir.save_json("fade.json", out)
    figure = run_dir.record(str(plot_fade(fade.result, run_dir.file("report/fade_curve.png"))
                                .relative_to(run_dir.path)))
    out["summary"] = "\n".join(_summary(fade, inf, out, args.recipe, f"wrote {path} and {figure}"))
    return out


def _summary(fade: Any, inf: Any, out: dict[str, Any], recipe: str, wrote: str) -> list[str]:
    """The lines the command prints: settings, the correlation tables, the gap, validity and the noise floor."""
    from ..experiments.fade import method_label
    from ..experiments.validity import validity_lines
    result, o_batch = fade.result, out["train_batch_size"]
    half = "beyond the grid" if result.horizon_half is None else f"{result.horizon_half:.3g}"
    how = "full-batch GD" if o_batch is None else f"SGD batch {o_batch}"
    return [f"fade ({result.mode}, {len(fade.ids)} training examples x {len(fade.query_ids)} queries, {how} "
            f"lr {fade.schedule.lr:.3g}, recipe {recipe}; run: {method_label(inf)} "
            f"{'reused' if inf.reused else 'fitted'})", result.table("pearson"), result.table("spearman"),
            "gap:   " + " ".join(f"{g:.3g}" for g in result.gap),
            f"gap growth: rate r = {result.gap_rate:.3g} per step in c(e^rT - 1)/r, exponent "
            f"{result.gap_exponent:.2f} in T^a; T_1/2 ({result.reference}) = {half}",
            *validity_lines(out.get("validity_horizon", {})),
            *(["noise floor (|Δℓ| of a second unchanged replay on the other kernel / RMS actual change): "
               + " ".join(f"{r:.2g}" for r in out["noise_floor"]["ratio"])] if out["noise_floor"] else []),
            f"{wrote} in {out['seconds']:.0f} s"]
