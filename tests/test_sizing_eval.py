"""``correct`` and ``lds`` sized to a time budget (the choice from given costs, then the commands at tiny sizes), and
the float64 → float32 fallback of the references on a model that cannot run in float64."""

from __future__ import annotations

import json
import textwrap

import pytest

from ifscope.experiments.sizing_eval import (
    CorrectCosts,
    CorrectSizes,
    LDSCosts,
    LDSSizes,
    choose_correct,
    choose_lds,
)

CORRECT = CorrectCosts(step_s=0.01, check_s=0.002, eval_s=0.05, score_s=0.02, methods=4)
LDS = LDSCosts(retrain_s=2.0, step_s=float("nan"), score_s=0.001, setup_s=1.0, methods=2)


def test_a_correction_costs_steps_checks_and_judging_per_rule_and_one_score_per_query():
    s = CorrectSizes(queries=10, steps=30)
    assert CORRECT.seconds(s) == pytest.approx(10 * 4 * (30 * 0.012 + 0.05) + 10 * 0.02)
    group = CorrectCosts(0.01, 0.002, 0.05, 0.02, 4, group=True)  # one correction for all the queries
    assert group.seconds(s) == pytest.approx(4 * (30 * 0.012 + 0.05) + 10 * 0.02)


def test_correct_keeps_what_fits_then_cuts_queries_then_steps():
    wanted = CorrectSizes(40, 30)
    assert choose_correct(wanted, CORRECT, 1e4).sizes == wanted
    got = choose_correct(wanted, CORRECT, 10.0)
    assert got.sizes == CorrectSizes(10, 15) and got.predicted_s <= 10.0  # queries to 10 first, then the steps
    assert CORRECT.seconds(CorrectSizes(10, 30)) > 10.0
    assert "queries 40 -> 10" in got.reason and "steps 30 -> 15" in got.reason
    tiny = choose_correct(wanted, CORRECT, 1e-6)
    assert tiny.sizes == CorrectSizes(3, 5) and tiny.reason.startswith("over budget at the smallest sizes")


def test_correct_never_changes_a_size_the_user_set():
    got = choose_correct(CorrectSizes(40, 30), CORRECT, 1e-6, explicit=["steps"])
    assert got.sizes == CorrectSizes(3, 30) and got.explicit == ["steps"]
    d = json.loads(json.dumps(got.as_dict(), allow_nan=False))
    assert d["queries"] == 3 and d["wanted"] == {"queries": 40, "steps": 30} and d["measured"]["step_s"] == 0.01


def test_lds_cuts_seeds_then_subsets_then_queries_and_never_the_steps():
    wanted = LDSSizes(subsets=100, seeds=3, queries=50, steps=100, retrain="scratch")
    assert LDS.seconds(wanted) == pytest.approx(100 * 3 * 2.0 + 2 * 50 * 0.001 + 1.0)
    assert choose_lds(wanted, LDS, 1e4).sizes == wanted
    got = choose_lds(wanted, LDS, 150.0)
    assert (got.sizes.seeds, got.sizes.subsets) == (1, 50) and got.sizes.queries == 50  # 101 s: the queries stay
    tiny = choose_lds(wanted, LDS, 1e-6)  # the queries' scores cost almost nothing here: they are not cut
    assert (tiny.sizes.subsets, tiny.sizes.seeds, tiny.sizes.queries, tiny.sizes.steps) == (10, 1, 50, 100)
    slow_scores = LDSCosts(retrain_s=2.0, step_s=float("nan"), score_s=1.0, setup_s=1.0, methods=2)
    tiny = choose_lds(wanted, slow_scores, 1e-6)
    assert (tiny.sizes.subsets, tiny.sizes.seeds, tiny.sizes.queries, tiny.sizes.steps) == (10, 1, 10, 100)
    kept = choose_lds(wanted, LDS, 1e-6, explicit=["subsets"])
    assert kept.sizes.subsets == 100 and kept.sizes.seeds == 1
    cont = LDSCosts(float("nan"), 0.001, 0.01, 1.0, 1)
    assert cont.seconds(LDSSizes(20, 1, 10, 100, "continue")) == pytest.approx(20 * 100 * 0.001 + 10 * 0.01)
    assert "continued 100 steps" in str(choose_lds(LDSSizes(20, 1, 10, 100, "continue"), cont, 60.0))


