"""The HTML report of a run directory: one static page, ``DIR/report/index.html``, with its figures beside it.

Each section is drawn from the artifact that holds it (``fade.json``, ``diagnose.json``, ``correct.json``,
``curvature.safetensors``, ``top.json``) and says which command makes it when that artifact is absent
(``report.sections``, ``report.cards``; the page's frame in ``report.html``, its figures in ``report.figures``).
No script or style is fetched from the network.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from ..core.errors import ArtifactError
from ..core.files import atomic_write_bytes
from ..run.store import MANIFEST, RunDir
from . import html
from .cards import gallery_section, suspects_section
from .html import SECTIONS, esc
from .sections import assumptions_section, correction_section, fade_sections, lds_section, spectrum_section


def _load(run: RunDir, name: str) -> Any:
    """An artifact recorded in the manifest (so made under the run's current fit), else None."""
    return run.load_json(name) if run.has(name) else None


def _header(run: RunDir) -> str:
    """The page's header line: the fit's configuration, the model and data fingerprints, the versions, the time."""
    cfg = run.config
    m = run.manifest
    return (f"method <b>{esc(cfg.get('method', '?'))}</b> · "
            + " · ".join(f"{esc(k)} {esc(v)}" for k, v in cfg.items() if k in ("rank", "iterations", "select",
                                                                             "damping", "weight_decay", "dtype"))
            + f"<br>model {esc(m.get('fingerprints', {}).get('model', '?')[:12])} · training data "
            f"{esc(m.get('fingerprints', {}).get('train', '?')[:12])} · "
            + " · ".join(f"{esc(k)} {esc(v)}" for k, v in m.get("versions", {}).items())
            + f"<br>report written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")


def render_report(workdir: str | Path) -> Path:
    """Write ``workdir/report/index.html`` and its figures from whatever the run directory holds; return its path."""
    run = RunDir(workdir)
    if not run.exists:
        raise ArtifactError(f"{Path(workdir) / MANIFEST} does not exist: {workdir} is not an ifscope run directory; "
                            "run `ifscope fit --workdir DIR` (or `ifscope demo`) first")
    with run.locked():  # a command finishing meanwhile records its artifact after the report, not lost by it
        return _render(RunDir(workdir))


def _render(run: RunDir) -> Path:
    out = run.file("report")  # refused when a symbolic link: the report's folder is emptied first
    for name in [n for n in run.manifest.get("artifacts", {}) if n.startswith("report/")]:
        run.drop(name)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    fade_html, gap_html = fade_sections(_load(run, "fade.json"), out)
    body = {
        "fade": fade_html, "gap": gap_html, "spectrum": spectrum_section(run, out),
        "assumptions": assumptions_section(_load(run, "diagnose.json")),
        "correction": correction_section(_load(run, "correct.json"), out),
        "gallery": gallery_section(_load(run, "top.json"), out),
        "suspects": suspects_section(_load(run, "self_influence.json"), out),
        "lds": lds_section(_load(run, "lds.json")),
    }
    page = html.page(run.path.resolve().name, _header(run), body)
    atomic_write_bytes(out / "index.html", page.encode())
    diag = _load(run, "diagnose.json")
    if diag and diag.get("assumptions"):
        from .diagnose_figures import diagnose_figures
        diagnose_figures(diag, out)
    for file in sorted(out.rglob("*")):  # every file of the report is recorded, so a refit drops it
        if file.is_file():
            run.record(str(file.relative_to(run.path)))
    return out / "index.html"


__all__ = ["SECTIONS", "render_report"]
