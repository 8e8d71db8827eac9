"""The parts every options dataclass is made of: validators, ``opt`` (a field with its help text and flag), building
with unknown-name errors, the JSON form the manifest records (``to_json``/``from_json``), and the fields a command
line can set (``flag_fields``). A tensor-valued option is recorded by a sha256 of its content, so that new TracIn
checkpoints of the same shapes make another configuration.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import types
import typing
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from ..core.errors import ConfigError

DTYPES = {"float32": torch.float32, "float64": torch.float64}
PROJECTION_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}
CURVATURES = ("hessian", "ggn")
PROJECTIONS = ("auto", "jvp", "vmap")


def positive_int(name: str, value: Any, allow_none: bool = False) -> None:
    """ConfigError unless ``value`` is a positive integer (or None when allowed)."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer{' or None' if allow_none else ''}, got {value!r}")


def positive_number(name: str, value: Any, allow_none: bool = False) -> None:
    """ConfigError unless ``value`` is a positive finite number (or None when allowed)."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or math.isinf(value):
        raise ConfigError(f"{name} must be a positive number{' or None' if allow_none else ''}, got {value!r}")


def non_negative(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or math.isinf(value):
        raise ConfigError(f"{name} must be a non-negative number, got {value!r}")


def choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {allowed}, got {value!r}")


def as_dtype(value: Any) -> torch.dtype:
    """``torch.float32``/``torch.float64`` from a dtype or its name."""
    if isinstance(value, torch.dtype) and value in DTYPES.values():
        return value
    if isinstance(value, str) and value.replace("torch.", "") in DTYPES:
        return DTYPES[value.replace("torch.", "")]
    raise ConfigError(f"dtype must be torch.float32 or torch.float64 (or 'float32'/'float64'), got {value!r}")


def values(options: Any) -> dict[str, Any]:
    """The fields of an options dataclass as a dict (shallow: tensors are not copied)."""
    return {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}


def build(cls: type, given: Mapping[str, Any], what: str) -> Any:
    """``cls(**given)`` validated, with a ConfigError naming unknown options."""
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise ConfigError(f"unknown option(s) {unknown} for {what}; its options are {names}")
    opts = cls(**given)
    validate = getattr(opts, "validate", None)
    if validate is not None:
        validate()
    return opts


def content_hash(obj: Any) -> str:
    """sha256 of the values of the tensors inside ``obj`` (nested mappings / sequences), and of the other leaves."""
    from ..core.fingerprint import hash_tree
    h = hashlib.sha256()
    hash_tree(h, obj)
    return h.hexdigest()


def _has_tensor(obj: Any) -> bool:
    if isinstance(obj, Tensor):
        return True
    if isinstance(obj, Mapping):
        return any(_has_tensor(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return any(_has_tensor(v) for v in obj)
    return False


def to_json(value: Any) -> Any:
    """A JSON-ready form of an option value: dtypes by name, anything holding tensors by ``sha256:<content hash>``."""
    if isinstance(value, torch.dtype):
        return str(value).replace("torch.", "")
    if isinstance(value, Mapping):  # a configuration: each option on its own
        return {str(k): to_json(v) for k, v in value.items()}
    if _has_tensor(value):
        return "sha256:" + content_hash(value)
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def from_json(name: str, value: Any) -> Any:
    """The option value of a manifest entry (the inverse of :func:`to_json` where one exists): dtype names back to
    dtypes, ``"inf"`` to infinity; a tensor option (``sha256:…``) comes back as None, its value being restored from
    the fitted estimator's saved state."""
    if name == "dtype":
        return as_dtype(value)
    if value == "inf":
        return math.inf
    if isinstance(value, str) and value.startswith("sha256:"):
        return None
    if isinstance(value, list) and name in ("betas",):
        return tuple(value)
    return value


def _scalar_type(annotation: Any) -> type | None:
    """``int``/``float``/``str``/``bool`` behind an annotation like ``int | None``; None for other types."""
    if isinstance(annotation, str):
        annotation = eval(annotation, {"Any": Any, "Tensor": Tensor, "torch": torch})  # noqa: S307 (our own text)
    args = typing.get_args(annotation) if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) \
        is typing.Union else (annotation,)
    kinds = [a for a in args if a is not type(None)]
    return kinds[0] if len(kinds) == 1 and kinds[0] in (int, float, str, bool) else None


def optional_of(annotation: Any) -> Any:
    """``X`` for ``X | None`` (and ``Optional[X]``); the annotation itself otherwise."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        kinds = [a for a in typing.get_args(annotation) if a is not type(None)]
        return kinds[0] if len(kinds) == 1 else annotation
    return annotation


def flag_fields(cls: type) -> dict[str, tuple[type, Any]]:
    """``{name: (type, default)}`` for the fields of an options dataclass a command line can set."""
    hints = typing.get_type_hints(cls) if not any(isinstance(f.type, str) for f in dataclasses.fields(cls)) else {}
    out = {}
    for f in dataclasses.fields(cls):
        kind = _scalar_type(hints.get(f.name, f.type))
        if f.name == "dtype":
            kind = str
        if kind is not None:
            out[f.name] = (kind, f.default)
    return out


def opt(default: Any, help: str, *, flag: str | None = None, choices: tuple[Any, ...] | None = None,
        factory: bool = False) -> Any:
    """A dataclass field with what its command-line flag needs: ``help``, the flag's name (default: the field's,
    dashed) and its ``choices``; ``factory`` for a mutable default (a list)."""
    meta = {"help": help, "flag": flag, "choices": choices}
    if factory:
        return dataclasses.field(default_factory=lambda: list(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def default_of(f: dataclasses.Field) -> Any:
    """The library default of a field (calling its factory)."""
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return f.default


def list_of(name: str, value: Any, kind: type, allow_none: bool = False, low: float | None = None) -> list:
    """``value`` as a non-empty list of ``kind`` (each at least ``low``), or a ConfigError naming ``name``."""
    if value is None and allow_none:
        return value
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(f"{name} must be a non-empty list, got {value!r}")
    out = []
    for v in value:
        if kind is float and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if not isinstance(v, kind) or isinstance(v, bool) or (low is not None and v < low):
            more = f" of at least {low}" if low is not None else ""
            raise ConfigError(f"{name} must be a list of {kind.__name__}s{more}, got {value!r}")
        out.append(v)
    return out
