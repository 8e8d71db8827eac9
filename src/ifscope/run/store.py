"""Run directories: atomic writes, a manifest of sha256 checksums, safetensors artifacts and resumable shards.

Layout: ``DIR/manifest.json`` (format version, library versions, model and data fingerprints, the configuration,
sha256 and size of every artifact), ``DIR/curvature.safetensors``, ``DIR/train/NNNNN.safetensors``,
``DIR/scores.safetensors``, ``DIR/*.json``, ``DIR/report/``. Every file is written to a temporary name and renamed
(with the user's umask); the manifest is rewritten (atomically, under the directory's lock, re-read and changed by
one artifact) after each artifact, so a killed run leaves only complete, recorded files and two commands at once
lose neither's. Each artifact records the fit it belongs to (the curvature's: config and fingerprints; the others:
the curvature's checksum and fingerprints) and is reused only for that fit. Training-embedding shards carry their
own checksum, the curvature checksum and the fingerprints in their safetensors header, so that thousands of shards
do not rewrite the manifest thousands of times and a resumed run (one process or many ranks) trusts exactly the
shards that verify. Every name is resolved inside the directory, through no symbolic link. Under ``torchrun`` only
rank 0 writes the manifest and the artifacts; every rank writes its own shards.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..core.errors import ArtifactError
from ..core.files import atomic_write_bytes, json_bytes, read_json, write_json
from .lock import holder, locked
from .manifest import CURVATURE, FORMAT_VERSION, config_hash, read_manifest
from .paths import check_workdir, clear_debris, inside
from .shards import ShardStore

MANIFEST = "manifest.json"
SCORES = "scores.safetensors"


def versions() -> dict[str, str]:
    """Versions of the libraries an artifact depends on."""
    import numpy
    import safetensors

    from .._version import __version__
    return {"ifscope": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "numpy": numpy.__version__, "safetensors": safetensors.__version__}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class RunDir(ShardStore):
    """A run directory and its manifest. Artifacts are recorded with their sha256 and the fit they belong to, verified
    on every load, and updated under the directory's lock by re-reading the manifest and changing one artifact."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        check_workdir(self.path)
        self.manifest: dict[str, Any] = read_manifest(self.path / MANIFEST)
        self.bound = self._binding(self.manifest)  # the fit this process works on: what its artifacts record
        self.shards_reused = self.shards_computed = 0  # by the last train_shards pass

    @staticmethod
    def _binding(m: Mapping[str, Any]) -> dict[str, Any]:
        fps = m.get("fingerprints", {})
        return {"config": config_hash(m), "model": fps.get("model"), "train": fps.get("train"),
                "curvature": m.get("artifacts", {}).get(CURVATURE, {}).get("sha256")}

    @property
    def exists(self) -> bool:
        return bool(self.manifest)

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.manifest.get("config", {}))

    @property
    def writer(self) -> bool:
        """Whether this process writes the manifest and artifacts: always, except on ranks other than 0."""
        from .distributed import world
        return world()[0] == 0

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the directory's lock (rank 0 only: other ranks write no manifest and must not wait at a collective)."""
        if not self.writer:
            yield
            return
        with locked(self.path):
            yield

    def _update(self, change: Callable[[dict[str, Any]], None]) -> None:
        """Apply ``change`` to the manifest as it is on disk now (under the lock) and write it back: two commands at
        once each change their own artifacts, never write back a stale copy."""
        if not self.writer:
            change(self.manifest)
            return
        with self.locked():
            fresh = read_manifest(self.path / MANIFEST) or self.manifest
            change(fresh)
            fresh["updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            clear_debris(self.path, MANIFEST)
            write_json(self.path / MANIFEST, fresh)
            self.manifest = fresh

    @property
    def config_hash(self) -> str:
        """sha256 of the bound configuration: what the curvature of this run was fitted under."""
        return self.bound["config"]

    def bind(self, fingerprints: Mapping[str, str], config: Mapping[str, Any] | None = None,
             source: Mapping[str, Any] | None = None) -> list[str]:
        """Claim the directory for these fingerprints (and JSON config, and the ``source`` that rebuilds the model
        and data, recorded once). A fingerprint that differs from the recorded one raises ArtifactError; a different
        config drops every artifact made under the old one (the training shards too). Returns what was dropped; an
        unchanged binding writes nothing (a finished run is read on a read-only directory)."""
        config = None if config is None else json.loads(json.dumps(config))
        self.manifest = read_manifest(self.path / MANIFEST) or self.manifest  # as another command may have left it
        dropped: list[str] = []

        def change(m: dict[str, Any]) -> None:
            if not m:
                m.update({"format_version": FORMAT_VERSION, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                      time.gmtime()),
                          "versions": versions(), "fingerprints": {}, "config": {}, "artifacts": {}})
            self._check_fingerprints(m, fingerprints)
            m.setdefault("fingerprints", {}).update(fingerprints)
            if source is not None and not m.get("source"):
                m["source"] = dict(source)
            if config is not None:
                if m.get("config") and m["config"] != config:
                    dropped.extend(sorted(m["artifacts"]))
                    for name in dropped:
                        self._forget(m, name)
                    self._clear_shards()
                m["config"], m["versions"] = config, versions()
            m["format_version"] = FORMAT_VERSION

        m = self.manifest
        self._check_fingerprints(m, fingerprints)
        if not m or m.get("format_version") != FORMAT_VERSION or not set(fingerprints) <= set(m.get("fingerprints", {})) \
                or (source is not None and not m.get("source")) or (config is not None and m.get("config") != config):
            self._update(change)  # else nothing to write: a finished run is read without writing
        self.bound = self._binding(self.manifest)
        return dropped

    def _check_fingerprints(self, m: Mapping[str, Any], fingerprints: Mapping[str, str]) -> None:
        recorded = m.get("fingerprints", {})
        for key, value in fingerprints.items():
            if key in recorded and recorded[key] != value:
                raise ArtifactError(f"run directory {self.path} was made for another {key} (fingerprint "
                                    f"{recorded[key][:12]}…, this one is {value[:12]}…); use another --workdir, or "
                                    "delete the directory to start over")

    def file(self, name: str) -> Path:
        """The path of ``name`` inside the run directory (ArtifactError if it would leave it)."""
        return inside(self.path, name, f"{self.path / MANIFEST}")

    def record_options(self, command: str, values: Mapping[str, Any]) -> None:
        """Record the options ``command`` resolved (JSON values): what its next run in this directory starts from."""
        values = json.loads(json.dumps(dict(values)))
        if self.manifest.get("options", {}).get(command) != values:  # unchanged: nothing written (read-only runs)
            self._update(lambda m: m.setdefault("options", {}).update({command: values}))

    def has(self, name: str) -> bool:
        """Whether ``name`` is recorded for the current fit (the curvature: for the bound config) and present."""
        entry = self.manifest.get("artifacts", {}).get(name)
        return entry is not None and entry.get("fit") == self._fit_of(self.manifest, name) and self.file(name).exists()

    def _fit_of(self, m: Mapping[str, Any], name: str) -> dict[str, Any]:
        """What an artifact called ``name`` records as its fit: config and fingerprints for the curvature, the
        curvature's checksum and the fingerprints for anything derived from it."""
        key = "config" if name == CURVATURE else "curvature"
        fit = self._binding(m)
        return {key: fit[key], "model": fit["model"], "train": fit["train"]}

    def _forget(self, m: dict[str, Any], name: str) -> None:
        m.get("artifacts", {}).pop(name, None)
        if self.writer:
            self.file(name).unlink(missing_ok=True)

    def drop(self, name: str) -> None:
        """Forget an artifact and delete its file (only ever a file inside the run directory)."""
        self._update(lambda m: self._forget(m, name))

    def _check_current(self, m: Mapping[str, Any], name: str) -> None:
        """ArtifactError when another process refitted the directory since this one bound it."""
        now, mine = self._binding(m), self.bound
        keys = ("config", "model", "train") + (() if name == CURVATURE else ("curvature",))
        if any(now[k] != mine[k] for k in keys):
            by = m.get("fitted_by", "another ifscope command")
            raise ArtifactError(f"{by} refitted {self.path} while this command ran, so {name} (made from the earlier "
                                "fit) was not saved; rerun this command")

    def write_bytes(self, name: str, data: bytes, **meta: Any) -> Path:
        """Atomically write an artifact and record its sha256 and fit; an identical recorded artifact is left as is."""
        if not self.manifest:
            raise ArtifactError(f"run directory {self.path} is not bound to a model yet; fit first")
        path = self.file(name)
        entry = {"sha256": _sha256(data), "bytes": len(data), **meta}

        def change(m: dict[str, Any]) -> None:
            self._check_current(m, name)
            if self.writer:
                atomic_write_bytes(path, data)
            if name == CURVATURE:  # a new fit: what was derived from another curvature no longer holds
                m["fitted_by"] = holder()
                for old in [n for n, e in m["artifacts"].items() if n != CURVATURE
                            and e.get("fit", {}).get("curvature") != entry["sha256"]]:
                    self._forget(m, old)
            m["artifacts"][name] = {**entry, "fit": self._fit_of(m, name)}

        current = self.manifest["artifacts"].get(name, {})
        if not (self.has(name) and current.get("sha256") == entry["sha256"] and self._verifies(name)):
            self._update(change)
        if name == CURVATURE:
            self.bound["curvature"] = entry["sha256"]
        return path

    def _verifies(self, name: str) -> bool:
        try:
            self.read_bytes(name)
            return True
        except ArtifactError:
            return False

    def record(self, name: str, **meta: Any) -> Path:
        """Record a file already written under the run directory (e.g. a figure) with its sha256."""
        if not self.manifest:
            raise ArtifactError(f"run directory {self.path} is not bound to a model yet; fit first")
        return self.write_bytes(name, self.file(name).read_bytes(), **meta)

    def sha256(self, name: str) -> str | None:
        """The recorded checksum of an artifact (None when it is not recorded)."""
        return self.manifest.get("artifacts", {}).get(name, {}).get("sha256")

    def read_bytes(self, name: str) -> bytes:
        """An artifact's bytes, verified against the manifest's sha256 (ArtifactError naming the file otherwise)."""
        file = self.file(name)
        entry = self.manifest.get("artifacts", {}).get(name)
        if entry is None:
            raise ArtifactError(f"{file} is not recorded in {self.path / MANIFEST}; run the command that makes it")
        try:
            data = file.read_bytes()
        except FileNotFoundError as exc:
            raise ArtifactError(f"{file} is missing though the manifest lists it; rerun the command that makes "
                                "it") from exc
        if len(data) != entry["bytes"] or _sha256(data) != entry["sha256"]:
            what = "truncated" if len(data) < entry["bytes"] else "corrupted"
            raise ArtifactError(f"{file} is {what} (sha256 or size differs from the manifest); delete it and rerun "
                                "the command that makes it")
        return data

    def save_tensors(self, name: str, tensors: Mapping[str, Tensor], **meta: Any) -> Path:
        """Write tensors as safetensors (never pickle)."""
        from safetensors.torch import save
        return self.write_bytes(name, save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}), **meta)

    def load_tensors(self, name: str) -> dict[str, Tensor]:
        from safetensors.torch import load
        data = self.read_bytes(name)
        try:
            return load(data)
        except Exception as exc:  # safetensors raises its own error types
            raise ArtifactError(f"{self.path / name} is not a valid safetensors file ({exc}); delete it and rerun "
                                "the command that makes it") from exc

    def save_json(self, name: str, obj: Any) -> Path:
        return self.write_bytes(name, json_bytes(obj))

    def load_json(self, name: str) -> Any:
        """A JSON artifact; verified when the manifest records it, read as it is otherwise."""
        if name in self.manifest.get("artifacts", {}):
            try:
                return json.loads(self.read_bytes(name))
            except json.JSONDecodeError as exc:
                raise ArtifactError(f"{self.path / name} is not valid JSON ({exc})") from exc
        return read_json(self.file(name))
