"""Paths inside a run directory: every name a manifest or a command uses stays below the directory, through no
symbolic link, or is refused; a ``--workdir`` that is a file (or lies under one) is refused before anything runs."""

from __future__ import annotations

import time
from pathlib import Path, PurePosixPath

from ..core.errors import ArtifactError

STALE_TMP_S = 3600.0  # a temporary file this old was left by a killed writer (a live write takes seconds)


def check_name(name: object, where: str) -> str:
    """``name`` if it is a relative path with no ``..`` part (``where`` says who gave it), else ArtifactError."""
    parts = PurePosixPath(name).parts if isinstance(name, str) and name else ()
    if not parts or PurePosixPath(name).is_absolute() or "\\" in name or any(p in ("..", ".") for p in parts):
        raise ArtifactError(f"{where} names {name!r}, which is not a plain path inside the run directory; ifscope "
                            "reads and deletes only files inside it: delete that manifest or use another --workdir")
    return name  # type: ignore[return-value]


def inside(root: Path, name: str, where: str = "ifscope") -> Path:
    """``root / name``, refused (ArtifactError) when ``name`` leaves ``root`` or passes through a symbolic link."""
    path = root
    for part in PurePosixPath(check_name(name, where)).parts:
        path = path / part
        if path.is_symlink():
            raise ArtifactError(f"{path} is a symbolic link; ifscope does not follow links inside a run directory "
                                "(it could read or delete files elsewhere): replace it with a real folder or file")
    return path


def check_workdir(path: Path) -> None:
    """ArtifactError when ``path`` is a file or lies under one (so it cannot be a run directory)."""
    if path.exists() and not path.is_dir():
        raise ArtifactError(f"--workdir {path} is a file, not a directory; give a directory (it is created if absent)")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ArtifactError(f"--workdir {path} lies under {parent}, which is a file; give another directory")
            return


def clear_debris(root: Path, manifest: str) -> None:
    """Delete temporary files left by killed writers: the manifest's (written only under the run directory's lock,
    which the caller holds), and the others' once they are stale."""
    now = time.time()
    for folder in (root, root / "report"):
        if folder.is_symlink() or not folder.is_dir():
            continue
        for tmp in folder.glob(".*.tmp"):
            try:
                if tmp.is_file() and not tmp.is_symlink() and (
                        tmp.name.startswith(f".{manifest}.") or now - tmp.stat().st_mtime > STALE_TMP_S):
                    tmp.unlink()
            except OSError:  # gone meanwhile, or a read-only directory: nothing to clear
                pass
