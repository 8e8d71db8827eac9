"""The speed verdict of benchmarks/peers.py: the fastest peer at least as good, at one T and at every T at once."""

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import peers_report  # noqa: E402

ROWS = [
    {"method": "ifscope defaults", "seconds": 4.0, "vs_gt_T10": 0.20, "vs_gt_T100": 0.60},
    {"method": "ifscope arnoldi", "seconds": 0.1, "vs_gt_T10": 0.90, "vs_gt_T100": 0.90},  # ours: never a rival
    {"method": "kfac", "seconds": 3.0, "vs_gt_T10": 0.50, "vs_gt_T100": 0.40},  # better at T=10 only
    {"method": "arnoldi", "seconds": 20.0, "vs_gt_T10": 0.25, "vs_gt_T100": 0.65},  # at least as good at both
    {"method": "broken", "seconds": 1.0, "vs_gt_T10": math.nan, "vs_gt_T100": math.nan},  # NaN scores never count
    {"method": "failed", "error": "RuntimeError: out of memory"},
]


def test_one_t_takes_the_fastest_peer_as_good_there_and_every_t_one_as_good_at_both():
    at10 = peers_report.verdict(ROWS, 10, "ifscope defaults")
    assert (at10["fastest_as_good"], at10["ratio"], at10["horizon"]) == ("kfac", 4.0 / 3.0, 10)
    at100 = peers_report.verdict(ROWS, 100, "ifscope defaults")
    assert at100["fastest_as_good"] == "arnoldi"
    every = peers_report.verdict(ROWS, [10, 100], "ifscope defaults")
    assert (every["fastest_as_good"], every["ratio"], every["horizons"]) == ("arnoldi", 0.2, [10, 100])
    alone = peers_report.verdict([r for r in ROWS if r["method"] != "arnoldi"], [10, 100], "ifscope defaults")
    assert alone["fastest_as_good"] is None and alone["ratio"] is None
    assert peers_report.verdict(ROWS, 10, "ifscope abif") is None  # no such row


def test_the_summary_says_both_readings():
    summary = {"verdicts": [peers_report.verdict(ROWS, t, "ifscope defaults") for t in (10, 100)]}
    lines = peers_report.render_summary(summary, ROWS).splitlines()
    assert lines[0].endswith("kfac 3.00 s -> ratio 1.33 (target <= 0.5)")
    assert lines[2] == ("ifscope defaults end to end 4.00 s (Spearman 0.20 / 0.60 at T=10 / 100); fastest peer at "
                        "least as good at every T: arnoldi 20.00 s -> ratio 0.20 (target <= 0.5)")
