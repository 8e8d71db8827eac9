"""Running the real `ifscope` command line from tests."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "tests" / "recipes_for_tests.py") + ":tiny"
WIDE = str(ROOT / "tests" / "recipes_for_tests.py") + ":wide"


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return env


def ifscope(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``python -m ifscope ARGS`` (the real command line) and return the finished process."""
    proc = subprocess.run([sys.executable, "-m", "ifscope", *args], capture_output=True, text=True, env=cli_env(),
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"ifscope {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc
