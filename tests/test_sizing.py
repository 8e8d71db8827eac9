"""Sizing experiments to a time budget: the choice from given costs (no timing), and the measured costs' shape."""

from __future__ import annotations

import json

import pytest
import torch

from ifscope.experiments.sizing import (
    Costs,
    Sizes,
    Workload,
    choose,
    diagnose_workload,
    explicit_sizes,
    fade_workload,
)

GRID = (1, 3, 10, 30, 100, 300, 1000)
WANTED = Sizes(40, 20, GRID, "float64")
COSTS = Costs(step_s=0.01, row_s={"float64": 0.01, "float32": 0.004})
FADE = fade_workload(["run", "horizon", "graddot", "tracin", "unrolled"])


def test_predicted_seconds_are_the_truth_replicas_times_t_max_plus_unrolled_rows_times_sum_t():
    # 40 ids + unchanged + noise floor + TracIn = 43 replicas of 1000 steps; 20 queries x ΣT = 1444 row-steps
    assert FADE.seconds(WANTED, COSTS) == pytest.approx(0.01 * 43 * 1000 + 0.01 * 20 * 1444)
    assert FADE.seconds(WANTED.replace(reference_dtype="float32"), COSTS) == pytest.approx(430 + 0.004 * 20 * 1444)
    no_unrolled = fade_workload(["run", "horizon"])
    assert no_unrolled.seconds(WANTED, COSTS) == pytest.approx(0.01 * 42 * 1000)
    # diagnosis: 40 removals + unchanged + noise floor, and 3 up-weightings of 8 ids replayed with them
    assert diagnose_workload(8, 3).replicas(40) == 40 + 2 + 24
    assert diagnose_workload(8, 3).replicas(5) == 5 + 2 + 15


def test_what_fits_is_kept_as_asked():
    got = choose(WANTED, COSTS, FADE, budget_s=1e4)
    assert got.sizes == WANTED and got.reason == "everything asked fits"
    assert got.predicted_s == pytest.approx(FADE.seconds(WANTED, COSTS))


def test_shrinks_precision_then_ids_and_queries_then_the_largest_t_until_it_fits():
    budget = 60.0
    got = choose(WANTED, COSTS, FADE, budget)
    s = got.sizes
    assert got.predicted_s <= budget
    assert s.reference_dtype == "float32"
    assert (s.n_ids, s.n_queries) == (20, 10)  # halved to the soft floors before any horizon is dropped
    assert s.steps == GRID[: len(s.steps)] and max(s.steps) < 1000
    # the sizes are the largest of the order: one more horizon would not fit
    bigger = s.replace(steps=GRID[: len(s.steps) + 1])
    assert FADE.seconds(bigger, COSTS) > budget
    assert "T_max 1000 -> " in got.reason and "n_ids 40 -> 20" in got.reason


def test_explicit_sizes_are_never_changed():
    got = choose(WANTED, COSTS, FADE, 60.0, explicit=["steps", "reference_dtype"])
    assert got.sizes.steps == GRID and got.sizes.reference_dtype == "float64"
    assert (got.sizes.n_ids, got.sizes.n_queries) == (10, 5)  # shrunk as far as they go
    assert got.predicted_s > 60 and got.reason.startswith("over budget at the smallest sizes")
    every = choose(WANTED, COSTS, FADE, 1.0, explicit=["n_ids", "n_queries", "steps", "reference_dtype"])
    assert every.sizes == WANTED and every.reason == "over budget, but every size was given"


def test_float32_is_not_chosen_when_exact_runs_or_when_it_is_not_cheaper():
    with_exact = fade_workload(["run", "exact", "unrolled"])
    assert choose(WANTED, COSTS, with_exact, 60.0).sizes.reference_dtype == "float64"
    slow32 = Costs(0.01, {"float64": 0.01, "float32": 0.02})
    assert choose(WANTED, slow32, FADE, 60.0).sizes.reference_dtype == "float64"


def test_a_tiny_budget_ends_at_the_floors_and_two_horizons():
    got = choose(WANTED, COSTS, FADE, 1e-6)
    assert (got.sizes.n_ids, got.sizes.n_queries, got.sizes.steps) == (10, 5, (1, 3))


