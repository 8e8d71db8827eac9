"""Markdown tables for docs/experiments.md, generated from the ``fade.json`` of each ``ifscope fade`` run (never retyped).

Each run directory ``DIR/NAME/`` holds ``fade.json`` and ``fade.png``; the table of run NAME replaces the text
between ``<!-- table NAME -->`` and ``<!-- /table -->`` in the document, and its figure is copied to
``FIGURES/fade-NAME.png``.

    python benchmarks/experiments_tables.py --doc docs/experiments.md --figures docs/figures runs/experiments/*/
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
from pathlib import Path


def _num(v: float | None, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:.{digits}f}".replace("-", "−")


def _sci(v: float) -> str:
    return f"{v:.1e}".replace("-", "−")


def table(fade: dict, name: str) -> str:
    """The run's setting in one line, Pearson per method and T (with T½), per-query Spearman, the gap, the noise."""
    steps = fade["steps"]
    how = "full-batch GD" if fade.get("train_batch_size") is None else f"SGD, batch {fade['train_batch_size']}"
    mode = "removal" if fade["mode"] == "remove" else f"up-weighting by ε = {fade['epsilon']:g}"
    where = (f", influence over the last {fade['last_blocks']} block(s) ({fade['parameters']:,} parameters), "
             f"prefix cached at block {fade['prefix']['start_block']}" if fade.get("prefix", {}).get("cached")
             else f", all {fade.get('parameters', 0):,} parameters replayed")
    lines = [f"`{name}`: {fade['recipe']}, {mode}, {how}, lr {fade['lr']:.3g}, {fade['n_ids']} ids × "
             f"{fade['n_queries']} queries{where}; methods in {fade.get('dtype')}, ground truth in "
             f"{fade.get('truth_dtype')} (replicas by {fade.get('batching')}); {fade['seconds']:.0f} s on "
             f"{fade.get('threads')} thread(s), of which ground truth {fade.get('truth_seconds', float('nan')):.0f} s.",
             "",
             "| Pearson | " + " | ".join(f"T={t}" for t in steps) + " | T½ |",
             "|---|" + "---:|" * (len(steps) + 1)]
    for method, row in fade["methods"].items():
        half = row.get("horizon_half")
        half = f"> {steps[-1]}" if half is None and row["pearson"][0] > 0 else ("n/a" if half is None else f"{half:.0f}")
        lines.append(f"| {method} | " + " | ".join(_num(v) for v in row["pearson"]) + f" | {half} |")
    lines.append("| *Spearman per query, best* | " + " | ".join(
        _num(max(r["spearman_per_query"][k] for r in fade["methods"].values())) for k in range(len(steps))) + " | |")
    lines.append("| *parameter gap* | " + " | ".join(_sci(g) for g in fade["gap"]) + " | |")
    noise = fade.get("noise_floor")
    if noise:
        lines.append("| *noise floor / signal* | " + " | ".join(_sci(r) for r in noise["ratio"]) + " | |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="run directories holding fade.json (and fade.png)")
    p.add_argument("--doc", type=Path, help="markdown file whose <!-- table NAME --> blocks are replaced")
    p.add_argument("--figures", type=Path, help="folder to copy each run's fade.png into as fade-NAME.png")
    args = p.parse_args()
    doc = args.doc.read_text() if args.doc else None
    for run in args.runs:
        name = run.name
        text = table(json.loads((run / "fade.json").read_text()), name)
        if args.figures and (run / "fade.png").is_file():
            args.figures.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(run / "fade.png", args.figures / f"fade-{name}.png")
        if doc is None:
            print(text, "\n")
            continue
        pattern = re.compile(rf"(<!-- table {re.escape(name)} -->\n).*?(<!-- /table -->)", re.S)
        if not pattern.search(doc):
            raise SystemExit(f"{args.doc} has no block <!-- table {name} --> ... <!-- /table -->")
        doc = pattern.sub(lambda m, text=text: m.group(1) + text + "\n" + m.group(2), doc)
    if doc is not None:
        args.doc.write_text(doc)


if __name__ == "__main__":
    main()
