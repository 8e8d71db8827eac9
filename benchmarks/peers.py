"""ifscope against peer influence libraries on one task: time, peak memory, agreement with exact and ground truth.

Every method computes the same ``[queries, train]`` score matrix (positive = proponent) at one checkpoint of a
digits MLP. It is scored per query by Spearman correlation with (a) exact damped influence
``∇ℓ(q)ᵀ(H + (wd + λ)I)⁻¹∇ℓ(z)`` (dense for the small model, converged CG for the large one) and (b) the actual
change of the query loss after T steps of full-batch gradient descent (lr 1/λ_max) with the example removed
(``groundtruth.actual_changes``). Peers run in the benchmark environment (benchmarks/setup_peers.sh):

    OMP_NUM_THREADS=1 .benchenv/bin/python benchmarks/peers.py --hidden 32
    OMP_NUM_THREADS=1 .benchenv/bin/python benchmarks/peers.py --hidden 1600 --skip exact

A peer that is not installed or fails is listed with its error, not dropped silently.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import threading
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from peer_methods import (  # benchmarks/ is on the path (run as a script, or imported from it)
    captum_method,
    dattri_method,
    kronfluence_method,
    pydvl_method,
    warm_imports,
)
from peers_report import INPUTS, arch, render, render_scaling, render_summary, verdict  # noqa: F401  (re-exported)
from scipy.stats import spearmanr
from torch import nn

import ifscope
from ifscope.estimators import METHODS
from ifscope.recipes.digits import digits_data
from ifscope.truth.groundtruth import actual_changes
from ifscope.truth.training import Schedule, load_params, make_batches, train


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_measured(fn: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, float, float]:
    """``(result, seconds, peak RSS above the start in MB)``; RSS is sampled every 2 ms on a thread."""
    start, peak, done = rss_mb(), [0.0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_mb())
            time.sleep(0.002)
    th = threading.Thread(target=sample, daemon=True)
    th.start()
    t0 = time.perf_counter()
    try:
        out = fn()
    finally:
        seconds = time.perf_counter() - t0
        done.set()
        th.join()
    return out, seconds, max(0.0, max(peak[0], rss_mb()) - start)


def mean_spearman(scores: torch.Tensor, target: torch.Tensor) -> float:
    """Mean over queries (rows) of the Spearman correlation between two ``[queries, examples]`` arrays."""
    vals = [spearmanr(a, b).statistic for a, b in zip(scores.double().numpy(), target.double().numpy())]
    return float(np.nanmean(vals))


# ---- ifscope -------------------------------------------------------------------------------------------------
IFSCOPE_OPTIONS = {  # how the benchmark configures each method it knows; others in METHODS are reported as skipped
    "exact": {},
    "cg": {"cg_iterations": 100},
    "lissa": {"depth": 100},
    "arnoldi": {"rank": 50, "iterations": 100, "block": 1, "ritz_tol": None},  # the peers' setting: every iteration
    "graddot": {},
    "horizon": {"horizon": 100},
}
HORIZON = ("krylov=4", "solver=block")  # the query side: one block Krylov space from all 20 query gradients


ABIF = ("rank=64", "iterations=128", "block=16", "hessian_samples=256", "projection_dtype=bfloat16")


def ifscope_method(method: str, task, train_ds, queries, wd: float, damping: float, **opts):
    def go():
        inf = ifscope.Influence(task, train_ds, method=method, weight_decay=wd, damping=damping, progress=False,
                                batch_size=256, **opts)
        go.inf = inf  # type: ignore[attr-defined]  # read after the timing: the fitted object, its costs
        return inf.scores(queries)
    return go


def parse_options(pairs: list[str]) -> dict:
    """``["rank=100", "projection_dtype=bfloat16"]`` → ``{"rank": 100, "projection_dtype": "bfloat16"}``."""
    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def method_table(args, task, train_ds, queries, wd: float, lam: float, reg: float, top: float
                 ) -> dict[str, Callable]:
    """Method name → a run (ifscope) or a factory that takes its own copy of the model (peers)."""
    methods: dict[str, Callable] = {}  # ifscope: a run; peers: a factory taking their own copy of the model
    for name in METHODS:
        if name in IFSCOPE_OPTIONS and name not in args.skip and f"ifscope {name}" not in args.skip:
            opts = dict(IFSCOPE_OPTIONS[name])
            if name == "arnoldi":
                opts.update(rank=args.rank, iterations=2 * args.rank)
            if name == "horizon":
                opts.update(lr=1.0 / top, **parse_options(args.horizon))
            methods[f"ifscope {name}"] = ifscope_method(name, task, train_ds, queries, wd,
                                                        0.0 if name == "arnoldi" else lam, **opts)
    if "defaults" not in args.skip:  # ABIF as a user gets it without options (the library's rank and iterations)
        methods["ifscope defaults"] = ifscope_method("arnoldi", task, train_ds, queries, wd, 0.0)
    if "abif" not in args.skip:  # ABIF as ifscope runs it fast: block Krylov on a Hessian sample, bf16 projections
        methods["ifscope abif"] = ifscope_method("arnoldi", task, train_ds, queries, wd, 0.0, **parse_options(args.abif))
    peers = {
        "dattri arnoldi": lambda m: dattri_method("arnoldi", m, train_ds, queries, reg, args.rank),
        "dattri cg": lambda m: dattri_method("cg", m, train_ds, queries, reg, args.rank),
        "dattri lissa": lambda m: dattri_method("lissa", m, train_ds, queries, reg, args.rank),
        "dattri explicit": lambda m: dattri_method("explicit", m, train_ds, queries, reg, args.rank),
        "dattri datainf": lambda m: dattri_method("datainf", m, train_ds, queries, reg, args.rank),
        "kronfluence ekfac": lambda m: kronfluence_method(m, train_ds, queries, reg, "ekfac"),
        "kronfluence kfac": lambda m: kronfluence_method(m, train_ds, queries, reg, "kfac"),
        "captum naive": lambda m: captum_method(m, train_ds, queries, reg),
        "pydvl cg": lambda m: pydvl_method("cg", m, train_ds, queries, reg, args.rank),
        "pydvl arnoldi": lambda m: pydvl_method("arnoldi", m, train_ds, queries, reg, args.rank),
        "pydvl direct": lambda m: pydvl_method("direct", m, train_ds, queries, reg, args.rank),
    }
    for name, make in peers.items():
        if name.split()[1] not in args.skip and name not in args.skip:
            methods[name] = make
    return methods


def mlp(hidden: list[int], inputs: int = 64) -> nn.Module:
    """The MLP ``inputs`` (64 digits pixels, 40 mnist1d samples) → hidden[0] → … → 10 with tanh between layers."""
    widths = [inputs, *hidden, 10]
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.Tanh()]
    return nn.Sequential(*layers[:-1])


def mnist1d_data(n_train: int, n_test: int, seed: int = 0) -> tuple[tuple, tuple]:
    """``(train, test)`` of mnist1d (40-sample 1-D signals of 10 digit templates), generated offline by its own
    ``make_dataset`` with the library's default distortions and ``seed``."""
    from mnist1d.data import get_dataset_args, make_dataset
    args = get_dataset_args()
    args.num_samples, args.train_split, args.seed = n_train + n_test, n_train / (n_train + n_test), seed
    d = make_dataset(args)
    return ((torch.tensor(d["x"], dtype=torch.float32), torch.tensor(d["y"], dtype=torch.long)),
            (torch.tensor(d["x_test"], dtype=torch.float32), torch.tensor(d["y_test"], dtype=torch.long)))


