"""Run directories: atomic writes, a manifest of sha256 checksums, safetensors artifacts and resumable shards.

Layout: ``DIR/manifest.json`` (format version, library versions, model and data fingerprints, the configuration,
sha256 and size of every artifact), ``DIR/curvature.safetensors``, ``DIR/train/NNNNN.safetensors``,
``DIR/scores.safetensors``, ``DIR/*.json``, ``DIR/report/``. Every file is written to a temporary name and renamed
(with the user's umask); the manifest is rewritten (atomically) after each artifact, so a killed run leaves only
complete, recorded files. Training-embedding shards are the exception: each carries its own checksum and the hash
of the configuration it was computed under in its safetensors header, so that thousands of shards do not rewrite
the manifest thousands of times and a resumed run (one process or many ranks) trusts exactly the shards that
verify. Under ``torchrun`` only rank 0 writes the manifest and the artifacts; every rank writes its own shards.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..core.errors import ArtifactError
from ..core.files import atomic_write_bytes, json_bytes, read_json, write_json
from ..core.fingerprint import hash_tree

FORMAT_VERSION = 2  # 2: the manifest records the source (recipe) and the config in options.to_json form
MANIFEST = "manifest.json"
CURVATURE = "curvature.safetensors"
SCORES = "scores.safetensors"
SHARD_DIR = "train"


def versions() -> dict[str, str]:
    """Versions of the libraries an artifact depends on."""
    import numpy
    import safetensors

    from .._version import __version__
    return {"ifscope": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "numpy": numpy.__version__, "safetensors": safetensors.__version__}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class RunDir:
    """A run directory and its manifest. Artifacts are recorded with their sha256 and verified on every load."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.manifest: dict[str, Any] = self._read_manifest()
        self.shards_reused = self.shards_computed = 0  # by the last train_shards pass

    def _read_manifest(self) -> dict[str, Any]:
        file = self.path / MANIFEST
        if not file.exists():
            return {}
        manifest = read_json(file)
        if not isinstance(manifest, dict) or "format_version" not in manifest:
            raise ArtifactError(f"{file} is not an ifscope manifest (no format_version); use another --workdir")
        version = manifest["format_version"]
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ArtifactError(f"{file} has format_version {version!r}, newer than this ifscope reads "
                                f"({FORMAT_VERSION}); upgrade ifscope or use another --workdir")
        manifest.setdefault("artifacts", {})
        return manifest

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

    def _save_manifest(self) -> None:
        self.manifest["updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if self.writer:
            write_json(self.path / MANIFEST, self.manifest)

    @property
    def config_hash(self) -> str:
        """sha256 of the bound configuration: what a training-embedding shard must have been computed under."""
        return _sha256(json.dumps(self.manifest.get("config", {}), sort_keys=True).encode())

    def bind(self, fingerprints: Mapping[str, str], config: Mapping[str, Any] | None = None,
             source: Mapping[str, Any] | None = None) -> list[str]:
        """Claim the directory for these fingerprints (and JSON config, and the ``source`` that rebuilds the model
        and data). A fingerprint that differs from the recorded one raises ArtifactError; a different config drops
        every artifact made under the old one (the training shards too). Returns what was dropped."""
        if not self.manifest:
            self.manifest = {"format_version": FORMAT_VERSION, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                       time.gmtime()),
                             "versions": versions(), "fingerprints": {}, "config": {}, "artifacts": {}}
        recorded = self.manifest.setdefault("fingerprints", {})
        for key, value in fingerprints.items():
            if key in recorded and recorded[key] != value:
                raise ArtifactError(f"run directory {self.path} was made for another {key} (fingerprint "
                                    f"{recorded[key][:12]}…, this one is {value[:12]}…); use another --workdir, or "
                                    "delete the directory to start over")
        recorded.update(fingerprints)
        dropped: list[str] = []
        if source is not None:
            self.manifest["source"] = dict(source)
        if config is not None:
            config = json.loads(json.dumps(config))
            if self.manifest.get("config") and self.manifest["config"] != config:
                dropped = sorted(self.manifest["artifacts"])
                for name in dropped:
                    self.drop(name, save=False)
                if self.writer:
                    for shard in (self.path / SHARD_DIR).glob("*.safetensors"):
                        shard.unlink(missing_ok=True)
            self.manifest["config"] = config
            self.manifest["versions"] = versions()
        self.manifest["format_version"] = FORMAT_VERSION
        self._save_manifest()
        return dropped

    def record_options(self, command: str, values: Mapping[str, Any]) -> None:
        """Record the options ``command`` resolved (JSON values): what its next run in this directory starts from."""
        self.manifest.setdefault("options", {})[command] = dict(values)
        self._save_manifest()

    def has(self, name: str) -> bool:
        return name in self.manifest.get("artifacts", {}) and (self.path / name).exists()

    def drop(self, name: str, save: bool = True) -> None:
        """Forget an artifact and delete its file."""
        self.manifest.get("artifacts", {}).pop(name, None)
        (self.path / name).unlink(missing_ok=True)
        if save:
            self._save_manifest()

    def write_bytes(self, name: str, data: bytes, **meta: Any) -> Path:
        """Atomically write an artifact and record its sha256 in the manifest."""
        if not self.manifest:
            raise ArtifactError(f"run directory {self.path} is not bound to a model yet; fit first")
        path = atomic_write_bytes(self.path / name, data) if self.writer else self.path / name
        self.manifest["artifacts"][name] = {"sha256": _sha256(data), "bytes": len(data), **meta}
        self._save_manifest()
        return path

    def record(self, name: str, **meta: Any) -> Path:
        """Record a file already written under the run directory (e.g. a figure) with its sha256."""
        if not self.manifest:
            raise ArtifactError(f"run directory {self.path} is not bound to a model yet; fit first")
        data = (self.path / name).read_bytes()
        self.manifest["artifacts"][name] = {"sha256": _sha256(data), "bytes": len(data), **meta}
        self._save_manifest()
        return self.path / name

    def sha256(self, name: str) -> str | None:
        """The recorded checksum of an artifact (None when it is not recorded)."""
        return self.manifest.get("artifacts", {}).get(name, {}).get("sha256")

    def read_bytes(self, name: str) -> bytes:
        """An artifact's bytes, verified against the manifest's sha256 (ArtifactError naming the file otherwise)."""
        file = self.path / name
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
        return read_json(self.path / name)

    def _shard_path(self, index: int) -> Path:
        return self.path / SHARD_DIR / f"{index:05d}.safetensors"

    def _save_shard(self, index: int, pos: Tensor, emb: Tensor) -> None:
        from safetensors.torch import save
        tensors = {"embeddings": emb.detach().cpu().contiguous(), "positions": pos.contiguous()}
        digest = hashlib.sha256()
        hash_tree(digest, tensors)
        atomic_write_bytes(self._shard_path(index), save(tensors, metadata={
            "config": self.config_hash, "sha256": digest.hexdigest()}))

    def _load_shard(self, index: int, pos: Tensor) -> Tensor | None:
        """The shard's embeddings if it exists, verifies and was computed under the bound config; else None."""
        from safetensors import safe_open
        from safetensors.torch import load
        path = self._shard_path(index)
        if not path.is_file():
            return None
        try:
            data = path.read_bytes()
            with safe_open(str(path), framework="pt") as fh:
                meta = fh.metadata() or {}
            tensors = load(data)
        except Exception:  # unreadable or truncated
            return self._distrust(path, "is truncated or unreadable")
        digest = hashlib.sha256()
        hash_tree(digest, tensors)
        if meta.get("config") != self.config_hash:
            return self._distrust(path, "was computed under another configuration")
        if meta.get("sha256") != digest.hexdigest() or not torch.equal(tensors.get("positions", torch.empty(0)), pos):
            return self._distrust(path, "is corrupted (its checksum or positions differ)")
        return tensors["embeddings"]

    @staticmethod
    def _distrust(path: Path, why: str) -> None:
        import warnings

        from ..core.errors import NumericalWarning
        warnings.warn(f"{path} {why}: recomputing it", NumericalWarning, stacklevel=3)
        return None

    def train_shards(self, positions: Tensor, shard_size: int, embed: Callable[[Tensor], Tensor],
                     progress: Any = None) -> Iterator[tuple[Tensor, Tensor]]:
        """Yield ``(positions, embeddings)`` per block of ``shard_size`` examples of the contiguous, shard-aligned
        ``positions``, loading the shards already in ``DIR/train/`` that verify under the bound configuration and
        computing (``embed(positions)``) and saving the others: a killed run resumes here."""
        self.shards_reused = self.shards_computed = 0
        if len(positions) == 0:
            return
        first, end = int(positions[0]), int(positions[-1]) + 1
        for start in range(first, end, shard_size):
            i = start // shard_size
            pos = torch.arange(start, min(end, start + shard_size))
            emb = self._load_shard(i, pos)
            if emb is not None:
                self.shards_reused += 1
            else:
                emb = embed(pos)
                self._save_shard(i, pos, emb)
                self.shards_computed += 1
            if progress is not None:
                progress.update(len(pos))
            yield pos, emb
        if progress is not None:
            progress.close()
