"""Every command of one recipe with its defaults, timed from the shell as a user runs them, in one run directory.

The commands run in order in new processes (``python -m ifscope CMD --recipe NAME --workdir DIR --json``): the first
fits the recipe's estimator, the later ones reuse that fit as a user's second command does; each row gives the wall
time and the CPU time (user + sys of the process: on a loaded machine the figure to compare, since the wall time
then measures the other jobs). Recipe weights come from the cache; point IFSCOPE_CACHE at an empty directory to
include training. The rows go to ``--out`` as JSON with the thread count and the load average.

    python benchmarks/commands.py tweets-gpt --threads 2 --out docs/results/commands-tweets-gpt.json
    python benchmarks/commands.py tweets-gpt --commands fit top --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ["fit", "scores", "top", "self-influence", "correct"]


def run_command(command: str, recipe: str, workdir: str, threads: int, extra: list[str]) -> dict:
    """Wall and CPU seconds of one command in a new process, and the summary line it printed."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "ifscope", command, "--recipe", recipe, "--workdir", workdir,
                           "--json", *extra], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"ifscope {command} --recipe {recipe} failed:\n{proc.stderr[-2000:]}")
    out = json.loads(proc.stdout)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"command": f"ifscope {command} --recipe {recipe} {' '.join(extra)}".strip(), "seconds": round(seconds, 1),
            "cpu_seconds": round(cpu, 1), "summary": str(out.get("summary", "")).splitlines()[:1]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("recipe", help="a built-in recipe name or FILE.py:FUNCTION")
    p.add_argument("--commands", nargs="+", default=COMMANDS, choices=COMMANDS)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workdir", default=None, help="run directory (default: a fresh temporary one)")
    p.add_argument("--out", default=None, help="write the rows here as JSON")
    args = p.parse_args()
    load = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for command in args.commands:
            rows.append(run_command(command, args.recipe, args.workdir or tmp, args.threads, []))
            print(json.dumps(rows[-1]), flush=True)
    result = {"recipe": args.recipe, "threads": args.threads, "load_average_at_start": round(load, 1),
              "cores": os.cpu_count(), "rows": rows}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