def embedding_vs_floor(inf, model: nn.Module, train_ds, batch_size: int = 256, repeats: int = 5,
                       graddot: Callable | None = None) -> dict:
    """Best-of-``repeats`` seconds of the fitted ABIF's training-set embedding (streamed anew each time), and of
    ``graddot`` (a whole graddot run: fit and scores) when given, against the per-example-gradient floor
    (``vmap(grad)`` per-example gradients of the training set, nothing else) and one forward + backward epoch, all at
    ``batch_size``; they are timed in turn, so that they see the same load, by wall clock and by process CPU time (the
    ratios are taken on CPU time: on a shared machine, time spent descheduled is not the method's; on an idle
    one-thread run the two agree)."""
    from ifscope.core.data import as_dataset, batches
    from ifscope.core.projection import per_example_grad_dict

    def best(*fns) -> tuple[list[float], list[float]]:
        wall, cpu = [float("inf")] * len(fns), [float("inf")] * len(fns)
        for _ in range(repeats):
            for i, fn in enumerate(fns):
                t0, c0 = time.perf_counter(), time.process_time()
                fn()
                wall[i] = min(wall[i], time.perf_counter() - t0)
                cpu[i] = min(cpu[i], time.process_time() - c0)
        return wall, cpu
    params, rest = inf.task.state(inf.dtype)
    data = as_dataset(train_ds, "train")

    def floor():
        for _, batch in batches(data, batch_size):
            per_example_grad_dict(inf.task, params, rest, inf.task.cast(batch, inf.dtype, inf.device))

    def epoch():
        for _, (x, y) in batches(data, batch_size):
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
        model.zero_grad(set_to_none=True)
    inf.cache_budget, inf._train_emb = 0, None  # every call embeds the training set anew
    fns = (inf.train_embeddings, floor, epoch) + (() if graddot is None else (graddot,))
    wall, cpu = best(*fns)
    (embed_s, floor_s, epoch_s), (embed_cpu, floor_cpu, epoch_cpu) = wall[:3], cpu[:3]
    out = {"embed_s": embed_s, "per_example_floor_s": floor_s, "epoch_s": epoch_s, "ratio_wall": embed_s / floor_s,
           "embed_cpu_s": embed_cpu, "per_example_floor_cpu_s": floor_cpu, "epoch_cpu_s": epoch_cpu,
           "ratio": embed_cpu / floor_cpu,
           "path": inf.estimator.path_choice.path, "rank": len(inf.estimator.eigenvalues),
           "projection_dtype": inf.config["projection_dtype"] or str(inf.dtype).replace("torch.", "")}
    if graddot is not None:
        out.update(graddot_s=wall[3], graddot_cpu_s=cpu[3], graddot_ratio=cpu[3] / floor_cpu)
    return out


