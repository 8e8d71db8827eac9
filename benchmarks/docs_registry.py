"""Which command produces each stored result of docs/results/, and how it is rendered: ``TABLES`` (a region
``<!-- table:NAME -->`` shows the command and its table) and ``FIGURES`` (a figure inside a sentence). The runner and
the check are ``benchmarks/docs_tables.py``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import docs_figures
import docs_figures_fade
import docs_render as R
import docs_render_lds as L
import docs_render_scripts as S
from docs_figures import Figure


@dataclass
class Table:
    """A table: the command (without ``--workdir`` and ``--json``), how to render its JSON, where it goes."""

    command: list[str]
    render: Callable[[dict[str, Any]], str]
    files: tuple[str, ...]
    source: str | None = None  # another table's stored result, rendered another way
    script: str | None = None  # a benchmark script instead of ifscope
    peers: bool = True  # the script runs in the peers' environment (benchmarks/setup_peers.sh), else in this one
    sources: tuple[str, ...] = ()  # a summary of other tables' stored results: ``render({name: result})``
    json_to_stdout: bool = False  # the script prints its JSON after ``--json`` instead of writing ``--json FILE``


CORRECT_SEEDS = (0, 1, 2)  # issue 13 asks for two; the third says whether the margins are luck
WHOLE = ["--budget-s", "100000"]  # a published correct/lds run keeps every size: no time budget cuts it on a rerun


def _correct(recipe: str, seed: int) -> Table:
    return Table(["correct", "--recipe", recipe, "--seed", str(seed), *WHOLE], R.correct_bars,
                 ("docs/experiments_correction.md",))



PEERS_WIDE = ["--hidden", "256", "256", "--rank", "100", "--skip", "reference", "exact", "ifscope cg", "ifscope lissa",
              "dattri cg", "explicit", "direct", "naive"]

# pydvl CG kept: it is the horizon method's comparator at T = 100
PEERS_MNIST1D = ["--data", "mnist1d", *(a for a in PEERS_WIDE if a != "pydvl cg")]

PEERS_SMALL = ["--hidden", "32", "--rank", "100", "--skip", "ifscope cg", "ifscope lissa", "dattri cg", "pydvl cg"]

# issue 25: which Arnoldi setting costs the accuracy; the first row is the reference (the peers' setting, every
# iteration), the library's defaults are ""
SWEEP = ["--configs", "rank=100 iterations=200 block=1 ritz_tol=null", "rank=50 iterations=200 block=1 ritz_tol=null",
         "rank=100 iterations=128 block=16 ritz_tol=null", "rank=100 iterations=200 block=16 ritz_tol=null", "",
         "projection_dtype=bfloat16", "hessian_samples=512",
         "rank=64 iterations=128 block=16 hessian_samples=256 projection_dtype=bfloat16"]

TABLES: dict[str, Table] = {
    "peers-wide": Table(PEERS_WIDE, S.peers_table, ("docs/performance.md",), script="benchmarks/peers.py"),
    "peers-mnist1d": Table(PEERS_MNIST1D, S.peers_table, ("docs/performance.md",), script="benchmarks/peers.py"),
    "peers-small": Table(PEERS_SMALL, S.peers_table, ("docs/performance.md",), script="benchmarks/peers.py"),
    "ekfac-settings-mlp": Table(["--recipe", "digits-mlp"], S.ekfac_settings_table, ("docs/evaluation.md",),
                                script="benchmarks/ekfac_settings.py"),
    "ekfac-kronfluence": Table(["--recipe", "mnist1d-mlp"], S.ekfac_table, ("docs/evaluation.md",),
                               script="benchmarks/ekfac_agreement.py"),
    "fade-mnist1d-mlp": Table(["fade", "--recipe", "mnist1d-mlp", "--methods",
                               "run,horizon,arnoldi_horizon,ekfac_horizon,graddot,unrolled", "--steps", "1,3,10,30,100",
                               "--n-ids", "20", "--n-queries", "10"], R.fade_table, ("docs/evaluation.md",)),
    "fade-mlp-remove": Table(["fade", "--recipe", "digits-mlp", "--mode", "remove"], R.fade_table, ("README.md",)),
    "fade-mlp-remove-full": Table(["fade", "--recipe", "digits-mlp", "--mode", "remove"], R.fade_tables,
                                  ("docs/fade.md",), source="fade-mlp-remove"),
    "fade-mlp-upweight": Table(["fade", "--recipe", "digits-mlp", "--mode", "upweight", "--epsilon", "0.01"],
                               R.fade_tables, ("docs/fade.md",)),
    "fade-mlp-sgd": Table(["fade", "--recipe", "digits-mlp", "--mode", "remove", "--train-batch-size", "100"],
                          R.fade_tables, ("docs/fade.md",)),
    "fade-tweets-remove": Table(["fade", "--recipe", "tweets-minilm", "--mode", "remove"], R.fade_tables_floor,
                                ("docs/experiments.md",)),
    "fade-tweets-upweight": Table(["fade", "--recipe", "tweets-minilm", "--mode", "upweight", "--epsilon", "0.01"],
                                  R.fade_tables_floor, ("docs/experiments.md",)),
    "fade-tweets-lrmax": Table(["fade", "--recipe", "tweets-minilm", "--mode", "remove", "--lr", "0.12", "--n-ids", "10",
                                "--n-queries", "10", "--steps", "1,3,10,30", "--methods",
                                "run,arnoldi_horizon,graddot,horizon_schedule,unrolled"], R.fade_tables_floor,
                               ("docs/experiments.md",)),
    "diagnose-mlp": Table(["diagnose", "--recipe", "digits-mlp"], R.diagnose_table, ("README.md", "docs/diagnose.md")),
    "diagnose-mlp-bad": Table(["diagnose", "--recipe", "digits-mlp", "--recipe-arg", "steps=10", "--recipe-arg",
                               "weight_decay=0.0"], R.diagnose_table, ("README.md", "docs/diagnose.md")),
    "diagnose-cnn": Table(["diagnose", "--recipe", "digits-cnn"], R.diagnose_table, ("docs/diagnose.md",)),
    "fade-cnn": Table(["fade", "--recipe", "digits-cnn"], R.fade_tables_floor, ("docs/experiments.md",)),
    "fade-cnn-fast-linear": Table(["fade", "--recipe", "digits-cnn", "--lr", "0.010817", "--steps", "1,3,10,30",
                                   "--mode", "upweight", "--epsilon", "0.0001", "--truth-dtype", "float64"],
                                  R.fade_table, ("docs/experiments.md",)),
    **{f"correct-{r.split('-')[0]}-{s}": _correct(r, s) for r in ("tweets-minilm", "digits-cnn") for s in CORRECT_SEEDS},
    **{f"correct-tweets-gpt-{s}": Table(["correct", "--recipe", "tweets-gpt", "--seed", str(s), *WHOLE],
                                        R.correct_lm_table,
                                        ("docs/experiments.md",)) for s in CORRECT_SEEDS},
    "fade-tweets-gpt": Table(["fade", "--recipe", "tweets-gpt"], R.fade_tables_floor, ("docs/experiments.md",)),
    # every command of tweets-gpt with its defaults, in two runs of at most ~10 minutes each (one run directory each)
    "commands-tweets-gpt": Table(["tweets-gpt", "--commands", "fit", "scores", "top", "self-influence", "correct"],
                                 S.columns_table(S.COMMANDS_COLUMNS), ("docs/experiments.md",),
                                 script="benchmarks/commands.py", peers=False, json_to_stdout=True),
    "commands-tweets-gpt-experiments": Table(["tweets-gpt", "--commands", "fit", "fade", "diagnose", "lds", "report"],
                                             S.columns_table(S.COMMANDS_COLUMNS), ("docs/experiments.md",),
                                             script="benchmarks/commands.py", peers=False, json_to_stdout=True),
    "correct-regression": Table(["correct", "--recipe", "examples/regression.py:make", *WHOLE], R.correct_table,
                                ("docs/models.md",)),
    "correct-summary": Table([], R.correct_summary, ("README.md",),
                             sources=tuple(f"correct-{r}-{s}" for r in ("digits", "tweets") for s in CORRECT_SEEDS)),
    "groundtruth": Table(["cnn", "floor", "tweets", "--dtypes", "float32", "--batchings", "vmap,loop"],
                         S.groundtruth_table, ("docs/experiments.md",), script="benchmarks/groundtruth.py", peers=False),
    "fade-summary": Table([], R.fade_summary, ("README.md", "docs/experiments.md"),
                          sources=("fade-mlp-remove", "fade-mlp-upweight", "fade-mlp-sgd", "fade-cnn", "fade-cnn-fast-linear",
                                   "fade-tweets-remove", "fade-tweets-upweight", "fade-tweets-lrmax", "fade-tweets-gpt")),
}


TABLES.update({
    # README's prose figures
    "self-influence-flip": Table(["self-influence", "--recipe", "digits-mlp", "--recipe-arg", "flip=0.1"],
                                 R.self_influence_table, ()),
    "lds-linear-exact": Table(["lds", "--recipe", "digits-linear", "--method", "exact", *WHOLE], R.lds_table, ()),
    # issue 23's command as a user types it: the default budget sizes the subsets
    "lds-mnist1d-ekfac": Table(["lds", "--recipe", "mnist1d", "--method", "ekfac"], R.lds_table, ("docs/evaluation.md",)),
    # docs/evaluation.md: the runs its text names (expensive: minutes each on 2 cores)
    "counterfactual-linear-continue": Table(["counterfactual", "--recipe", "digits-linear", "--method",
                                             "exact,graddot,arnoldi", "--retrain", "continue", "--steps", "100"],
                                            R.counterfactual_table, ("docs/evaluation.md",)),
    "counterfactual-linear": Table(["counterfactual", "--recipe", "digits-linear", "--method", "exact,graddot", "--k",
                                    "10,40"], R.counterfactual_table, ("docs/evaluation.md",)),
    # docs/unrolled.md: the stored digits-mlp fades seen from unrolled's side, and its cost
    "unrolled-mlp-upweight": Table([], R.unrolled_rows, ("docs/unrolled.md",), source="fade-mlp-upweight"),
    "unrolled-mlp-remove": Table([], R.unrolled_rows, ("docs/unrolled.md",), source="fade-mlp-remove"),
    "unrolled-mlp-sgd": Table([], R.unrolled_rows, ("docs/unrolled.md",), source="fade-mlp-sgd"),
    "validity-mlp": Table([], R.validity_summary, ("docs/unrolled.md",),
                          sources=("fade-mlp-remove", "fade-mlp-sgd")),
    "unrolled-cost-1": Table(["--steps", "10", "30", "100", "300", "--queries", "1"], S.unrolled_cost,
                             ("docs/unrolled.md",), script="benchmarks/unrolled.py", peers=False, json_to_stdout=True),
    "unrolled-cost-20": Table(["--steps", "10", "30", "100", "--queries", "20"], S.unrolled_cost,
                              ("docs/unrolled.md",), script="benchmarks/unrolled.py", peers=False, json_to_stdout=True),
    "unrolled-cost-adam": Table(["--steps", "30", "100", "--queries", "1", "--optimizer", "adam", "--train-batch-size",
                                 "100"], S.unrolled_cost, ("docs/unrolled.md",), script="benchmarks/unrolled.py",
                                peers=False, json_to_stdout=True),
    "unrolled-cost": Table([], S.unrolled_cost_summary, ("docs/unrolled.md",),
                           sources=("unrolled-cost-1", "unrolled-cost-adam", "unrolled-cost-20")),
    "eigen-ratio": Table(["--rank", "150", "--iterations", "200"], S.columns_table(S.EIGEN_RATIO_COLUMNS),
                         ("docs/errors.md",), script="benchmarks/eigen_ratio.py", peers=False, json_to_stdout=True),
    "eigen-ratio-nowd": Table(["--rank", "200", "--iterations", "200", "--weight-decay", "0"],
                              S.columns_table(S.EIGEN_RATIO_COLUMNS), ("docs/errors.md",),
                              script="benchmarks/eigen_ratio.py", peers=False, json_to_stdout=True),
    "horizon-accuracy": Table([], S.columns_table(S.HORIZON_ACCURACY_COLUMNS), ("docs/fade.md",),
                              script="benchmarks/horizon_accuracy.py", peers=False, json_to_stdout=True),
    **{f"correct-mlp-{s}": Table(["correct", "--recipe", "digits-mlp", "--n-test", "797", "--seed", str(s), *WHOLE],
                                 R.correct_bars, ("docs/correct.md",)) for s in (0, 1)},
    # docs/performance.md (pending a rerun there): benchmarks/peers.py, floor.py and streaming.py
    "peers-small-all": Table(["--hidden", "32"], S.peers_table, ("docs/performance.md",), script="benchmarks/peers.py"),
    # shrunk to fit ten minutes at 2 threads: 20 removals (was 30) and no CG reference (Spearman vs exact: nan)
    "peers-big": Table(["--hidden", "1600", "--train-steps", "500", "--queries", "10", "--ids", "20", "--skip",
                        "reference", "exact", "explicit", "direct", "naive", "dattri cg"], S.peers_table,
                       ("docs/performance.md",), script="benchmarks/peers.py"),
    "arnoldi-sweep-wide": Table(["--hidden", "256", "256", *SWEEP], S.arnoldi_sweep_table, ("docs/performance.md",),
                                script="benchmarks/arnoldi_sweep.py", json_to_stdout=True),
    "arnoldi-sweep-mnist1d": Table(["--data", "mnist1d", "--hidden", "256", "256", *SWEEP], S.arnoldi_sweep_table,
                                   ("docs/performance.md",), script="benchmarks/arnoldi_sweep.py", json_to_stdout=True),
    "peers-scaling": Table(["--hidden", "32", "--train-steps", "500", "--scaling", "250", "500", "1000", "1497"],
                           S.peers_scaling_table, ("docs/performance.md",), script="benchmarks/peers.py"),
    **{f"floor-rank{r}": Table(["--rank", str(r), "--iterations", str(n)], S.columns_table(S.FLOOR_COLUMNS),
                               ("docs/performance.md",), script="benchmarks/floor.py", peers=False, json_to_stdout=True)
       for r, n in ((10, 40), (20, 60))},
    "floor-paths": Table(["--paths"], S.columns_table(S.FLOOR_PATH_COLUMNS), ("docs/performance.md",),
                         script="benchmarks/floor.py", peers=False, json_to_stdout=True),
    "floor-paths-wide": Table(["--paths", "--widths", "32", "512", "1600", "--ranks", "10", "50", "100"],
                              S.columns_table(S.FLOOR_PATH_COLUMNS), ("docs/performance.md",),
                              script="benchmarks/floor.py", peers=False, json_to_stdout=True),
    "fit-cnn-sample": Table(["fit", "--recipe", "digits-cnn", "--hessian-samples", "256"], R.run_caption,
                            ()),
    "fit-cnn-all": Table(["fit", "--recipe", "digits-cnn"], R.run_caption, ()),
    "fit-cnn-samples": Table([], R.fit_sample_table, ("docs/performance.md",), sources=("fit-cnn-sample", "fit-cnn-all")),
    "top-tweets": Table(["--repeat", "3", "digits-mlp", "digits-cnn", "tweets-minilm"], S.columns_table(S.DEFAULTS_COLUMNS),
                        ("docs/performance.md",), script="benchmarks/defaults.py", peers=False, json_to_stdout=True),
    "streaming": Table(["--n", "10000", "100000", "--materialise"], S.columns_table(S.STREAMING_COLUMNS),
                       ("docs/performance.md",), script="benchmarks/streaming.py", peers=False, json_to_stdout=True),
})
TABLES["peers-wide"].files += ("README.md",)

# benchmarks/scale.py: tweets-minilm from 2,000 tweets to all of them, one stored run per ≤ 10-minute measurement
SCALE_RUNS = {f"scale-{name}-{blocks}": ["--n", n, "--last-blocks", blocks]
              for name, n in (("2k", "2000"), ("8k", "8000"), ("all", "all")) for blocks in ("1", "6")}
SCALE_RUNS["scale-2k-jvp"] = ["--n", "2000", "--last-blocks", "1", "--projection", "jvp"]
TABLES.update({name: Table(argv, lambda d: S.scale_summary({"run": d}), (), script="benchmarks/scale.py", peers=False)
               for name, argv in SCALE_RUNS.items()})
TABLES["scale"] = Table([], S.scale_summary, ("docs/performance.md",), sources=tuple(SCALE_RUNS))


# docs/evaluation.md, issue 23: benchmarks/lds.py per task, retrained from scratch (2 seeds per subset, so the seed
# agreement is measured) and continued T steps, every method on the same subsets; sized to about 6 minutes a run at
# 2 threads. Per task: (ifscope's methods, the peers, damping of the inverse-curvature methods and of the peers' IF,
# other arguments, the continued training). On the CNNs (non-convex, an indefinite Hessian) exact and CG are left out
# (a tiny run: exact found mnist1d-cnn's damped Hessian singular after 94 s, CG met negative curvature), and so are
# the peers' dense and iterative inverses (dattri's DataInf did not finish 3 queries of digits-cnn in 5 minutes).
LDS_PEERS = "explicit,cg,arnoldi,lissa,datainf,trak-1,trak-10,kronfluence-ekfac,pydvl-cg,pydvl-arnoldi,pydvl-ekfac"
LDS_CNN_PEERS = "arnoldi,trak-1,trak-10,kronfluence-ekfac,pydvl-arnoldi,pydvl-ekfac"
LDS_CNN = "arnoldi,graddot,horizon,arnoldi_horizon,kfac,ekfac,ekfac_horizon"
LDS_TASKS = {  # digits-mlp retrains in 2 s (1500 Adam steps): 40 subsets x 2 seeds from scratch
    "digits-linear": ("exact,cg," + LDS_CNN, LDS_PEERS, "0", ["--queries", "30"], "50", ["--steps", "100"]),
    "digits-mlp": ("exact,cg," + LDS_CNN, LDS_PEERS, "0.001", ["--queries", "30"], "40", ["--steps", "100"]),
    "mnist1d-cnn": (LDS_CNN, LDS_CNN_PEERS, "0", ["--queries", "30"], "50", ["--steps", "100"]),
    "digits-cnn": (LDS_CNN, LDS_CNN_PEERS, "0", ["--queries", "20", "--hessian-samples", "100"], "50",
                   ["--steps", "30"]),
    # 4,000 training signals: the peers' dense and iterative inverses (minutes each) are left out, DataInf kept
    "mnist1d-mlp": (LDS_CNN, LDS_CNN_PEERS + ",datainf", "0", ["--queries", "30"], "50", ["--steps", "100"]),
}


def _lds(recipe: str, retrain: str) -> Table:
    methods, peers, damping, common, scratch_subsets, continued = LDS_TASKS[recipe]
    args = ["--recipe", recipe, *common, "--damping", damping, "--peers", peers]
    args += (["--subsets", scratch_subsets, "--methods", methods, "--seeds", "2"] if retrain == "scratch" else
             ["--subsets", "50", "--methods", methods + ",tracin,unrolled", "--retrain", "continue", *continued])
    return Table(args, S.lds_script_table, ("docs/evaluation.md",), script="benchmarks/lds.py")


for _task in LDS_TASKS:
    TABLES[f"lds-{_task}"] = _lds(_task, "scratch")
    TABLES[f"lds-{_task}-continue"] = _lds(_task, "continue")
LDS_RUNS = tuple(f"lds-{t}{kind}" for t in ("digits-linear", "digits-mlp", "digits-cnn", "mnist1d-cnn", "mnist1d-mlp")
                 for kind in ("", "-continue"))
TABLES.update({f"lds-pair-{t}": Table([], L.lds_pair, ("docs/evaluation.md",), sources=(f"lds-{t}", f"lds-{t}-continue"))
               for t in LDS_TASKS})
TABLES["lds-targets"] = Table([], L.lds_targets, ("docs/evaluation.md",), sources=LDS_RUNS)

def _at(d: dict[str, Any], method: str, key: str, t: int) -> float:
    """A fade result's ``key`` (pearson, slope, ...) for ``method`` at horizon ``t``."""
    return d["methods"][method][key][d["steps"].index(t)]


