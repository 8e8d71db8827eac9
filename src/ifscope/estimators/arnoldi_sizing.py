"""How much an Arnoldi fit computes, measured rather than guessed: the block of products per step (``block=0``), the
Hessian sample, grown until its top Ritz values hold on a disjoint sample (``sample_tol``), and the iterations and
sample a time budget affords (``time_budget_s``)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch

from ..core.budget import PROBE_EXAMPLES, Plan, measure_product, plan
from ..core.decisions import decided, path_key
from ..core.errors import NumericalWarning
from ..core.krylov import ArnoldiResult, Eigenpairs, arnoldi, block_arnoldi, relative_residuals
from .base import Context

BLOCK = 16  # products per block step: the default, and what block=0 weighs against one
RANK = 100  # eigenpairs kept by default (at most the selected parameters and the iterations)
RITZ_TOL = 0.1  # default ritz_tol: every kept pair's residual within a tenth of its eigenvalue
SAMPLE_START = 128  # first Hessian sample of the sample_tol check when hessian_samples is not given
CHECKED = 16  # top Ritz values the sample check compares
SAMPLE_WARN = 0.1  # median relative drift of the top Ritz values on a disjoint sample above which a fit warns


@dataclass
class BlockChoice:
    """The block size ``block=0`` measured, with the seconds per vector and example of each size tried."""

    block: int
    seconds: dict[str, float] = field(default_factory=dict)


def measured_block(ctx: Context) -> int:
    """For ``block=0``: the measured choice between 1 and ``BLOCK`` products per step (the block when it is at least
    20 % cheaper per vector), kept per model and machine (``ifscope.core.decisions``)."""
    n = len(ctx.train)  # type: ignore[arg-type]
    key = "block|" + path_key(ctx.params, BLOCK, ctx.hessian_samples or n, ctx.dtype, ctx.device)

    def measure() -> tuple[BlockChoice, None]:
        probe = ctx.curvature_operator(damping=0.0, samples=min(n, PROBE_EXAMPLES))
        seconds = {str(b): measure_product(probe.matmat, probe.dim, b, probe.n, ctx.dtype, ctx.device)
                   for b in (1, BLOCK)}
        best = BLOCK if seconds[str(BLOCK)] <= 0.8 * seconds["1"] else 1
        return BlockChoice(best, seconds), None
    return int(decided(key, measure, kind=BlockChoice)[0].block)


def budget_plan(ctx: Context, block: int, iterations: int, rank: int, samples: int | None) -> tuple[Plan, int]:
    """The iterations and Hessian sample that ``ctx.time_budget_s`` affords at the measured cost of one product per
    example, and the curvature products the measurement made."""
    n = len(ctx.train)  # type: ignore[arg-type]
    probe = ctx.curvature_operator(damping=0.0, samples=min(n, PROBE_EXAMPLES))
    cost = measure_product(probe.matmat, ctx.space.dim, block, probe.n, ctx.dtype, ctx.device)
    return plan(ctx.time_budget_s, cost, n, iterations, rank, samples), probe.calls  # type: ignore[arg-type]


def sample_drift(ctx: Context, pairs: Eigenpairs, samples: int) -> tuple[float, int]:
    """Median relative gap between the top Ritz values and their Rayleigh quotients on the next ``samples`` examples
    of the seeded order (disjoint from the sample the Ritz values come from), and the curvature products it made."""
    n = len(ctx.train)  # type: ignore[arg-type]
    check = ctx.curvature_operator(damping=0.0, samples=min(samples, n - samples), offset=samples)
    top, lam = pairs.vectors[:CHECKED], pairs.values[:CHECKED]
    rayleigh = (check.matmat(top) * top).sum(1)
    drift = float(((rayleigh - lam).abs() / lam.abs().clamp_min(torch.finfo(lam.dtype).tiny)).median())
    return drift, check.calls


def _said(message: str) -> list[str]:
    """Emit a fit's numerical-health ``message`` at the user's call and return it for ``estimator.warnings``."""
    warnings.warn(message, NumericalWarning, stacklevel=5)
    return [message]


def ritz_warnings(pairs: Eigenpairs, ritz_tol: float | None, iterations: int | None) -> list[str]:
    """The warning (also emitted) when the iteration cap (or a time budget) ended the run before every kept pair's
    relative residual ``‖Hu − λu‖/|λ|`` came within ``ritz_tol``: the scores along those directions then depend on
    the iteration count. ``ritz_tol=None`` asks for no check."""
    if ritz_tol is None or not len(pairs.values):
        return []
    rel = pairs.residuals.double() / pairs.values.double().abs().clamp_min(torch.finfo(torch.float64).tiny)
    if float(rel.max()) <= ritz_tol:
        return []
    after = f"after {iterations} iterations" if iterations is not None else "when the run ended"
    message = (f"{int((rel > ritz_tol).sum())} of the {len(rel)} kept Ritz pairs had not converged {after}: their "
               f"relative residual ‖Hu − λu‖/|λ| reaches {float(rel.max()):.2g} (ritz_tol={ritz_tol:g}), so the "
               "scores along them depend on where the iteration stopped; raise iterations=... or lower rank=..., or "
               "pass ritz_tol=None to accept the pairs as they are")
    return _said(message)


def sample_warnings(checks: list[dict[str, float]], sample_tol: float | None) -> list[str]:
    """For a Hessian sample no ``sample_tol`` grew: the warning (also emitted) when the last check's drift exceeds
    ``SAMPLE_WARN``, since the basis, and the scores with it, then depend on which examples were sampled."""
    if sample_tol is not None or not checks:
        return []
    samples, drift = checks[-1]["hessian_samples"], checks[-1]["drift"]
    if drift <= SAMPLE_WARN:
        return []
    message = (f"the top eigenvalues fitted on a Hessian sample of {int(samples)} examples differ by a median "
               f"{drift:.0%} from their Rayleigh quotients on a disjoint sample (above {SAMPLE_WARN:.0%}): the basis "
               "depends on which examples were sampled, and the scores with it; use a larger hessian_samples=..., "
               "or sample_tol=0.1 to grow the sample until it holds")
    return _said(message)


def run_krylov(ctx: Context, op, iterations: int, block: int, rank: int, select: str,
               ritz_tol: float | None) -> ArnoldiResult:
    """At most ``iterations`` Arnoldi steps on ``op`` (``block`` products each), stopped once the ``rank`` kept Ritz
    pairs all have relative residuals within ``ritz_tol`` (None: every step), with a progress bar."""
    dim = op.dim
    bar = ctx.progress("Arnoldi iterations", min(iterations, dim))
    done = [0]

    def tick(j: int) -> None:
        if bar is not None:
            bar.update(j - done[0])
        done[0] = j

    def converged(so_far: ArnoldiResult) -> bool:  # every kept pair's relative residual within ritz_tol
        rel = relative_residuals(so_far, rank, select)
        return len(rel) == rank and float(rel.max()) <= ritz_tol  # type: ignore[operator]
    stop = None if ritz_tol is None else converged
    if block == 1:
        result = arnoldi(op.matvec, dim, iterations, seed=ctx.seed, dtype=ctx.dtype, device=ctx.device,
                         progress=tick, stop=stop)
    else:
        result = block_arnoldi(op.matmat, dim, iterations, block, seed=ctx.seed, dtype=ctx.dtype,
                               device=ctx.device, progress=tick, stop=stop)
    if bar is not None:
        bar.close()
    return result