def checkpoint(args, n_train: int):
    """The digits MLP trained to the checkpoint on ``n_train`` examples; queries; top Hessian eigenvalue (+ wd)."""
    torch.manual_seed(0)
    train_ds, test_ds = digits_data(n_train, 300)[:2] if args.data == "digits" else mnist1d_data(n_train, 300)
    queries = (test_ds[0][: args.queries], test_ds[1][: args.queries])
    model = mlp(args.hidden, INPUTS[args.data])
    task = ifscope.classification(model)
    res = train(task, train_ds, steps=args.train_steps, lr=0.02, optimizer="adam", weight_decay=args.weight_decay)
    load_params(model, res.params)
    model.eval()
    top = ifscope.Influence(task, train_ds, method="arnoldi", rank=1, iterations=30, weight_decay=args.weight_decay,
                            progress=False).fit().estimator.eigenvalues.max().item() + args.weight_decay
    return model, task, train_ds, queries, top


def scaling(args) -> dict:
    """Seconds of each method (fit + scores) against the number of training examples; no references. Returns
    ``{"seconds": {method: {N: seconds, or "failed (Error)"}}}`` with the run's facts."""
    table: dict[str, dict[int, float | str]] = {}
    for n in args.scaling:
        model, task, train_ds, queries, top = checkpoint(args, n)
        wd, lam = args.weight_decay, args.damping
        for name, fn in method_table(args, task, train_ds, queries, wd, lam, wd + lam, top).items():
            try:
                fn = fn if name.startswith("ifscope") else fn(copy.deepcopy(model))
                _, cell, _ = run_measured(fn)
            except Exception as exc:
                cell = f"failed ({type(exc).__name__})"
            table.setdefault(name, {})[n] = cell
            print(json.dumps({"method": name, "n_train": n, "seconds": cell}), flush=True)
    out = {"args": vars(args), "threads": torch.get_num_threads(), "torch": torch.__version__, "seconds": table}
    print(render_scaling(out))
    return out


