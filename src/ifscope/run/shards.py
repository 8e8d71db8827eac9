"""Training-embedding shards ``DIR/train/NNNNN.safetensors``: each carries its own checksum, the checksum of the
curvature and the model and data fingerprints it was computed from in its safetensors header, so that thousands of
shards do not rewrite the manifest and a resumed run (one process or many ranks) trusts exactly the shards of its fit."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..core.files import atomic_write_bytes
from ..core.fingerprint import hash_tree

SHARD_DIR = "train"


class ShardStore:
    """The shard half of :class:`ifscope.RunDir` (which provides ``file``, ``bound`` and ``writer``)."""

    bound: dict[str, Any]
    writer: bool
    file: Callable[[str], Path]
    shards_reused = shards_computed = 0  # by the last train_shards pass

    def _clear_shards(self) -> None:
        folder = self.file(SHARD_DIR)
        if self.writer and folder.is_dir():
            for shard in folder.glob("[0-9]*.safetensors"):
                if shard.is_file() and not shard.is_symlink():
                    shard.unlink(missing_ok=True)

    def _shard_path(self, index: int) -> Path:
        return self.file(f"{SHARD_DIR}/{index:05d}.safetensors")

    def _shard_fit(self) -> dict[str, str]:
        """What a shard must have been computed from: the curvature's checksum and the model and data fingerprints."""
        return {k: str(self.bound[k]) for k in ("curvature", "model", "train")}

    def _save_shard(self, index: int, pos: Tensor, emb: Tensor) -> None:
        from safetensors.torch import save
        tensors = {"embeddings": emb.detach().cpu().contiguous(), "positions": pos.contiguous()}
        digest = hashlib.sha256()
        hash_tree(digest, tensors)
        atomic_write_bytes(self._shard_path(index), save(tensors, metadata={
            **self._shard_fit(), "sha256": digest.hexdigest()}))

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
        if {k: meta.get(k) for k in ("curvature", "model", "train")} != self._shard_fit():
            return self._distrust(path, "was computed from another fit (curvature, model or data)")
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
