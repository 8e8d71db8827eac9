"""The diagnosis figures: the spectrum, the gap against T, the remainder against T (drawn from diagnose.json)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ..experiments.diagnose.common import NEGATIVE_HOLD, REMAINDER_HOLD


def _against_t(ax, ylabel: str, title: str) -> None:
    """Log-log axes of a quantity against the horizon T, with its legend."""
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("T (steps of continued training)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()


def _save(fig: Figure, path: Path) -> Path:
    import io

    from ..core.files import atomic_write_bytes
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    return atomic_write_bytes(path, buf.getvalue())


def diagnose_figures(diagnosis: Mapping[str, Any], directory: str | Path) -> list[Path]:
    """``diagnose_spectrum.png``, ``diagnose_gap.png``, ``diagnose_first_order.png`` in ``directory`` for the checks
    the diagnosis holds; returns their paths."""
    directory = Path(directory)
    a = diagnosis["assumptions"]
    paths: list[Path] = []
    if "ritz_top" in a.get("convexity", {}):
        c = a["convexity"]
        fig = Figure(figsize=(6, 3.5))
        ax = fig.add_subplot()
        ax.plot(range(1, len(c["ritz_top"]) + 1), c["ritz_top"], ".", label="Ritz values from the top")
        ax.plot(range(1, len(c["ritz_bottom"]) + 1), c["ritz_bottom"], ".", label="Ritz values from the bottom")
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_yscale("symlog", linthresh=max(abs(c["lambda_max"]) * NEGATIVE_HOLD, 1e-12))
        ax.set_xlabel("Ritz value index (from the extreme inwards)")
        ax.set_ylabel("eigenvalue of H")
        ax.set_title(f"convexity: {c['verdict']}")
        ax.legend()
        paths.append(_save(fig, directory / "diagnose_spectrum.png"))
    if "gap_per_id" in a.get("divergence", {}):
        d = a["divergence"]
        fig = Figure(figsize=(6, 3.5))
        ax = fig.add_subplot()
        for row in d["gap_per_id"]:
            ax.plot(d["steps"], row, color="C0", alpha=0.3, lw=0.8)
        ax.plot(d["steps"], d["gap"], "o-", color="C0", label="mean gap")
        if d["rate"] is not None:
            t = np.asarray(d["steps"], dtype=float)
            r = d["rate"]
            fit = d["fit_scale"] * (t if abs(r) < 1e-12 else np.expm1(r * t) / r)
            ax.plot(d["steps"], fit, "--", color="C1", label=f"fit c(e^(rT)−1)/r, r={r:.3g}")
        _against_t(ax, "‖θ_ε(T) − θ(T)‖", f"divergence: {d['verdict']}")
        paths.append(_save(fig, directory / "diagnose_gap.png"))
    if "remainder" in a.get("first_order", {}):
        f = a["first_order"]
        fig = Figure(figsize=(6, 3.5))
        ax = fig.add_subplot()
        if f.get("remainder_vs_exact"):
            ax.plot(f["steps"], f["remainder_vs_exact"], "s-", color="k", label="removal vs unrolled (verdict)")
        for e, values in f["remainder"].items():
            ax.plot(f["steps"], values, "o-", label=f"ε = {e} vs linear" + (" (removal)" if e == "-1" else ""))
        ax.axhline(REMAINDER_HOLD, color="grey", ls=":", lw=0.8)
        _against_t(ax, "remainder", f"first order: {f['verdict']}")
        paths.append(_save(fig, directory / "diagnose_first_order.png"))
    return paths
