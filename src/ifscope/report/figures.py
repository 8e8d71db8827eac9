"""The report's figures, drawn with matplotlib's object API (no pyplot, so a notebook's backend is untouched)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.image import imsave


def _axes(height: float) -> tuple[Figure, Any]:
    fig = Figure(figsize=(6.4, height))
    return fig, fig.add_subplot()


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def _series(values: Any, n: int) -> np.ndarray | None:
    if not isinstance(values, Sequence) or len(values) != n:
        return None
    return np.array([np.nan if v is None else float(v) for v in values])


def fade_figure(steps: Sequence[float], methods: Mapping[str, Mapping[str, Any]], path: Path) -> Path:
    """Correlation of predicted with actual loss changes against training steps T (Pearson solid, Spearman dashed)."""
    fig, ax = _axes(3.6)
    for i, (name, m) in enumerate(sorted(methods.items())):
        color = f"C{i % 10}"
        for key, style in (("pearson", "-"), ("spearman", "--")):
            y = _series(m.get(key), len(steps))
            if y is not None:
                ax.plot(steps, y, style, marker="o", ms=3, color=color, label=f"{name} {key}")
    ax.set_xscale("log")
    ax.set_xlabel("training steps T after the checkpoint")
    ax.set_ylabel("correlation with actual change")
    ax.axhline(0, color="0.6", lw=0.8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)


def gap_figure(steps: Sequence[float], gap: Sequence[Any], path: Path) -> Path:
    """Parameter gap ``‖θ_ε(T) − θ(T)‖`` against T: one curve, or one per removed example and their median."""
    fig, ax = _axes(3.4)
    rows = [g for g in gap if _series(g, len(steps)) is not None] if gap and isinstance(gap[0], Sequence) else [gap]
    curves = [y for y in (_series(g, len(steps)) for g in rows) if y is not None]
    for y in curves if len(curves) > 1 else []:
        ax.plot(steps, y, color="C3", alpha=0.25, lw=0.8)
    if curves:
        ax.plot(steps, np.nanmedian(np.stack(curves), axis=0), marker="o", ms=3, color="C3",
                label="median" if len(curves) > 1 else None)
    ax.set_xscale("log")
    if curves and np.nanmin(np.stack(curves)) > 0:
        ax.set_yscale("log")
    ax.set_xlabel("training steps T after the checkpoint")
    ax.set_ylabel("parameter gap ‖θ_ε(T) − θ(T)‖")
    ax.grid(alpha=0.3)
    if len(curves) > 1:
        ax.legend(fontsize=7)
    return _save(fig, path)


def spectrum_figure(ritz: np.ndarray, kept: np.ndarray, path: Path) -> Path:
    """All Ritz values |λ| by rank (log scale), negative ones in red, the kept eigenvalues circled."""
    fig, ax = _axes(3.4)
    order = np.argsort(-np.abs(ritz))
    r = ritz[order]
    x = np.arange(1, len(r) + 1)
    pos = r > 0
    ax.scatter(x[pos], np.abs(r[pos]), s=8, color="C0", label="positive")
    if (~pos).any():
        ax.scatter(x[~pos], np.abs(r[~pos]), s=8, color="C3", label="negative")
    is_kept = np.isin(r, kept)
    ax.scatter(x[is_kept], np.abs(r[is_kept]), s=30, facecolors="none", edgecolors="k", lw=0.7, label="kept")
    if (np.abs(r) > 0).all():
        ax.set_yscale("log")
    ax.set_xlabel("rank by |λ|")
    ax.set_ylabel("|eigenvalue|")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def draw_image(pixels: Sequence[float], shape: Sequence[int], path: Path) -> Path:
    """One example as a PNG: ``shape`` is (H, W), (C, H, W) or (H, W, C); grey images dark on white."""
    x = np.asarray(pixels, dtype=float).reshape(shape)
    if x.ndim == 3 and x.shape[0] in (1, 3) and x.shape[-1] not in (1, 3):
        x = np.moveaxis(x, 0, -1)
    if x.ndim == 3 and x.shape[-1] == 1:
        x = x[..., 0]
    lo, hi = float(x.min()), float(x.max())
    x = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
    if x.ndim == 2:
        imsave(path, x, cmap="gray_r", vmin=0, vmax=1)
    else:
        imsave(path, x)
    return path
