"""``ifscope top`` with no options on every built-in recipe, timed from the shell as a user runs it.

Each recipe runs ``python -m ifscope top --recipe NAME --workdir FRESH --json`` in a new process (recipe load,
fit with the recipe's own estimator defaults, training embeddings, top-k of the default queries) and the wall time
and the CPU time (user + sys of the process: on a loaded machine the figure to compare, since the wall time then
measures the other jobs) are printed beside the options the command chose. Recipe weights come from the cache; point IFSCOPE_CACHE at an
empty directory to include fine-tuning.

    python benchmarks/defaults.py --threads 2                    # all built-in recipes
    python benchmarks/defaults.py --threads 1 tweets-minilm
    python benchmarks/defaults.py digits-mlp tweets-minilm --json   # the rows as JSON (docs/results/top-tweets.json)
    python benchmarks/defaults.py --repeat 3 tweets-minilm          # each recipe 3 times: the median, and every run

On a shared 2-core machine one run of the same command can take 55 s or 80 s; ``--repeat`` reports the median
wall and CPU time of its runs and keeps each run's wall time (``walls``) beside it.
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


def run_top(recipe: str, threads: int, extra: list[str]) -> dict:
    """Wall time, the options chosen (the command's stderr line) and the first query's proponents."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with tempfile.TemporaryDirectory() as workdir:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "ifscope", "top", "--recipe", recipe, "--workdir", workdir,
                               "--json", *extra], capture_output=True, text=True, env=env)
        seconds = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"ifscope top --recipe {recipe} failed:\n{proc.stderr[-2000:]}")
    out = json.loads(proc.stdout)
    lines = [line.split(": ", 2) for line in proc.stderr.replace("\r", "\n").splitlines()]
    from ifscope.estimators import METHODS  # the line "ifscope: METHOD: the options chosen, and where from"
    chose = next((": ".join(parts[1:]) for parts in lines if len(parts) == 3 and parts[0] == "ifscope"
                  and parts[1] in METHODS), "")
    first = out["queries"][0]
    # the warning's text only: the "path:line: " before it names this machine's checkout
    warned = [line.split("NumericalWarning: ", 1)[-1].strip() for line in proc.stderr.splitlines()
              if "NumericalWarning" in line]
    return {"recipe": recipe, "seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1), "threads": threads, "chose": chose, "view": out["view"],
            "warnings": warned,
            "query": first.get("text", f"#{first['index']}"),
            "proponents": [e.get("text", f"#{e['index']}") for e in first["proponents"][:3]], "texts": "text" in first}


def repeated(recipe: str, threads: int, extra: list[str], repeat: int) -> dict:
    """:func:`run_top` ``repeat`` times: the last run's row with the median wall and CPU seconds, and every run's wall."""
    import statistics
    runs = [run_top(recipe, threads, extra) for _ in range(repeat)]
    return {**runs[-1], "seconds": statistics.median(r["seconds"] for r in runs),
            "cpu_seconds": statistics.median(r["cpu_seconds"] for r in runs), "walls": [r["seconds"] for r in runs]}


def main() -> None:
    from ifscope.recipes import _registry
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("recipes", nargs="*", default=None, help="built-in recipe names (default: all)")
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", 2)))
    p.add_argument("--repeat", type=int, default=1, help="runs per recipe; the median is reported (default 1)")
    p.add_argument("--json", action="store_true", help="print the rows as one JSON list instead of a table")
    p.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more options for ifscope top")
    args = p.parse_args()
    if args.repeat < 1:
        p.error(f"--repeat must be at least 1, got {args.repeat}")
    if args.json:
        print(json.dumps([{**repeated(name, args.threads, args.extra, args.repeat), "load": os.getloadavg()[0]}
                          for name in args.recipes or sorted(_registry())], indent=1))
        return
    load = os.getloadavg()[0]
    print(f"threads {args.threads}, load average at start {load:.1f} (on {os.cpu_count()} cores)")
    print("| recipe | wall s (load + fit + embed + top) | CPU s (user + sys) | options chosen | first query's top "
          "proponents |")
    print("|---|---|---|---|---|")
    for name in args.recipes or sorted(_registry()):
        r = repeated(name, args.threads, args.extra, args.repeat)
        shown = "; ".join(t[:50] for t in r["proponents"])
        print(f"| {name} | {r['seconds']} | {r['cpu_seconds']} | {r['chose']} | {shown} |", flush=True)
    print(f"load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
