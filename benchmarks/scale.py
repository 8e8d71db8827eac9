"""What `ifscope top` costs on tweets-minilm as the training set grows: N = 2,000 tweets to all ~38k.

For each configuration (N, last_blocks), in a fresh process (peak RSS is per process), with the recipe's influence
defaults (arnoldi, rank 8, 20 iterations on a 64-tweet Hessian sample, batches of 32, per-example-gradient (vmap)
projections; ``--projection jvp`` for the other path) and a run
directory, as the command runs them:
  load    the recipe at ``n_train=N`` (cached weights; trained first when the cache has none, and then said)
  floor   one forward + backward pass per example (autograd on the model, gradients of the selected parameters only,
          batches of 32) over the first ``--floor-examples`` training tweets: seconds per example
  fit     the Arnoldi fit
  embed   the training-set embeddings, every tweet, written to the run directory's shards
  top     the top-k proponents and opponents of ``--queries`` test tweets over the stored embeddings
with the peak RSS after each stage, and embed per example / floor per example. Over the configurations it says
whether the embedding's cost grows linearly in N (log-log slope) and whether the memory the influence stages add
above the loaded recipe stays flat.

    OMP_NUM_THREADS=2 PYTHONPATH=src python benchmarks/scale.py --n 2000 8000 all --last-blocks 1 6
    PYTHONPATH=src python benchmarks/scale.py --plot docs/figures/scale.png docs/results/scale-*.json
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

LINEAR = (0.85, 1.15)  # log-log slopes of seconds against N read as linear
FLAT_MB = 256  # growth of the influence stages' own memory across N read as flat


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def floor_per_example(task: Any, data: dict, n: int, batch_size: int, repeats: int = 2) -> float:
    """Best of ``repeats`` timings of forward + backward over the first ``n`` examples, per example: the model's own
    autograd, with ``requires_grad`` on the selected parameters only (restored afterwards)."""
    import torch
    model, selected = task.model, set(task.parameter_names)
    before = {name: p.requires_grad for name, p in model.named_parameters()}
    for name, p in model.named_parameters():
        p.requires_grad_(name in selected)
    best = float("inf")
    try:
        with task.evaluating():  # dropout off, as the embeddings run
            for _ in range(repeats):
                t0 = time.perf_counter()
                for s in range(0, n, batch_size):
                    batch = task.cast({k: v[s:min(s + batch_size, n)] for k, v in data.items()}, torch.float32)
                    args, kwargs = task.inputs(batch)
                    task.loss(task.outputs(model(*args, **kwargs)), task.targets(batch)).mean().backward()
                    model.zero_grad(set_to_none=True)
                best = min(best, time.perf_counter() - t0)
    finally:
        for name, p in model.named_parameters():
            p.requires_grad_(before[name])
    return best / n


def measure(n_train: int | str, last_blocks: int, queries: int, k: int, floor_examples: int,
            projection: str | None = None) -> dict[str, Any]:
    """One configuration, in this process: stage seconds, peak RSS after each stage, embed/floor per example."""
    import tempfile

    import torch

    import ifscope
    from ifscope.recipes import load_recipe
    t0 = time.perf_counter()
    recipe = load_recipe("tweets-minilm", n_train=n_train)
    row: dict[str, Any] = {"n_train": len(recipe.train["labels"]), "last_blocks": last_blocks,
                           "threads": torch.get_num_threads(), "cached_weights": bool(recipe.info["cached"]),
                           "load_s": time.perf_counter() - t0, "rss_load_mb": peak_rss_mb()}
    if not recipe.info["cached"]:
        row["train_s"], row["train_steps"] = recipe.info["train_seconds"], recipe.info["steps"]
    task = ifscope.hf_classification(recipe.model, last_blocks=last_blocks)
    row["params"] = sum(p.numel() for n, p in recipe.model.named_parameters() if n in set(task.parameter_names))
    opts = {key: v for key, v in recipe.defaults["influence"].items() if key not in ("last_blocks", "method")}
    opts["projection"] = projection or opts["projection"]
    row.update(rank=opts["rank"], iterations=opts["iterations"], hessian_samples=opts["hessian_samples"],
               batch_size=opts["batch_size"], projection=opts["projection"], queries=queries, k=k)
    row["floor_examples"] = min(floor_examples, row["n_train"])
    row["floor_per_example_ms"] = 1e3 * floor_per_example(task, recipe.train, row["floor_examples"],
                                                          opts["batch_size"])
    row["rss_floor_mb"] = peak_rss_mb()
    test = {key: v[:queries] for key, v in recipe.test.items()}
    with tempfile.TemporaryDirectory() as workdir:
        inf = ifscope.Influence(task, recipe.train, method="arnoldi", workdir=workdir, progress=False,
                                weight_decay=recipe.info["weight_decay"], **opts)
        for stage, call in (("fit", inf.fit), ("embed", inf.train_embeddings), ("top", lambda: inf.top(test, k=k))):
            t0 = time.perf_counter()
            call()
            row[f"{stage}_s"], row[f"rss_{stage}_mb"] = time.perf_counter() - t0, peak_rss_mb()
    row["embed_per_example_ms"] = 1e3 * row["embed_s"] / row["n_train"]
    row["embed_over_floor"] = row["embed_per_example_ms"] / row["floor_per_example_ms"]
    row["top_command_s"] = row["load_s"] + row["fit_s"] + row["embed_s"] + row["top_s"]  # what `ifscope top` runs
    row["influence_mb"] = row["rss_top_mb"] - row["rss_floor_mb"]  # what fit, embed and top add to the process
    return row


def slope(rows: list[dict[str, Any]], key: str) -> float | None:
    """Least-squares slope of log(row[key]) against log(N): 1 = linear in N."""
    xs = [math.log(r["n_train"]) for r in rows]
    ys = [math.log(r[key]) for r in rows]
    if len(set(xs)) < 2:
        return None
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def verdict(rows: list[dict[str, Any]]) -> list[str]:
    """Per last_blocks: whether the embedding's seconds grow linearly in N, and whether the memory the influence stages
    add stays flat; one sentence each (none where a single N was measured)."""
    lines = []
    for lb, path in sorted({(r["last_blocks"], r.get("projection", "")) for r in rows}):
        group = sorted((r for r in rows if (r["last_blocks"], r.get("projection", "")) == (lb, path)),
                       key=lambda r: r["n_train"])
        s = slope(group, "embed_s")
        if s is None:
            continue
        span = f"N = {group[0]['n_train']:,} to {group[-1]['n_train']:,}"
        linear = LINEAR[0] <= s <= LINEAR[1]
        growth = max(r["influence_mb"] for r in group) - min(r["influence_mb"] for r in group)
        total = group[-1]["rss_top_mb"] - group[0]["rss_top_mb"]
        lines.append(f"last_blocks={lb}{', ' + path if path else ''}, {span}: embedding seconds ∝ N^{s:.2f} ("
                     f"{'linear' if linear else 'NOT linear'}); the influence stages' memory "
                     f"{'stays flat' if growth <= FLAT_MB else 'does NOT stay flat'} (spread {growth:.0f} MB), peak "
                     f"RSS {group[0]['rss_top_mb']:.0f} → {group[-1]['rss_top_mb']:.0f} MB ({total:+.0f} MB: the "
                     "recipe's tokenized tweets and texts)")
    return lines


def targets(rows: list[dict[str, Any]]) -> list[str]:
    """Issue 22's targets on the measured rows: at the largest N with the last block, the stages of `ifscope top`
    ≤ 10 minutes and ≤ 4 GB peak RSS; the embedding ≤ 3× the floor per example at every N (last block)."""
    last = sorted((r for r in rows if r["last_blocks"] == 1), key=lambda r: r["n_train"])
    if not last:
        return []
    last = [r for r in last if r.get("projection") == last[-1].get("projection")]  # the path run at the largest N
    big, worst = last[-1], max(r["embed_over_floor"] for r in last)
    met = {True: "met", False: "NOT met"}
    return [f"target at N = {big['n_train']:,}, last block: `ifscope top`'s stages {big['top_command_s']:.0f} s "
            f"(≤ 600 s: {met[big['top_command_s'] <= 600]}), peak RSS {big['rss_top_mb']:.0f} MB "
            f"(≤ 4096 MB: {met[big['rss_top_mb'] <= 4096]})",
            f"target embedding ≤ 3× the floor (last block): at most {worst:.2f}× ({met[worst <= 3]})"]


def plot(results: list[dict[str, Any]], out: Path) -> None:
    """Log-log: seconds of fit, embedding and top-k, and peak RSS, against N, one line per last_blocks."""
    from matplotlib.figure import Figure
    rows = [r for d in results for r in d["rows"]]
    fig = Figure(figsize=(9.6, 3.6))
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for i, (lb, path) in enumerate(sorted({(r["last_blocks"], r["projection"]) for r in rows})):
        group = sorted((r for r in rows if (r["last_blocks"], r["projection"]) == (lb, path)), key=lambda r: r["n_train"])
        ns = [r["n_train"] for r in group]
        for key, style in (("embed_s", "-"), ("fit_s", ":"), ("top_s", "--")):
            left.plot(ns, [r[key] for r in group], style, marker="o", ms=3, color=f"C{i}",
                      label=f"{key[:-2]}, last {lb} block(s), {path}")
        right.plot(ns, [r["rss_top_mb"] for r in group], "-", marker="o", ms=3, color=f"C{i}",
                   label=f"peak RSS, last {lb} block(s), {path}")
    from matplotlib.ticker import NullFormatter
    for ax, what in ((left, "seconds"), (right, "peak RSS, MB")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # the minor ticks' labels overlap on a short log axis
        ax.set_xlabel("training tweets N")
        ax.set_ylabel(what)
        ax.legend(fontsize=6, loc="upper left", framealpha=0.6)
    left.set_title("tweets-minilm: seconds per stage", fontsize=9)
    right.set_title("memory", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def _parse_n(text: str) -> int | str:
    return text if text == "all" else int(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=_parse_n, nargs="+", default=[2000, 8000, "all"], help="training tweets, or 'all'")
    ap.add_argument("--last-blocks", type=int, nargs="+", default=[1, 6])
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--floor-examples", type=int, default=512)
    ap.add_argument("--projection", choices=["jvp", "vmap", "auto"], default=None, help="default: the recipe's")
    ap.add_argument("--json", default=None, help="write the rows and the verdict to this file")
    ap.add_argument("--plot", nargs="+", default=None, metavar=("OUT.png", "RESULT.json"),
                    help="draw the log-log figure from stored results instead of measuring")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # measure one configuration here
    args = ap.parse_args()
    if args.plot:
        plot([json.loads(Path(p).read_text()) for p in args.plot[1:]], Path(args.plot[0]))
        return
    if args.one:
        print(json.dumps(measure(args.n[0], args.last_blocks[0], args.queries, args.k, args.floor_examples,
                                 args.projection)))
        return
    rows = []
    for n in args.n:
        for lb in args.last_blocks:
            cmd = [sys.executable, __file__, "--one", "--n", str(n), "--last-blocks", str(lb), "--queries",
                   str(args.queries), "-k", str(args.k), "--floor-examples", str(args.floor_examples)]
            cmd += ["--projection", args.projection] if args.projection else []
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit(f"N={n}, last_blocks={lb} failed:\n{proc.stderr[-3000:]}")
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(render_rows(rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
    out = {"rows": rows, "verdict": verdict(rows) + targets(rows)}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
        return
    print(render_rows(rows))
    print("\n".join(out["verdict"]))


def _weights(row: dict[str, Any]) -> str:
    return "cached" if row["cached_weights"] else f"trained ({row['train_steps']} steps, {row['train_s']:.0f} s)"


def render_rows(rows: list[dict[str, Any]]) -> str:
    """The Markdown table of measured configurations."""
    head = ("| N | last blocks | params | projection | weights | load s | fit s | embed s | top-k s | `ifscope top` s | embed ms/ex "
            "| floor ms/ex | embed / floor | peak RSS MB: load, fit, embed, top |\n"
            "|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    body = [f"| {r['n_train']:,} | {r['last_blocks']} | {r['params'] / 1e6:.1f}M | {r['projection']} | "
            f"{_weights(r)} | "
            f"{r['load_s']:.0f} | {r['fit_s']:.1f} | {r['embed_s']:.1f} | {r['top_s']:.1f} | {r['top_command_s']:.0f} | "
            f"{r['embed_per_example_ms']:.1f} | {r['floor_per_example_ms']:.1f} | {r['embed_over_floor']:.2f}× | "
            f"{r['rss_load_mb']:.0f}, {r['rss_fit_mb']:.0f}, {r['rss_embed_mb']:.0f}, {r['rss_top_mb']:.0f} |"
            for r in rows]
    return "\n".join([head, *body])


if __name__ == "__main__":
    main()