def _best(d: dict[str, Any], method: str) -> str:
    """A method's best Pearson over a fade's grid and the T where it is reached: ``0.70, near T = 30``."""
    p = d["methods"][method]["pearson"]
    i = max(range(len(p)), key=lambda k: p[k])
    return f"{p[i]:.2f}, near T = {d['steps'][i]}"


def _fade_cost(d: dict[str, Any]) -> str:
    """The runner's wall time of a stored fade and its size: ``574 s on 1 thread(s) (40 ids × 1000 steps, 7 methods)``."""
    return (f"{d['_meta']['seconds']:.0f} s on {d['_meta']['threads']} thread(s) ({d['n_ids']} ids × {d['steps'][-1]} "
            f"steps, {len(d['methods'])} methods)")


def _truth_cost(d: dict[str, Any]) -> str:
    """A stored fade's wall time and its ground truth's share: ``231 s on 2 thread(s), the ground truth 128 s of it``."""
    return (f"{d['_meta']['seconds']:.0f} s on {d['_meta']['threads']} thread(s), the ground truth "
            f"{d['truth_seconds']:.0f} s of it")


FIGURES: dict[str, Figure] = {
    **{f"{name}-cost": Figure(name, _fade_cost) for name in ("fade-mlp-remove", "fade-mlp-upweight", "fade-mlp-sgd")},
    "self-influence-auc": Figure("self-influence-flip", lambda d: f"{d['auc']:.3f}"),
    "lds-linear-exact": Figure("lds-linear-exact", lambda d: R.lds_with_ci(d["methods"]["exact"])),
    "mlp-graddot-half": Figure("fade-mlp-remove", lambda d: f"{d['methods']['graddot']['horizon_half']:.0f}"),
    "mlp-arnoldi-horizon-last": Figure("fade-mlp-remove", lambda d: f"{d['methods']['arnoldi_horizon']['pearson'][-1]:.2f} "
                                       f"by T = {d['steps'][-1]}"),
    "mlp-arnoldi-best": Figure("fade-mlp-remove", lambda d: _best(d, "arnoldi")),
    "mlp-unrolled-upweight-min": Figure("fade-mlp-upweight", lambda d: f"{min(d['methods']['unrolled']['pearson']):.3f}"),
    "mlp-unrolled-remove-slope": Figure("fade-mlp-remove", lambda d: f"slope {_at(d, 'unrolled', 'slope', 10):.2f} at "
                                        f"T = 10, {d['methods']['unrolled']['slope'][-1]:.2f} at T = {d['steps'][-1]}"),
    "mlp-unrolled-remove-ratios": Figure("fade-mlp-remove", lambda d: (
        f"{_at(d, 'unrolled', 'slope', 10):.2f}× the exact first-order change at T = 10, "
        f"{_at(d, 'unrolled', 'slope', 100):.2f}× at T = 100 and {_at(d, 'unrolled', 'slope', 1000):.2f}× at T = 1000 "
        f"(Pearson {_at(d, 'unrolled', 'pearson', 1000):.3f})")),
    "mlp-horizon-remove-last-slope": Figure("fade-mlp-remove", lambda d: f"{_at(d, 'horizon', 'slope', 1000):.2f}"),
    "mlp-unrolled-remove-late": Figure("fade-mlp-remove", lambda d: (
        f"{_at(d, 'unrolled', 'slope', 300):.2f}× its first-order value at T = 300 and "
        f"{_at(d, 'unrolled', 'slope', 1000):.2f}× at T = 1000")),
    "mlp-unrolled-remove-late-slope": Figure("fade-mlp-remove", lambda d: (
        f"slope {_at(d, 'unrolled', 'slope', 300):.2f} at T = 300, {_at(d, 'unrolled', 'slope', 1000):.2f} at "
        f"T = 1000")),
    "unrolled-cost-one": Figure("unrolled-cost", lambda rs: S.ratio_range(rs, queries=1)),
    "unrolled-cost-block": Figure("unrolled-cost", lambda rs: S.ratio_range(rs, queries=20, per_query=True)),
    "unrolled-cost-products": Figure("unrolled-cost-20", lambda d: "{:.1f}–{:.1f} replays".format(
        *(f(r["floor_s"] / r["replay_s"] - 1 for r in d["rows"]) for f in (min, max)))),
    "unrolled-cost-rss": Figure("unrolled-cost-1", lambda d: f"{d['rows'][0]['process_peak_rss_mb']:.0f} to "
                                f"{d['rows'][-1]['process_peak_rss_mb']:.0f} MiB between T = {d['rows'][0]['T']} and "
                                f"T = {d['rows'][-1]['T']}"),
    "eigen-ratio-kept": Figure("eigen-ratio", S.eigen_summary),
    "eigen-ratio-nowd": Figure("eigen-ratio-nowd", S.eigen_summary),
    "real-default-best": Figure("fade-summary", lambda rs: R.best_at_first_step(
        [rs[n] for n in ("fade-cnn", "fade-tweets-remove", "fade-tweets-upweight")])),
    "diagnose-cnn-cost": Figure("diagnose-cnn", lambda d: f"{d['_meta']['seconds']:.0f} s on {d['_meta']['threads']} thread(s)"),
    "diagnose-mlp-seconds": Figure("diagnose-mlp", lambda d: f"{d['seconds']:.0f} s on {d['_meta']['threads']} thread(s)"),
    "ekfac-kronfluence-agree": Figure("ekfac-kronfluence", lambda d: (
        f"a relative {max(r['relative_difference'] for r in d['rows']):.0e}".replace("e-0", "e-")
        + f", in {min(r['ratio'] for r in d['rows']):.1f}-{max(r['ratio'] for r in d['rows']):.1f}× its seconds")),
    **{f"{name}-truth-cost": Figure(name, _truth_cost) for name in ("fade-cnn", "fade-tweets-remove",
                                                                     "fade-tweets-upweight")},
    "correct-tweets-2-cost": Figure("correct-tweets-2", R.run_caption),
    "gpt-fade-sizes": Figure("fade-tweets-gpt", lambda d: f"{d['chosen']['n_ids']} removed tweets × "
                             f"{d['chosen']['n_queries']} queries up to T = {max(d['chosen']['steps'])}"),
    "gpt-fade-arnoldi": Figure("fade-tweets-gpt", lambda d: f"{_at(d, 'arnoldi', 'pearson', d['steps'][0]):.2f} at "
                               f"T = {d['steps'][0]} to {d['methods']['arnoldi']['pearson'][-1]:.2f} at "
                               f"T = {d['steps'][-1]}"),
    "gpt-fade-validity-s": Figure("fade-tweets-gpt", lambda d: f"{sum(v['seconds'] for v in d['validity_horizon'].values()):.0f}"
                                  f" s of its {d['_meta']['seconds']:.0f} s, ranking "
                                  f"{next(iter(d['validity_horizon'].values())).get('n_train', d['n_train']):,} of the "
                                  f"{d['n_train']:,} training tweets"),
    **{f"sweep-{m}-{name}": Figure(f"arnoldi-sweep-{m}", S.sweep_row(options)) for m in ("wide", "mnist1d")
       for name, options in (("old-defaults", "rank=50 iterations=200 block=1 ritz_tol=null"), ("defaults", "(defaults)"),
                             ("iterations", "rank=100 iterations=128 block=16 ritz_tol=null"),
                             ("block", "rank=100 iterations=200 block=16 ritz_tol=null"),
                             ("bf16", "projection_dtype=bfloat16"), ("sample", "hessian_samples=512"),
                             ("fast", "rank=64 iterations=128 block=16 hessian_samples=256 projection_dtype=bfloat16"))},
    **{f"{name}-same-kind": Figure(name, S.peers_same_kind) for name in ("peers-small-all", "peers-big")},
    **{f"{name}-defaults-every-t": Figure(name, S.peers_every_t) for name in ("peers-wide", "peers-mnist1d")},
    **{f"{name}-defaults-loss": Figure(name, S.peers_defaults_loss) for name in ("peers-wide", "peers-mnist1d")},
    "top-tweets-minilm": Figure("top-tweets", lambda d: (lambda r: f"{r['seconds']:.0f} s wall and {r['cpu_seconds']:.0f} "
                                f"CPU s at {d['_meta']['threads']} threads, the median of {len(r.get('walls') or [0])} "
                                f"run(s) (issue 22's target, 60 s wall: "
                                f"{'met' if r['seconds'] <= 60 else 'not met'})")(
                                    next(r for r in d["rows"] if r["recipe"] == "tweets-minilm"))),
    "streaming-growth": Figure("streaming", S.streaming_growth),
    "peers-exact-agree": Figure("peers-small", lambda d: f"{min(r['vs_exact'] for r in d['rows'] if r['vs_exact'] > 0.99):.2f}"),
    "peers-small-all-exact-agree": Figure("peers-small-all", lambda d: ", ".join(
        r["method"] for r in d["rows"] if r.get("vs_exact", 0) > 0.99) + " reach Spearman " + f"{min(r['vs_exact'] for r in d['rows'] if r.get('vs_exact', 0) > 0.99):.2f}"),
}
FIGURES.update({**docs_figures.FIGURES, **docs_figures_fade.FIGURES})


