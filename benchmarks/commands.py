"""Every command of one recipe with its defaults, timed from the shell as a user runs them, in one run directory.

The commands run in order in new processes (``python -m ifscope CMD --recipe NAME --workdir DIR --json``; ``report``
takes the directory alone): the first fits the recipe's estimator, the later ones reuse that fit as a user's second
command does. Each row gives the wall time, the CPU time (user + sys of the process: on a loaded machine the figure
to compare, since the wall time then measures the other jobs), the peak RSS of the process, against the target of issue 22 (every command with its defaults within 5 minutes on 2 cores). Recipe
weights come from the cache; point IFSCOPE_CACHE at an empty directory to include training. ``--json`` prints the
rows as JSON on stdout (what ``benchmarks/docs_tables.py --run commands-tweets-gpt`` stores, with its ``_meta``).

    PYTHONPATH=src python benchmarks/commands.py tweets-gpt --threads 2 --json
    PYTHONPATH=src python benchmarks/commands.py tweets-gpt --commands fit top --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ["fit", "scores", "top", "self-influence", "fade", "diagnose", "correct", "lds", "report"]
EXTRA = {"lds": ["--retrain", "continue"]}  # the flags each command is shown with (lds from scratch retrains 100x)
TARGET_S = 300.0  # issue 22: every command with the recipe's defaults within 5 minutes on 2 cores


def run_command(command: str, recipe: str, workdir: str, threads: int, limit_s: float) -> dict:
    """Wall and CPU seconds and peak RSS of one command in a new process, stopped after ``limit_s`` seconds (the
    row then says ``timed_out``)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    extra = EXTRA.get(command, [])
    argv = ([command, workdir, "--json"] if command == "report" else
            [command, "--recipe", recipe, "--workdir", workdir, "--json", *extra])
    with tempfile.TemporaryFile("w+") as out_f, tempfile.TemporaryFile("w+") as err_f:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "ifscope", *argv], stdout=out_f, stderr=err_f, text=True,
                                env=env)
        timer = threading.Timer(limit_s, proc.kill)
        timer.start()
        _, status, usage = os.wait4(proc.pid, 0)  # this process's own rusage: CPU seconds and peak RSS
        seconds = time.perf_counter() - t0
        timed_out = not timer.is_alive()
        timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out_f.seek(0), err_f.seek(0)
        stdout, stderr = out_f.read(), err_f.read()
    shown = f"ifscope {command} " + ("DIR" if command == "report" else f"--recipe {recipe} {' '.join(extra)}")
    if not timed_out and proc.returncode != 0:
        raise SystemExit(f"{shown} failed:\n{stderr[-2000:]}")
    if not timed_out:
        json.loads(stdout)  # the command's --json output must parse
    cpu = usage.ru_utime + usage.ru_stime
    return {"command": shown.strip(), "seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1),
            "peak_rss_mb": round(usage.ru_maxrss / 1024), "within_target": not timed_out and seconds <= TARGET_S,
            "timed_out": timed_out}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("recipe", help="a built-in recipe name or FILE.py:FUNCTION")
    p.add_argument("--commands", nargs="+", default=COMMANDS, choices=COMMANDS)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workdir", default=None, help="run directory (default: a fresh temporary one)")
    p.add_argument("--limit-s", type=float, default=2 * TARGET_S, help="stop a command after this many seconds")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout (rows go to stderr)")
    args = p.parse_args()
    load = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for command in args.commands:
            rows.append(run_command(command, args.recipe, args.workdir or tmp, args.threads, args.limit_s))
            print(json.dumps(rows[-1]), file=sys.stderr if args.json else sys.stdout, flush=True)
    result = {"recipe": args.recipe, "threads": args.threads, "load_average_at_start": round(load, 1),
              "cores": os.cpu_count(), "target_s": TARGET_S, "limit_s": args.limit_s, "rows": rows}
    if args.json:
        print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