def _fit(tmp_path):
    from cli_helpers import TINY
    return ["--recipe", TINY, "--workdir", str(tmp_path), "--rank", "5", "--iterations", "20"]


def test_cli_correct_is_sized_to_its_budget_and_explicit_flags_win(tmp_path):
    from cli_helpers import ifscope
    out = ifscope("correct", *_fit(tmp_path), "--k", "4", "--anchor", "10", "--budget-s", "0.001", "--json")
    d = json.loads(out.stdout)
    chosen = d["chosen"]
    assert chosen["queries"] == min(3, chosen["wanted"]["queries"]) == d["n_queries"] and chosen["steps"] == 5
    assert d["settings"]["steps"] == 5 and chosen["explicit"] == [] and chosen["measured"]["step_s"] > 0
    assert "correct sized to a 0.001 s budget" in out.stderr
    out = ifscope("correct", *_fit(tmp_path), "--k", "4", "--anchor", "10", "--steps", "2", "--budget-s", "0.001",
                  "--json")
    d = json.loads(out.stdout)
    assert d["chosen"]["steps"] == 2 and d["settings"]["steps"] == 2 and d["chosen"]["explicit"] == ["steps"]


def test_cli_lds_is_sized_to_its_budget_and_explicit_flags_win(tmp_path):
    from cli_helpers import ifscope
    out = ifscope("lds", *_fit(tmp_path), "--retrain", "continue", "--steps", "3", "--queries", "12",
                  "--budget-s", "0.001", "--json")
    d = json.loads(out.stdout)
    chosen = d["chosen"]
    assert (chosen["subsets"], chosen["queries"], chosen["steps"]) == (10, 12, 3) and chosen["explicit"] == ["queries"]
    assert d["subsets"] == 10 and d["n_queries"] == 12 and chosen["measured"]["step_s"] > 0
    assert "lds sized to a 0.001 s budget: 10 subsets continued 3 steps, 12 queries" in out.stderr


NO_FLOAT64 = textwrap.dedent('''
    import torch
    import ifscope
    from ifscope.recipes import Recipe
    from ifscope.recipes.digits import digits_mlp

    class NoFloat64(torch.nn.Module):
        """A model that refuses float64 inputs, as a float32-only kernel does."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            if x.dtype == torch.float64:
                raise RuntimeError("this model has no float64 kernel")
            return self.inner(x)

    def make(seed=0):
        r = digits_mlp(n_train=200, n_test=40, steps=300, hidden=16, seed=seed)
        model = NoFloat64(r.model).eval()
        return Recipe(model, ifscope.classification(model), r.train, r.test, info={"weight_decay": 1e-3})
''')


def test_a_model_that_fails_in_float64_falls_back_to_float32_and_says_so(tmp_path):
    import importlib.util

    from cli_helpers import ifscope

    from ifscope.core.contract import float32_fallback
    path = tmp_path / "no_float64.py"
    path.write_text(NO_FLOAT64)
    spec = importlib.util.spec_from_file_location("no_float64", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    recipe = module.make()
    line = float32_fallback(recipe.task, recipe.train, ("float64",), "the references")
    assert line is not None and "NoFloat64 does not run in float64" in line and line.endswith("run in float32")
    assert float32_fallback(recipe.task, recipe.train, ("float32",), "the references") is None
    fit = ["--recipe", f"{path}:make", "--workdir", str(tmp_path / "run"), "--rank", "5", "--iterations", "20"]
    out = ifscope("diagnose", *fit, "--checks", "divergence", "--n-train", "20", "--n-ids", "4", "--n-queries", "3",
                  "--steps", "1", "3", "--krylov", "5", "--json")
    d = json.loads(out.stdout)
    assert "NoFloat64 does not run in float64" in out.stderr and d["settings"]["dtype_fallback"]
    assert d["settings"]["ground_truth_dtype"] == "float32"
    out = ifscope("fade", *fit, "--n-ids", "3", "--n-queries", "3", "--steps", "1,3", "--krylov", "5", "--methods",
                  "run,horizon,unrolled", "--json")
    d = json.loads(out.stdout)
    assert "NoFloat64 does not run in float64" in out.stderr and d["truth_dtype"] == d["reference_dtype"] == "float32"
