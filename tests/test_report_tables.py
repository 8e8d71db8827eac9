"""The report as a person reads it: T as columns, rounded numbers, the deciding figures, one sentence per section."""

import re

from report_fixtures import CORRECT, DIAGNOSE, FADE

from ifscope.report.tables import (
    assumptions_meaning,
    correction_meaning,
    deciding_figures,
    fade_meaning,
    fade_rows,
    fade_shape,
    per_t_tables,
    rounded,
    t_table,
    tracks_up_to,
)


def test_rounding_reads_like_a_person_writes():
    assert [rounded(v) for v in (0.93124, 42.0, 1.1449, 1.0, 310.0, 12345.6, 0.000412, 7, None, "n/a")] == \
        ["0.93", "42", "1.14", "1.00", "310", "12346", "4.1e-04", "7", "–", "n/a"]


def test_fade_table_has_one_column_per_horizon():
    table = t_table(FADE["steps"], fade_rows(FADE["methods"]))
    assert re.findall(r"<th>T = (\d+)</th>", table) == [str(t) for t in FADE["steps"]]
    assert "<tr><th>arnoldi Spearman</th><td>0.95</td><td>0.90</td><td>0.78</td><td>0.50</td><td>0.28</td></tr>" in table
    assert table.count("<tr>") == 1 + 4  # header + 2 methods x (Spearman, Pearson)


def test_fade_sentence_names_the_horizon_of_the_best_ranking():
    # arnoldi keeps Spearman >= 0.5 up to T = 30, exact over the whole grid
    assert tracks_up_to(FADE["steps"], FADE["methods"]["arnoldi"]["spearman"]) == 30
    assert "exact ranking follows" in fade_meaning(FADE["steps"], FADE["methods"]) and "every horizon measured, up " \
        "to T = 100" in fade_meaning(FADE["steps"], FADE["methods"])
    only = {"arnoldi": FADE["methods"]["arnoldi"]}
    assert "up to T = 30 steps" in fade_meaning(FADE["steps"], only)
    assert "hints" in fade_meaning([1, 10], {"graddot": {"spearman": [0.2, 0.1]}})


def test_fade_sentence_says_which_rankings_fade_and_which_are_built_not_to():
    steps = [1, 30, 300]
    methods = {"graddot": {"spearman": [0.9, 0.6, 0.3]}, "tracin": {"spearman": [0.9, 0.5, 0.4]},
               "horizon": {"spearman": [0.95, 0.93, 0.92]}, "arnoldi": {"spearman": [0.8, 0.7, 0.6]}}
    text = fade_shape(steps, methods)
    assert "fading for graddot (0.90 → 0.30), tracin (0.90 → 0.40)" in text
    assert "holding for arnoldi (0.80 → 0.60), horizon (0.95 → 0.92)" in text
    assert "horizon is recomputed for each T" in text and "arnoldi is recomputed" not in text
    rising = fade_shape(steps, {**methods, "arnoldi": {"spearman": [0.2, 0.3, 0.42]}})
    assert "below 0.5 without fading for arnoldi (0.20 → 0.42)" in rising and ": fading for arnoldi" not in rising
    flat = fade_shape(steps, {"arnoldi": {"spearman": [0.99, 0.98, 0.97]}})
    assert flat.startswith("No ranking fades from T = 1 to T = 300")
    assert "up-weighting an example" in fade_meaning(steps, methods, "upweight") and text in fade_meaning(steps, methods)


def test_assumption_cells_keep_only_the_deciding_figures():
    stability = {"verdict": "questionable", "condition": 310.0, "machine_epsilon": 1.2e-7, "condition_times_epsilon": 3.7e-5,
                 "max_relative_residual": 0.02, "agreement": {"rank_k_vs_2k": 0.61, "float32_vs_float64": 0.99},
                 "problems": ["rank_k_vs_2k"]}
    assert deciding_figures("stability", stability) == [("condition_times_epsilon", 3.7e-5),
                                                        ("max_relative_residual", 0.02),
                                                        ("lowest agreement (rank_k_vs_2k)", 0.61)]
    divergence = {"verdict": "violated", "horizon": None, "rate": 0.02, "steps": [1, 10], "gap": [1e-5, 3e-4]}
    assert deciding_figures("divergence", divergence)[0] == ("horizon (steps)", "unbounded")
    tables = per_t_tables({"divergence": divergence, "first_order": {"steps": [1, 10], "remainder": {
        "-1": [0.1, 0.4], "0.5": [0.01, 0.05]}}})
    assert tables.count("<th>T = 10</th>") == 2 and "<th>removal</th>" in tables and "<th>ε = 0.5</th>" in tables


def test_one_sentence_for_assumptions_and_correction():
    text = assumptions_meaning(DIAGNOSE["assumptions"])
    assert text.startswith("2 of 5 assumptions hold") and "weakest is divergence (violated)" in text
    assert correction_meaning(CORRECT) == ("On this model, steps on the most influential examples fix 58% of the "
                                           "mistakes, better than the best baseline (random same class, 25%).")
