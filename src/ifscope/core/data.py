"""Datasets as ifscope sees them: a map-style dataset, or a tuple of tensors ``(x, y)``, read in fixed-order batches."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset, TensorDataset, default_collate

from .errors import DataError

Batch = Any  # a collated batch: a tuple/list of tensors or a dict of tensors


class DictDataset(Dataset):
    """Rows of a dict of equally long tensors (e.g. ``input_ids``, ``attention_mask``, ``labels``)."""

    def __init__(self, columns: Mapping[str, Tensor]):
        self.columns = dict(columns)

    def __len__(self) -> int:
        return len(next(iter(self.columns.values())))

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {k: v[i] for k, v in self.columns.items()}


def _check_columns(columns: Sequence[Tensor], names: Sequence[str], what: str) -> None:
    for name, col in zip(names, columns):
        if not isinstance(col, Tensor):
            raise DataError(f"dataset column {name!r} is a {type(col).__name__}, not a torch.Tensor; "
                            "convert it with torch.as_tensor")
        if col.dim() == 0:
            raise DataError(f"dataset column {name!r} is a scalar; each column needs one row per example")
    lengths = {name: len(col) for name, col in zip(names, columns)}
    if len(set(lengths.values())) > 1:
        raise DataError(f"{what} columns have different lengths {lengths}; every column needs one row per example")
    if next(iter(lengths.values()), 0) == 0:
        raise DataError(f"{what} is empty: give at least one example")
    for name, col in zip(names, columns):
        if col.is_floating_point() and not torch.isfinite(col).all():
            bad = (~torch.isfinite(col)).reshape(len(col), -1).any(1).nonzero()[:5, 0].tolist()
            raise DataError(f"dataset column {name!r} holds NaN or inf values (rows {bad}...); clean the data first")


def as_dataset(data: Any, what: str = "dataset") -> Dataset:
    """Accept a map-style ``Dataset``, a tuple/list of tensors ``(x, y, ...)`` or a dict of tensors."""
    if isinstance(data, TensorDataset):
        _check_columns(data.tensors, [f"{what}[{i}]" for i in range(len(data.tensors))], what)
        return data
    if isinstance(data, Dataset):
        try:
            n = len(data)  # type: ignore[arg-type]
        except TypeError as exc:
            raise DataError(f"{what} has no length; ifscope needs a map-style dataset with __len__") from exc
        if n == 0:
            raise DataError(f"{what} is empty: give at least one example")
        return data
    if isinstance(data, Mapping):
        _check_columns(list(data.values()), [f"{what}[{k!r}]" for k in data], what)
        return DictDataset(data)
    if isinstance(data, (tuple, list)) and data and all(isinstance(t, Tensor) for t in data):
        _check_columns(list(data), [f"{what}[{i}]" for i in range(len(data))], what)
        return TensorDataset(*data)
    if isinstance(data, (tuple, list)) and data:
        kinds = [type(t).__name__ for t in data]
        raise DataError(f"{what} is a {type(data).__name__} of {kinds}; every item must be a torch.Tensor: convert "
                        "them with torch.as_tensor (e.g. numpy arrays)")
    raise DataError(f"{what} must be a torch Dataset, a tuple of tensors (x, y) or a dict of tensors, "
                    f"not {type(data).__name__}")


def take(ds: Dataset, indices: Sequence[int] | Tensor) -> Batch:
    """Collate the examples at ``indices`` into one batch (fast path for tensor-backed datasets)."""
    idx = torch.as_tensor(indices, dtype=torch.long)
    if isinstance(ds, TensorDataset):
        return tuple(t[idx] for t in ds.tensors)
    if isinstance(ds, DictDataset):
        return {k: v[idx] for k, v in ds.columns.items()}
    return default_collate([ds[int(i)] for i in idx])


def batches(ds: Dataset, batch_size: int, indices: Sequence[int] | Tensor | None = None
            ) -> Iterator[tuple[Tensor, Batch]]:
    """Yield ``(positions, batch)`` in order; ``positions`` are indices into ``ds``."""
    if batch_size < 1:
        raise DataError(f"batch_size must be a positive integer, got {batch_size}")
    order = torch.arange(len(ds)) if indices is None else torch.as_tensor(indices, dtype=torch.long)
    for start in range(0, len(order), batch_size):
        pos = order[start:start + batch_size]
        yield pos, take(ds, pos)


def row_blocks(batch: Batch, size: int) -> Iterator[Batch]:
    """The rows of a collated ``batch`` in consecutive blocks of at most ``size``."""
    from torch.utils._pytree import tree_map
    for start in range(0, batch_len(batch), size):
        yield tree_map(lambda t, s=start: t[s:s + size], batch)


def batch_len(batch: Batch) -> int:
    """Number of examples in a collated batch."""
    first = next(iter(batch.values())) if isinstance(batch, Mapping) else batch[0]
    return len(first)


def cast_batch(batch: Batch, dtype: torch.dtype, device: torch.device | str | None = None) -> Batch:
    """Cast the floating-point tensors of a batch to ``dtype`` (labels and token ids stay as they are) and move every
    tensor to ``device`` (through pinned memory when copying from CPU to CUDA)."""
    device = None if device is None else torch.device(device)

    def cast(t: Any) -> Any:
        if not isinstance(t, Tensor):
            return t
        if device is not None and t.device != device:
            if device.type == "cuda" and t.device.type == "cpu":
                t = t.pin_memory()
            t = t.to(device, non_blocking=device.type == "cuda")
        return t.to(dtype) if t.is_floating_point() else t
    if isinstance(batch, Mapping):
        return {k: cast(v) for k, v in batch.items()}
    return type(batch)(cast(t) for t in batch) if isinstance(batch, (tuple, list)) else cast(batch)
