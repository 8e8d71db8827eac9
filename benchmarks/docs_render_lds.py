"""How the stored runs of ``benchmarks/lds.py`` are rendered: one task's runs (retrained from scratch, continued T
steps) side by side, and issue 23's targets (ifscope's best method against the best peer, per task and retraining)."""

from __future__ import annotations

import math
from typing import Any

from docs_render import num


def how(d: dict[str, Any]) -> str:
    """``scratch`` or ``continue T = 100``: the retraining of a run."""
    a = d["args"]
    return "scratch" if a["retrain"] == "scratch" else f"continue T = {a['steps']}"


def secs(x: float) -> str:
    """Seconds to one decimal, or two below 0.1 s."""
    return f"{x:.1f}" if x >= 0.1 else f"{x:.2f}"


def rows(d: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["method"]: r for r in d["rows"]}


def lds_ci(r: dict[str, Any], target: str = "loss") -> str:
    """``0.955 [0.951, 0.959]``: a row's LDS with its bootstrap interval."""
    lo, hi = r[target]["ci"]
    return f"{num(r[target]['ifscope'])} [{num(lo)}, {num(hi)}]"


def _label(name: str, r: dict[str, Any], total: int | None) -> str:
    """The method's name, with the share of the parameters it scores over when that is not all of them."""
    p = r.get("parameters")
    return name if total is None or p is None or p == total else f"{name} ({p:,} of {total:,} parameters)"


def _order(runs: list[dict[str, Any]]) -> list[str]:
    """ifscope's methods, then the peers', each in the order the runs list them."""
    names: list[str] = []
    for d in runs:
        names += [r["method"] for r in d["rows"] if r["method"] not in names]
    return sorted(names, key=lambda n: (not n.startswith("ifscope "), names.index(n)))


def _caption(d: dict[str, Any]) -> str:
    a, m = d["args"], d["_meta"]
    seeds = f", {a['seeds']} seed(s) per subset" if a["retrain"] == "scratch" else ""
    agree = d.get("seed_agreement")
    n = f" {d['n_train']:,}" if "n_train" in d else ""
    return (f"{how(d)}: `{m['command']}`; {a['subsets']} subsets of {a['fraction']:g} of the{n} training "
            f"examples{seeds}, {a['queries']} queries"
            + ("" if agree is None else f"; retraining-seed agreement {num(agree)}")
            + f"; ifscope's LDS and dattri.metric.lds differ by at most {d['worst_diff']:.1e} per query; "
              f"{m['threads']} thread(s), {m['seconds']:.0f} s in all, {m['machine']}, {m['date']}")


def lds_pair(results: dict[str, dict[str, Any]]) -> str:
    """One task's ``benchmarks/lds.py`` runs side by side: per method, each run's LDS on the loss (95 % CI), on the
    margin and seconds (fit + scores); the best LDS of each run in bold, failures listed below."""
    runs = list(results.values())
    heads = [how(d) for d in runs]
    total = runs[0].get("parameters")
    lines = ["| method | " + " | ".join(f"LDS, {h} (95 % CI) | margin | s" for h in heads) + " |",
             "|---|" + "---:|---:|---:|" * len(runs)]
    best = [max((r["loss"]["ifscope"] for r in d["rows"] if "loss" in r), default=None) for d in runs]
    failures = []
    for name in _order(runs):
        cells: list[str] = []
        shown = None
        for d, b, h in zip(runs, best, heads):
            r = rows(d).get(name)
            shown = shown or r
            if r is None:
                cells += ["", "", ""]
            elif "error" in r:
                cells += ["failed", "", ""]
                failures.append(f"{name} ({h}): {r['error']}")
            else:
                v = lds_ci(r)
                cells += ["**" + v + "**" if r["loss"]["ifscope"] == b else v,
                          num(r["margin"]["ifscope"]) if "margin" in r else "–", secs(r["seconds"])]
        lines.append(f"| {_label(name, shown or {}, total)} | " + " | ".join(cells) + " |")
    out = "\n".join(lines) + "\n\n" + "  \n".join(_caption(d) for d in runs) + "."
    return out + ("\n\nFailed: " + "; ".join(f"{f}" for f in failures) + "." if failures else "")


def _ok(d: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows with a score to compare: not failed, and not NaN (dattri's Arnoldi on digits-cnn returns NaN)."""
    return [r for r in d["rows"] if "loss" in r and math.isfinite(r["loss"]["ifscope"])]


def verdict(d: dict[str, Any]) -> dict[str, Any]:
    """Issue 23's target on one run: the best ifscope row, the best peer row, and the cheapest ifscope row whose
    interval reaches the best peer's LDS (``None`` if none does)."""
    ours = [r for r in _ok(d) if r["method"].startswith("ifscope ")]
    peers = [r for r in _ok(d) if not r["method"].startswith("ifscope ")]
    best = max(ours, key=lambda r: r["loss"]["ifscope"])
    peer = max(peers, key=lambda r: r["loss"]["ifscope"]) if peers else None
    reach = [r for r in ours if peer is None or r["loss"]["ci"][1] >= peer["loss"]["ifscope"]]
    return {"best": best, "peer": peer, "cheapest": min(reach, key=lambda r: r["seconds"]) if reach else None}


def _cell(r: dict[str, Any] | None) -> str:
    return "–" if r is None else f"{r['method']}: {lds_ci(r)}, {secs(r['seconds'])} s"


def lds_targets(results: dict[str, dict[str, Any]]) -> str:
    """Per task and retraining: ifscope's best method, the best peer, the cheapest ifscope method whose interval
    reaches the best peer's LDS, and whether that one costs no more seconds than the peer (issue 23's target)."""
    lines = ["| task | retraining | ifscope's best | best peer | cheapest ifscope method reaching the best peer | "
             "target met |", "|---|---|---|---|---|---|"]
    for d in results.values():
        v = verdict(d)
        peer, cheap = v["peer"], v["cheapest"]
        met = ("no peer" if peer is None else "no: none reaches it" if cheap is None else
               "yes" if cheap["seconds"] <= peer["seconds"] else "no: slower")
        lines.append(f"| {d['args']['recipe']} | {how(d)} | {_cell(v['best'])} | {_cell(peer)} | {_cell(cheap)} | "
                     f"{met} |")
    return "\n".join(lines) + ("\n\nLDS on the loss with its 95 % bootstrap interval over queries; seconds: fit + "
                               "scores of that method; \"reaching\": the interval's upper end at or above the best "
                               "peer's LDS; each row's run is rendered above with its command.")


def lds_of(d: dict[str, Any], method: str) -> str:
    """A figure: ``0.955 [0.951, 0.959]``, one method's LDS in one run."""
    return lds_ci(rows(d)[method])


def seconds_of(d: dict[str, Any], method: str) -> str:
    return f"{secs(rows(d)[method]['seconds'])} s"


def peer_name(kind: str) -> str:
    """The row name benchmarks/lds.py gives a peer ``kind`` (``trak-10`` → ``dattri TRAK-10``)."""
    if kind.startswith(("kronfluence-", "pydvl-")):
        return kind.replace("-", " ")
    return f"dattri {kind.replace('trak-', 'TRAK-')}"


def slug(name: str) -> str:
    """A row name as a figure's suffix: ``ifscope kfac`` → ``kfac``, ``kronfluence ekfac`` → ``kronfluence-ekfac``."""
    return name.removeprefix("ifscope ").replace(" ", "-")