def _lds_figures(run: str) -> dict[str, Figure]:
    """Figures of one benchmarks/lds.py run quoted in sentences: ``RUN.METHOD`` (its LDS with the interval) and
    ``RUN.METHOD.s`` (its seconds) for every method the command names, and ``RUN.seeds`` (the seed agreement)."""
    args = TABLES[run].command
    names = [f"ifscope {m}" for m in args[args.index("--methods") + 1].split(",")]
    names += [L.peer_name(k) for k in args[args.index("--peers") + 1].split(",") if k]
    out = {"seeds": Figure(run, lambda d: R.num(d.get("seed_agreement")))}
    for name in names:
        out[L.slug(name)] = Figure(run, lambda d, n=name: L.lds_of(d, n))
        out[L.slug(name) + ".s"] = Figure(run, lambda d, n=name: L.seconds_of(d, n))
    return {f"{run}.{k}": f for k, f in out.items()}


for _run in LDS_RUNS:
    FIGURES.update(_lds_figures(_run))
FIGURES.update({f"fade-mnist1d-mlp.{m}.{t}": Figure("fade-mnist1d-mlp", lambda d, m=m, t=t: R.num(_at(d, m, "pearson", t)))
                for m, t in (("ekfac_horizon", 3), ("ekfac_horizon", 10), ("graddot", 10), ("horizon", 10))})

