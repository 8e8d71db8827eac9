"""The README's and docs' tables and quoted figures equal what their stored command output renders (none retyped),
and ``benchmarks/docs_tables.py --check`` fails when a stored result is missing or a numeric table is unmarked."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_generated_tables_are_up_to_date():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "docs_tables.py"), "--check"],
                          capture_output=True, text=True, env={"PYTHONPATH": str(ROOT / "src"), "PATH": ""})
    assert proc.returncode == 0, proc.stderr


@pytest.fixture
def tables():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import docs_tables
    finally:
        sys.path.pop(0)
    return docs_tables


@pytest.fixture
def scripts(tables):
    import docs_render_scripts  # importable once docs_tables has been
    return docs_render_scripts


def test_a_deleted_result_fails_the_check(tables, tmp_path, monkeypatch):
    shutil.copytree(tables.RESULTS, tmp_path / "results")
    monkeypatch.setattr(tables, "RESULTS", tmp_path / "results")
    assert tables.update(check=True) == ([], [])
    (tmp_path / "results" / "peers-wide.json").unlink()  # rendered in README.md and docs/performance.md
    stale, problems = tables.update(check=True)
    assert any("README.md: table peers-wide has no stored result (peers-wide)" in p for p in problems), problems
    assert any(p.startswith("docs/performance.md: table peers-wide") for p in problems), problems


def test_a_deleted_figure_source_fails_the_check(tables, tmp_path, monkeypatch):
    shutil.copytree(tables.RESULTS, tmp_path / "results")
    monkeypatch.setattr(tables, "RESULTS", tmp_path / "results")
    (tmp_path / "results" / "self-influence-flip.json").unlink()
    _, problems = tables.update(check=True)
    assert any("figure self-influence-auc has no stored result" in p for p in problems), problems


def test_meta_not_written_by_the_runner_is_refused(tables, tmp_path, monkeypatch):
    monkeypatch.setattr(tables, "RESULTS", tmp_path)
    (tmp_path / "x.json").write_text('{"_meta": {"command": "ifscope fade", "threads": 1, "note": "by hand"}}')
    with pytest.raises(SystemExit, match="not the runner's"):
        tables.load("x")
    (tmp_path / "x.json").write_text('{"_meta": {"command": "ifscope fade", "by_hand": "what ran"}}')
    assert "recorded by hand" in tables.R.command_line(tables.load("x"))


NUMERIC = "| method | seconds |\n|---|---:|\n| arnoldi | 7.96 |\n"


@pytest.mark.parametrize("text, caught", [
    (NUMERIC, True),
    ("Some prose.\n\n" + NUMERIC + "\nMore prose.\n", True),
    ("<!-- table:peers-wide -->\n`cmd`\n\n" + NUMERIC + "<!-- /table:peers-wide -->\n", False),
    ("<!-- not-measured -->\n" + NUMERIC, False),
    ("```\n" + NUMERIC + "```\n", False),  # a code block, not a table
    ("| method | for |\n|---|---|\n| `arnoldi` | `rank=50` large models |\n", False),  # digits only in code
    ("| k | λ_k |\n|---|---|\n| 1 | 1.21 |\n", True),  # a number in the second column
    ("| k | s |\n|---|---|\n<!-- a run's note -->\n| 1 | 1.21 |\n", True),  # a comment inside does not end it
    ("<!-- not-measured -->\n| k | s |\n|---|---|\n<!-- note -->\n| 1 | 2 |\n", False),
])
def test_unmarked_numeric_tables_are_caught(tables, text, caught):
    assert bool(tables.docs_check.unmarked_tables("f.md", text)) is caught


def test_fade_summary_judges_issue_13s_bar(tables):
    t = tables.R
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


def test_a_benchmark_scripts_rows_render_by_columns(scripts):
    render = scripts.columns_table([("N", "{n:,}"), ("top-k s", "{topk_s:.1f}")])
    text = render({"rows": [{"n": 10000, "topk_s": 1.234}], "_meta": {"threads": 2, "seconds": 5.0}})
    assert text.splitlines()[:3] == ["| N | top-k s |", "|---|---|", "| 10,000 | 1.2 |"]
    assert text.endswith("2 thread(s), 5 s.")


def _lds_run(retrain: str, rows: list[dict]) -> dict:
    """A stored benchmarks/lds.py result with ``rows`` (method, LDS, interval, seconds)."""
    meta = {"command": "lds.py", "threads": 2, "seconds": 3.0, "machine": "m", "date": "d"}
    args = {"recipe": "r", "retrain": retrain, "steps": 100, "subsets": 6, "fraction": 0.5, "seeds": 2, "queries": 3}
    return {"args": args, "_meta": meta, "worst_diff": 0.0, "seed_agreement": 0.5 if retrain == "scratch" else None,
            "n_train": 10, "parameters": 8,
            "rows": [{"method": m, "seconds": s, "parameters": p, "loss": {"ifscope": v, "ci": [v - 0.1, v + 0.1]},
                      "margin": {"ifscope": v}} for m, v, s, p in rows]}


def test_lds_runs_render_side_by_side(tables):
    import docs_render_lds as lds
    run = _lds_run("scratch", [("ifscope exact", 0.9, 1.0, 8), ("kronfluence ekfac", 0.5, 2.0, 4)])
    cont = _lds_run("continue", [("ifscope exact", -0.5, 1.0, 8), ("ifscope unrolled", 0.95, 9.0, 8)])
    cont["rows"].append({"method": "kronfluence ekfac", "error": "ValueError: no", "seconds": 0.1})
    lines = lds.lds_pair({"a": run, "b": cont}).splitlines()
    assert lines[0] == ("| method | LDS, scratch (95 % CI) | margin | s | LDS, continue T = 100 (95 % CI) | margin | "
                        "s |")
    assert lines[2] == "| ifscope exact | **0.900 [0.800, 1.000]** | 0.900 | 1.0 | −0.500 [−0.600, −0.400] | −0.500 | 1.0 |"
    assert lines[3] == "| ifscope unrolled |  |  |  | **0.950 [0.850, 1.050]** | 0.950 | 9.0 |"
    assert lines[4] == "| kronfluence ekfac (4 of 8 parameters) | 0.500 [0.400, 0.600] | 0.500 | 2.0 | failed |  |  |"
    assert "retraining-seed agreement 0.500" in lines[6] and lines[-1] == "Failed: kronfluence ekfac (continue T = 100): ValueError: no."


def test_lds_targets_compare_the_cheapest_method_that_reaches_the_best_peer(tables):
    import docs_render_lds as lds
    slow = _lds_run("scratch", [("ifscope a", 0.9, 5.0, 8), ("ifscope b", 0.45, 0.5, 8), ("dattri c", 0.6, 1.0, 8)])
    fast = _lds_run("continue", [("ifscope a", 0.9, 5.0, 8), ("ifscope b", 0.55, 0.5, 8), ("dattri c", 0.6, 1.0, 8)])
    beaten = _lds_run("continue", [("ifscope a", 0.3, 5.0, 8), ("dattri c", 0.6, 1.0, 8)])
    lines = lds.lds_targets({"s": slow, "f": fast, "b": beaten}).splitlines()
    assert lines[2].endswith("| dattri c: 0.600 [0.500, 0.700], 1.0 s | ifscope a: 0.900 [0.800, 1.000], 5.0 s | no: slower |")
    assert lines[3].endswith("| ifscope b: 0.550 [0.450, 0.650], 0.5 s | yes |")
    assert lines[4].endswith("| – | no: none reaches it |")


def test_an_unclosed_region_fails_the_check(tables, tmp_path, monkeypatch):
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("Prose.\n\n<!-- table:peers-wide -->\n`old`\n\nNo closing marker.\n")
    monkeypatch.setattr(tables, "ROOT", tmp_path)
    _, problems = tables.update(check=True)
    assert problems == ["README.md: table peers-wide has no closing <!-- /table:peers-wide --> right after it"]


@pytest.mark.parametrize("text, caught", [
    ("The scratch run took 386 s wall (65 s user).\n", ["386 s", "65 s"]),
    ("```bash\nifscope lds --recipe digits-linear   # 100 s wall\n```\n", ["100 s"]),
    ("It takes <!-- figure:x -->386 s<!-- /figure:x --> on 2 threads.\n", []),  # rendered from a stored result
    ("cut to a 100 s budget; `--budget-s` (default 60 s); targets ≤ 5 min; `sleep 3 s`\n", []),  # settings
    ("<!-- table:x -->\nran in 12 s\n<!-- /table:x -->\n", []),
    ("| budget | 60 s |\n", []),  # tables are the table check's
])
def test_durations_typed_in_prose_are_caught(tables, text, caught):
    found = tables.docs_check.unmarked_durations("f.md", text)
    assert [f.split("'")[1] for f in found] == caught


@pytest.mark.parametrize("file, text, caught", [
    ("docs/fade.md", "Pearson 0.93 at T = 1, slope −1.20 and a gap of 1.6e-3.\n", ["0.93", "1.20", "1.6"]),
    ("docs/fade.md", "at lr 0.005 with ε = 0.01, Spearman ≥ 0.9, up to 0.5; Python 3.10; 1.9M parameters\n", []),
    ("docs/fade.md", "a setting in code `0.93`; <!-- figure:x -->0.93<!-- /figure:x --> rendered\n", []),
    ("docs/fade.md", "```\nprint(0.93)\n```\n| method | 0.93 |\n<!-- table:x -->\nran at 0.93\n<!-- /table:x -->\n", []),
    ("docs/fade.md", "<!-- not-stored -->\nAn old run (not stored) gave 0.93.\n<!-- /not-stored -->\n", []),
    ("docs/fade.md", "<!-- not-stored -->\nAn old run gave 0.93.\n<!-- /not-stored -->\n", ["region"]),
    ("docs/performance.md", "Pearson 0.93.\n", []),  # a page another change rewrites: not read for decimals
    ("docs/evaluation.md", "Pearson 0.93.\n", ["0.93"]),
])
def test_decimals_typed_in_prose_are_caught(tables, file, text, caught):
    found = tables.docs_check.unmarked_decimals(file, text)
    assert [m.split("'")[1] if "'" in m else "region" for m, _ in found] == caught
    assert not any(listed for _, listed in found)


def test_a_listed_section_is_listed_not_failed(tables):
    text = "### tweets-gpt: correcting\n\nNLL moved by 0.011.\n\n## Next\n\nPearson 0.93.\n"
    found = tables.docs_check.unmarked_decimals("docs/experiments.md", text)
    assert [(m.split("'")[1], listed) for m, listed in found] == [("0.011", True), ("0.93", False)]


def test_a_planted_decimal_fails_the_check(tables, tmp_path, monkeypatch):
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("Prose.\n\nThe LDS is 0.955 on the linear model.\n")
    monkeypatch.setattr(tables, "ROOT", tmp_path)
    _, problems = tables.update(check=True)
    assert len(problems) == 1 and problems[0].startswith("README.md:3: '0.955'"), problems
