"""The manifest's shape, checked on every read: a hostile or damaged ``manifest.json`` is refused in one line
instead of failing later (or naming files outside the run directory)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..core.errors import ArtifactError
from ..core.files import read_json
from .paths import check_name

FORMAT_VERSION = 3  # 3: every artifact records the fit it belongs to; 2: the source (recipe) and config
CURVATURE = "curvature.safetensors"
OBJECTS = ("artifacts", "fingerprints", "config", "versions", "source", "options")


def config_hash(m: Mapping[str, Any]) -> str:
    """sha256 of a manifest's configuration: what its curvature was fitted under."""
    return hashlib.sha256(json.dumps(m.get("config", {}), sort_keys=True).encode()).hexdigest()


def _upgrade(m: dict[str, Any]) -> None:
    """Format 2 recorded no fit per artifact; every artifact there belonged to the recorded config and curvature
    (a refit dropped the others), so each gets that fit. Its shards carry no curvature checksum: recomputed."""
    if m["format_version"] >= 3:
        return
    fps = m.get("fingerprints", {})
    curvature = m["artifacts"].get(CURVATURE, {}).get("sha256")
    for name, entry in m["artifacts"].items():
        key, value = ("config", config_hash(m)) if name == CURVATURE else ("curvature", curvature)
        entry.setdefault("fit", {key: value, "model": fps.get("model"), "train": fps.get("train")})


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", type(None): "null", bool: "a boolean"}.get(
        type(value), "a number")


def _malformed(file: Path, what: str) -> ArtifactError:
    return ArtifactError(f"{file} is malformed ({what}); delete it to start over (artifacts are recomputed) or use "
                         "another --workdir")


def read_manifest(file: Path) -> dict[str, Any]:
    """The manifest at ``file`` (``{}`` when absent), its fields checked: objects where objects belong, checksums
    as strings, artifact names inside the run directory."""
    if not file.exists():
        return {}
    m = read_json(file)
    if not isinstance(m, dict) or "format_version" not in m:
        raise ArtifactError(f"{file} is not an ifscope manifest (no format_version); use another --workdir")
    version = m["format_version"]
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ArtifactError(f"{file} has format_version {version!r}, newer than this ifscope reads "
                            f"({FORMAT_VERSION}); upgrade ifscope or use another --workdir")
    for key in OBJECTS:
        if key in m and not isinstance(m[key], dict):
            raise _malformed(file, f"{key!r} is {_kind(m[key])}, not an object")
    for key, value in m.get("fingerprints", {}).items():
        if not isinstance(value, str):
            raise _malformed(file, f"fingerprint {key!r} is {_kind(value)}, not a string")
    for name, entry in m.setdefault("artifacts", {}).items():
        check_name(name, str(file))
        if not (isinstance(entry, dict) and isinstance(entry.get("sha256"), str)
                and isinstance(entry.get("bytes"), int) and isinstance(entry.get("fit", {}), dict)):
            raise _malformed(file, f"artifact {name!r} needs a sha256 string and a bytes count")
    source = m.get("source", {})
    if not isinstance(source.get("recipe", ""), str) or not isinstance(source.get("recipe_options", {}), dict) \
            or not isinstance(source.get("seed", 0), int):
        raise _malformed(file, "source needs a recipe string, recipe_options object and an integer seed")
    _upgrade(m)
    return m
