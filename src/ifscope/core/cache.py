"""Where ifscope keeps what outlives a run: trained recipe weights and measured decisions."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Where trained recipe weights are kept: ``$IFSCOPE_CACHE``, else ``~/.cache/ifscope``."""
    root = os.environ.get("IFSCOPE_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "ifscope"