def test_a_size_that_costs_nothing_is_not_cut():
    got = choose(WANTED, COSTS, Workload(lambda n: n + 2, unrolled=False), 1e-6)  # the queries cost no replay
    assert (got.sizes.n_ids, got.sizes.n_queries, got.sizes.steps) == (10, 20, (1, 3))


def test_chosen_is_json_ready_and_says_the_measured_costs():
    got = choose(WANTED, COSTS, FADE, 60.0)
    d = json.loads(json.dumps(got.as_dict(), allow_nan=False))
    assert d["measured"] == {"replay_step_s": 0.01, "unrolled_row_step_s": {"float64": 0.01, "float32": 0.004}}
    assert d["wanted"]["steps"] == list(GRID) and d["steps"] == list(got.sizes.steps)
    assert "sized to a 60 s budget" in str(got)


def test_explicit_sizes_are_the_given_options():
    assert explicit_sizes({"n_ids": 5, "n_queries": None, "steps": [1, 2], "mode": "remove"}) == ["n_ids", "steps"]


def test_measured_costs_are_positive_on_a_small_model():
    from ifscope import classification
    from ifscope.experiments.measure import measure
    from ifscope.truth.training import Schedule, make_batches
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2))
    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
    schedule = Schedule(make_batches(16, 4, None, 0), lr=0.1)
    costs = measure(classification(model), (x, y), (x[:3], y[:3]), schedule, torch.float64, 3, ("float64",))
    assert costs.step_s > 0 and set(costs.row_s) == {"float64"} and costs.row_s["float64"] > 0


def test_cli_fade_and_diagnose_say_what_they_chose(tmp_path):
    from cli_helpers import TINY, ifscope
    fit = ["--recipe", TINY, "--workdir", str(tmp_path), "--rank", "5", "--iterations", "20"]
    out = ifscope("fade", *fit, "--steps", "1,3,10,30", "--n-queries", "6", "--krylov", "5", "--methods",
                  "run,horizon,unrolled", "--budget-s", "0.001", "--json")
    d = json.loads(out.stdout)
    chosen = d["chosen"]
    assert chosen["explicit"] == ["n_queries", "steps"] and chosen["wanted"]["n_ids"] == 40
    assert (chosen["n_ids"], chosen["n_queries"], chosen["steps"]) == (10, 6, [1, 3, 10, 30])  # flags win
    assert d["n_ids"] == 10 and len(d["ids"]) == 10 and len(d["query_ids"]) == 6 and d["steps"] == [1, 3, 10, 30]
    assert chosen["measured"]["replay_step_s"] > 0 and chosen["measured"]["unrolled_row_step_s"]["float64"] > 0
    assert "fade sized to a 0.001 s budget: 10 ids x 6 queries" in out.stderr
    out = ifscope("diagnose", *fit, "--checks", "divergence", "--n-train", "20", "--krylov", "5", "--budget-s",
                  "0.001", "--json")
    d = json.loads(out.stdout)
    assert d["chosen"]["steps"] == [1, 3] and d["chosen"]["n_ids"] == 10 and d["chosen"]["n_queries"] == 5
    assert d["settings"]["steps"] == [1, 3] and d["assumptions"]["divergence"]["steps"] == [1, 3]
    assert "diagnose sized to a 0.001 s budget" in out.stderr


def test_a_precision_the_model_cannot_run_is_left_for_the_other_and_said():
    broken64 = Costs(0.001, {"float64": float("inf"), "float32": 0.001}, {"float64": "vmap fails in float64"})
    got = choose(WANTED.replace(steps=(1, 3, 10)), broken64, FADE, 60.0)
    assert got.sizes.reference_dtype == "float32" and got.predicted_s <= 60
    assert "unrolled cannot run in float64 (vmap fails in float64)" in got.reason
    d = json.loads(json.dumps(got.as_dict(), allow_nan=False))
    assert d["measured"]["unrolled_row_step_s"]["float64"] is None and d["measured"]["failed"]["float64"]


def test_sizes_all_given_are_said_as_given():
    from ifscope.experiments.measure import size_to_budget
    got = size_to_budget(None, None, None, None, WANTED, FADE, 60.0, explicit=list(WANTED.__dataclass_fields__))
    assert got.sizes == WANTED and str(got).startswith("sizes as given: 40 ids x 20 queries")
    assert json.loads(json.dumps(got.as_dict(), allow_nan=False))["predicted_s"] is None
