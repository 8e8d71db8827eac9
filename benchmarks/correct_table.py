"""Markdown tables from ``ifscope correct --json`` outputs (one file per recipe and seed), so that no figure in the
docs is retyped:

    ifscope correct --recipe digits-cnn --seed 0 --json --workdir runs/c0 > runs/cnn-0.json
    python benchmarks/correct_table.py runs/cnn-0.json runs/cnn-1.json ...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

SELECTIONS = ("influence", "random", "random_same_class", "query_itself")


def rows(doc: dict) -> list[str]:
    """One row per run: budget, fix rates of every selection, ratio to random-k, held-out drop and cost."""
    c, fr = doc["config"], doc["fix_rate"]
    inf = doc.get("influence", {})
    before = doc["heldout_accuracy"]["before"]
    drop = {m: 100 * (before - s["heldout_accuracy_after"]) for m, s in doc["methods"].items()}
    ratio = fr["influence"] / fr["random"] if fr.get("random") else float("inf")
    method = inf.get("method", c["method"])
    if method == "arnoldi":
        method += f" r{inf.get('rank')}/{inf.get('iterations')}"
    fixed = sum(q["fixed"] for q in doc["queries"])
    cells = [doc["recipe"], str(c["seed"]), method, f"{c['k']}/{c['steps']}/{c['lr']:.3g}/{c['anchor']}"
             + ("/stop" if c["stop_when_fixed"] else ""), f"{doc['n_queries']}",
             f"**{fr['influence']:.2f}** ({fixed})", *(f"{fr[m]:.2f}" if m in fr else "-" for m in SELECTIONS[1:]),
             f"{ratio:.1f}", f"{drop['influence']:.2f}", f"{drop.get('random', float('nan')):.2f}",
             f"{doc['fit_seconds']:.0f}", f"{doc['seconds']:.0f}"]
    return ["| " + " | ".join(cells) + " |"]


LABELS = {"influence": "influence top-{k} {strategy}", "random": "random {k}", "random_same_class":
          "random {k} of the gold class", "query_itself": "query itself (reference)"}


def per_selection(doc: dict) -> list[str]:
    """One row per selection rule of one run: fix rate (fixed/n), held-out drop, broken, seconds per correction."""
    c, before = doc["config"], doc["heldout_accuracy"]["before"]
    out = ["| selection | fix rate | held-out accuracy drop (points) | broken predictions (mean) | s / correction |",
           "|---|---:|---:|---:|---:|"]
    for m, s in doc["methods"].items():
        fixed = sum(q["methods"][m]["fixed"] for q in doc["queries"])
        rate = f"{s['fix_rate']:.2f} ({fixed}/{doc['n_queries']})"
        out.append(f"| {LABELS[m].format(**c)} | {'**' + rate + '**' if m == 'influence' else rate} | "
                   f"{100 * (before - s['heldout_accuracy_after']):.2f} | {s['broken']:.1f} | {s['seconds']:.3f} |")
    return out


def by_ranking(docs: list[dict]) -> list[str]:
    """One row per run of ``--rank-by`` (checkpoint or unrolled), same recipe, seed and budget: the influence
    selection's fix rate, its ratio to the random-k of the run that drew it, held-out drop and cost."""
    out = ["| recipe | seed | ranked by | k/steps/lr/anchor | mistakes | fix rate (n) | × random | held-out drop (pts) "
           "| shared with checkpoint top-k | s / correction | total s |",
           "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    random = {(d["recipe"], d["settings"]["seed"]): d["fix_rate"]["random"] for d in docs if "random" in d["fix_rate"]}
    checkpoint = {(d["recipe"], d["settings"]["seed"]): {q["index"]: set(q["methods"]["influence"]["selected"])
                                                         for q in d["queries"]}
                  for d in docs if d["settings"].get("rank_by", "checkpoint") == "checkpoint"}
    for d in docs:
        c, s = d["settings"], d["methods"]["influence"]
        fixed = sum(q["fixed"] for q in d["queries"])
        rnd = random.get((d["recipe"], c["seed"]))
        ratio = "-" if rnd is None else "inf" if rnd == 0 else f"{d['fix_rate']['influence'] / rnd:.1f}"
        drop = 100 * (d["heldout_accuracy"]["before"] - s["heldout_accuracy_after"])
        budget = f"{c['k']}/{c['steps']}/{c['lr']:.3g}/{c['anchor']}" + ("/stop" if c["stop_when_fixed"] else "")
        ranked = c.get("rank_by", "checkpoint") + (f" ({d['influence']['method']})"
                                                   if c.get("rank_by", "checkpoint") == "checkpoint" else "")
        ref = checkpoint.get((d["recipe"], c["seed"]), {})
        shared = [len(ref[q["index"]] & set(q["methods"]["influence"]["selected"])) / c["k"]
                  for q in d["queries"] if q["index"] in ref]
        overlap = f"{sum(shared) / len(shared):.2f}" if shared else "-"
        out.append(f"| {d['recipe']} | {c['seed']} | {ranked} | {budget} | {d['n_queries']} | "
                   f"{d['fix_rate']['influence']:.2f} ({fixed}) | {ratio} | {drop:.2f} | {overlap} | "
                   f"{s['seconds']:.2f} | {d['seconds']:.0f} |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--per-selection", action="store_true", help="one table per file, a row per selection rule")
    ap.add_argument("--by-ranking", action="store_true",
                    help="one row per file: checkpoint against unrolled ranking (--rank-by), random-k of the same seed")
    args = ap.parse_args()
    if args.by_ranking:
        print("\n".join(by_ranking([json.loads(f.read_text()) for f in args.files])))
        return
    if args.per_selection:
        for f in args.files:
            print("\n".join(per_selection(json.loads(f.read_text()))) + "\n")
        return
    print("| recipe | seed | influence | k/steps/lr/anchor | mistakes | fix influence (n) | random | same class "
          "| query itself (ref.) | × random | held-out drop (pts) | random's drop | fit s | total s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for f in args.files:
        for line in rows(json.loads(f.read_text())):
            print(line)


if __name__ == "__main__":
    main()
