"""The README's and docs' generated tables equal what their stored command output renders (none retyped)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_generated_tables_are_up_to_date():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "docs_tables.py"), "--check"],
                          capture_output=True, text=True, env={"PYTHONPATH": str(ROOT / "src"), "PATH": ""})
    assert proc.returncode == 0, proc.stderr


def _docs_tables():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import docs_tables
    finally:
        sys.path.pop(0)
    return docs_tables


def test_fade_summary_judges_issue_13s_bar():
    t = _docs_tables()
    assert t.fade_verdict(0.85, [0.1]).startswith("no")
    assert t.fade_verdict(1.0, [0.2, 0.5]).startswith("yes")
    assert t.fade_verdict(1.0, [0.2, 0.6]) == "fades, not to ½"
    assert t.fade_verdict(1.0, [0.2, 0.95]) == "not all fade"
    run = {"steps": [1, 10], "mode": "remove", "lr": 0.1, "train_batch_size": None, "_meta": {"command": "c", "threads": 2},
           "methods": {"graddot": {"pearson": [0.99, 0.3], "horizon_half": 4.0},
                       "horizon": {"pearson": [0.95, 0.9], "horizon_half": None},
                       "tracin": {"pearson": [1.0, 0.0], "horizon_half": 2.0},  # trajectory method: not a checkpoint score
                       "unrolled": {"pearson": [1.0, 0.97], "horizon_half": None}}}
    row = t.fade_summary({"r": run}).splitlines()[2]
    assert "0.990 at T = 1 (graddot)" in row and "0.300–0.900 at T = 10 (2 scores)" in row
    assert "| 4 – > 10 |" in row and "| 0.970 |" in row and row.endswith("| not all fade |")