# ---- the run -------------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden", type=int, nargs="+", default=[32],
                    help="hidden widths of the digits MLP 64 → h1 → … → 10 (256 256: the wide MLP, 85,002 parameters)")
    ap.add_argument("--data", choices=tuple(INPUTS), default="digits",
                    help="digits (sklearn, 64 pixels) or mnist1d (40-sample signals, made offline by mnist1d)")
    ap.add_argument("--n-train", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--ids", type=int, default=40, help="training examples removed for the ground truth")
    ap.add_argument("--steps", type=int, nargs="+", default=[10, 100], help="ground-truth horizons T")
    ap.add_argument("--train-steps", type=int, default=1500, help="full-batch Adam steps to the checkpoint")
    ap.add_argument("--weight-decay", type=float, default=1e-3)
    ap.add_argument("--damping", type=float, default=1e-3)
    ap.add_argument("--rank", type=int, default=50, help="kept eigenpairs for the Arnoldi methods")
    ap.add_argument("--abif", nargs="*", default=list(ABIF), help="options of the 'ifscope abif' row (key=value)")
    ap.add_argument("--horizon", nargs="*", default=list(HORIZON),
                    help="extra options of the 'ifscope horizon' row (key=value)")
    ap.add_argument("--skip", nargs="*", default=[],
                    help="method names to leave out (e.g. exact on a big model; 'reference' drops the exact/CG "
                         "reference, 'abif' the fast ABIF row)")
    ap.add_argument("--ref-tol", type=float, default=1e-6, help="CG tolerance of the reference when exact is skipped")
    ap.add_argument("--scaling", type=int, nargs="*", default=[],
                    help="only time every method at these training-set sizes (at most 1497 digits)")
    ap.add_argument("--render", default=None, help="only print the table of a --json file written before")
    ap.add_argument("--json", default=None, help="also write the rows here")
    args = ap.parse_args()
    if args.render:
        with open(args.render) as fh:
            saved = json.load(fh)
        return print(render(saved["rows"], saved["args"]["steps"]))
    warm_imports()
    if args.scaling:
        out = scaling(args)
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(out, fh, indent=2)
        return
    model, task, train_ds, queries, top = checkpoint(args, args.n_train)
    n_params = sum(p.numel() for p in model.parameters())
    wd, lam = args.weight_decay, args.damping
    reg = wd + lam  # peers do not see the weight decay: it goes into their damping

    # references: exact damped influence, and the ground truth of continued training
    exact_name = "none" if "reference" in args.skip else "exact" if "exact" not in args.skip else "cg"
    ref_opts = {} if exact_name == "exact" else {"cg_iterations": 1000, "tol": args.ref_tol}
    if exact_name == "none":  # a large model where even converged CG is too slow: ground truth only
        exact, exact_s = torch.full((args.queries, args.n_train), float("nan")), 0.0
    else:
        exact, exact_s, _ = run_measured(ifscope_method(exact_name, task, train_ds, queries, wd, lam, **ref_opts))
    ids = torch.randperm(args.n_train, generator=torch.Generator().manual_seed(1))[: args.ids]
    sched = Schedule(make_batches(args.n_train, max(args.steps), None, 0), lr=1.0 / top, weight_decay=wd)
    t0 = time.perf_counter()
    gt = actual_changes(task, train_ds, queries, ids, args.steps, sched, mode="remove", progress=False)
    gt_s = time.perf_counter() - t0

    methods = method_table(args, task, train_ds, queries, wd, lam, reg, top)

    rows = []
    for name, fn in methods.items():
        row = {"method": name}
        try:
            if not name.startswith("ifscope"):
                # each peer gets its own copy: kronfluence rewires the model's modules in place
                fn = fn(copy.deepcopy(model))
            scores, seconds, mem = run_measured(fn)
            scores = torch.as_tensor(scores).detach().float().cpu()
            if scores.shape != exact.shape:
                raise RuntimeError(f"score matrix of shape {tuple(scores.shape)}, expected {tuple(exact.shape)}")
            row.update(seconds=seconds, peak_mb=mem,
                       vs_exact=mean_spearman(scores, exact) if exact_name != "none" else float("nan"))
            for t, step in enumerate(gt.steps):
                row[f"vs_gt_T{step}"] = mean_spearman(scores[:, ids], gt.delta[t].T)
            est = getattr(getattr(fn, "inf", None), "estimator", None)
            if getattr(est, "sample_checks", None):  # an ifscope fit on a Hessian sample: its measured drift
                row.update(sample_drift=est.sample_checks[-1]["drift"], samples=est.sample_checks[-1]["hessian_samples"],
                           warned=any("Hessian sample" in w for w in est.warnings))
            cost = getattr(est, "query_cost", None)
            if cost and cost["queries"]:  # the horizon method's query side: curvature products and seconds per query
                row.update(query_products=cost["products"] / cost["queries"],
                           query_s=cost["seconds"] / cost["queries"])
        except Exception as exc:  # a peer's failure is a result to report
            row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}"
        rows.append(row)
        print(json.dumps(row), flush=True)

    print(f"\n{args.data} MLP {arch(args.hidden, args.data)} ({n_params:,} parameters), {args.n_train} training examples × "
          f"{args.queries} queries, torch {torch.__version__}, {torch.get_num_threads()} thread(s); weight decay {wd}, "
          f"damping {lam}; reference '{exact_name}' took {exact_s:.2f} s; ground truth: remove each of {args.ids} "
          f"examples, full-batch GD lr 1/λ_max = {1 / top:.3g}, T = {gt.steps} ({gt_s:.1f} s)")
    print(render(rows, gt.steps))
    summary = {"verdict": verdict(rows, max(gt.steps)),
               "verdicts": [verdict(rows, t, name) for name in ("ifscope abif", "ifscope defaults") for t in gt.steps]}
    abif = getattr(methods.get("ifscope abif"), "inf", None)
    if abif is not None:
        summary["embedding"] = embedding_vs_floor(abif, model, train_ds, graddot=methods.get("ifscope graddot"))
    print(render_summary(summary, rows))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "params": n_params, "threads": torch.get_num_threads(),
                       "torch": torch.__version__, "reference_s": exact_s, "ground_truth_s": gt_s,
                       "lr": 1 / top, "rows": rows, **summary}, fh, indent=2)


if __name__ == "__main__":
    main()
