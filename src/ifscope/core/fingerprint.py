"""Content fingerprints: sha256 of nests of tensors (names, dtypes, shapes, values), models and datasets."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset


def _hash_tensor(h: Any, t: Tensor) -> None:
    t = t.detach().cpu().contiguous()
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())


def hash_tree(h: Any, obj: Any) -> None:
    if isinstance(obj, Tensor):
        _hash_tensor(h, obj)
    elif isinstance(obj, Mapping):
        for key in sorted(obj):
            h.update(str(key).encode())
            hash_tree(h, obj[key])
    elif isinstance(obj, (tuple, list)):
        for item in obj:
            hash_tree(h, item)
    else:
        h.update(repr(obj).encode())


def tree_fingerprint(obj: Any) -> str:
    """sha256 of a nest of tensors, mappings, sequences and plain values (names, dtypes, shapes and values)."""
    h = hashlib.sha256()
    hash_tree(h, obj)
    return h.hexdigest()


def model_fingerprint(model: torch.nn.Module) -> str:
    """sha256 of the model's state dict (names, dtypes, shapes and values): the checkpoint's identity."""
    return tree_fingerprint(dict(model.state_dict()))


def data_fingerprint(ds: Dataset, batch_size: int = 1024) -> str:
    """sha256 of every example of a dataset, in order."""
    from .data import batches
    h = hashlib.sha256()
    for _, batch in batches(ds, batch_size):
        hash_tree(h, batch)
    return h.hexdigest()
