"""The per-query horizon of validity, on a quadratic model where the exact answer is known."""

import math

import pytest
import torch
from test_unrolled import least_squares

import ifscope
from ifscope.core.curvature import Curvature
from ifscope.core.projection import per_example_grads
from ifscope.experiments.fade import spearman
from ifscope.experiments.validity import horizon_of

STEPS = [1, 10, 100, 300]
LR = 0.1


def _inf(task, train, wd, method, **options):
    return ifscope.Influence(task, train, method=method, weight_decay=wd, dtype=torch.float64, progress=False,
                             **options)


def test_horizon_of_is_the_last_t_before_the_first_disagreement():
    assert horizon_of([0.95, 0.91, 0.5, 0.99], [1, 3, 10, 30]) == 3
    assert horizon_of([0.95, 0.91, 0.92, 0.99], [1, 3, 10, 30]) == 30
    assert horizon_of([0.89, 0.99], [1, 3]) is None
    assert horizon_of([0.99, math.nan, 0.99], [1, 3, 10]) == 1
    assert horizon_of([0.75, 0.5], [1, 3], threshold=0.7) == 1


def test_on_a_quadratic_at_its_minimum_horizon_is_valid_everywhere_and_graddot_only_at_t_1():
    task, train, queries, wd = least_squares()
    reference = _inf(task, train, wd, "unrolled", horizon=max(STEPS), lr=LR)
    hz = _inf(task, train, wd, "horizon", horizon=max(STEPS), lr=LR, batch_order="schedule", krylov=5)
    valid = ifscope.validity_horizon(hz, queries, STEPS, reference=reference)
    assert valid.method == "horizon_schedule" and valid.horizon == [max(STEPS)] * len(queries[0])
    assert min(min(r) for r in valid.spearman) > 0.999999

    dot = ifscope.validity_horizon(_inf(task, train, wd, "graddot"), queries, STEPS, reference=reference)
    assert dot.horizon == [1] * len(queries[0])
    # the exact side here is gqᵀ H⁻¹(I − (I − ηH)^T) gz with the dense Hessian (θ never leaves the minimum)
    params, rest = task.state(torch.float64)
    h = Curvature(task, params, rest, [train], weight_decay=wd).dense()
    gq, gz = per_example_grads(task, params, rest, queries), per_example_grads(task, params, rest, train)
    eye = torch.eye(len(h), dtype=torch.float64)
    for k, t in enumerate(STEPS):
        exact = gq @ torch.linalg.solve(h, eye - torch.linalg.matrix_power(eye - LR * h, t)) @ gz.T
        rho = [spearman((gq @ gz.T)[q].numpy(), exact[q].numpy()) for q in range(len(gq))]
        assert [r[k] for r in dot.spearman] == pytest.approx(rho, abs=1e-9)
    summary = dot.to_dict()["summary"]
    assert summary["median"] == 1 and summary["valid_at_every_T"] == 0 and summary["fraction_valid"][0] == 1.0
    assert dot.to_dict()["per_query"] == dot.horizon and len(summary["mean_spearman"]) == len(STEPS)


def test_a_sampled_validity_ranks_only_the_sampled_examples_exactly_as_the_full_scores_do():
    from ifscope.experiments.validity import fade_validity, validity_sample
    task, train, queries, wd = least_squares()
    n = len(train[0])
    assert validity_sample(n, 0, seed=0) is None and validity_sample(n, n, seed=0) is None
    ids = validity_sample(n, n // 2, seed=3)
    assert len(ids) == n // 2 and torch.equal(ids, ids.sort().values) and len(set(ids.tolist())) == n // 2
    assert torch.equal(ids, validity_sample(n, n // 2, seed=3))  # seeded
    reference = _inf(task, train, wd, "unrolled", horizon=max(STEPS), lr=LR)
    dot = _inf(task, train, wd, "graddot")
    sub = ifscope.validity_horizon(dot, queries, STEPS, reference=reference, train_ids=ids)
    exact = reference.scores_over_horizons(queries, ids, STEPS)
    approx = dot.scores(queries, ids)
    for k in range(len(STEPS)):
        rho = [spearman(approx[q].numpy(), exact[k, q].numpy()) for q in range(len(approx))]
        assert [r[k] for r in sub.spearman] == pytest.approx(rho, abs=1e-9)
    out = fade_validity({"graddot": dot, "unrolled": reference}, queries, STEPS, None, progress=False, train_ids=ids)
    assert out["graddot"]["n_train"] == n // 2 and torch.allclose(torch.tensor(out["graddot"]["spearman"]), torch.tensor(sub.spearman))


def test_default_reference_takes_the_method_s_own_step():
    task, train, queries, wd = least_squares()
    hz = _inf(task, train, wd, "horizon", horizon=100, lr=LR)
    valid = ifscope.validity_horizon(hz, queries, [1, 10, 100])
    assert valid.method == "horizon" and len(valid.horizon) == len(queries[0])
    assert valid.horizon == [100] * len(queries[0])  # average batch order = the full-batch schedule here


def test_bad_inputs_are_config_errors():
    task, train, queries, wd = least_squares()
    un = _inf(task, train, wd, "unrolled", horizon=10, lr=LR)
    dot = _inf(task, train, wd, "graddot")
    with pytest.raises(ifscope.ConfigError, match="checkpoint method"):
        ifscope.validity_horizon(un, queries, [1, 10])
    with pytest.raises(ifscope.ConfigError, match="method='unrolled'"):
        ifscope.validity_horizon(dot, queries, [1, 10], reference=dot)
    with pytest.raises(ifscope.ConfigError, match="threshold"):
        ifscope.validity_horizon(dot, queries, [1, 10], reference=un, threshold=1.5)
    with pytest.raises(ifscope.ConfigError, match="steps"):
        ifscope.validity_horizon(dot, queries, [0, 10], reference=un)
    with pytest.raises(ifscope.ConfigError, match="exceeds"):
        ifscope.validity_horizon(dot, queries, [1, 20], reference=un)


def test_the_report_shows_the_validity_horizon(tmp_path):
    from ifscope.experiments.validity import ValidityHorizon
    from ifscope.report.sections import fade_sections
    v = ValidityHorizon("graddot", [1, 10], 0.9, [[1.0, 0.5], [0.95, 0.92], [0.3, 0.99]], [1, 10, None]).to_dict()
    assert v["summary"]["median"] == 1 and v["summary"]["min"] is None and v["summary"]["max"] == 10
    assert v["summary"]["valid_at_every_T"] == 1 and v["summary"]["valid_at_no_T"] == 1
    fade = {"steps": [1, 10], "mode": "upweight", "methods": {"graddot": {"pearson": [0.9, 0.5],
                                                                          "spearman": [0.9, 0.4]}},
            "validity_horizon": {"graddot": v}}
    page, _ = fade_sections(fade, tmp_path)
    assert "Horizon of validity" in page and "median over the queries: graddot 1." in page
    assert "<tr><th>graddot</th><td>0.75</td><td>0.80</td></tr>" in page  # mean Spearman with unrolled per T
    assert "ranks the whole training set" in page  # a fade.json without n_train ranked all of it
    sampled = {**fade, "n_train": 5000, "validity_horizon": {"graddot": {**v, "n_train": 2000}}}
    assert "ranks a seeded sample of 2000 of the 5000 training examples" in fade_sections(sampled, tmp_path)[0]


def test_first_order_is_exact_for_small_upweights_and_measures_the_removal_remainder():
    from test_unrolled import _mlp

    from ifscope.experiments.validity import first_order
    task, train, queries = _mlp()
    un = _inf(task, train, 0.01, "unrolled", horizon=30, lr=0.5)
    up = first_order(un, queries, [1, 10, 30], ids=list(range(12)), mode="upweight", epsilon=1e-5)
    # the ground truth holds 1 + ε in float64: in float32 ε = 1e-5 would be off by 0.14 % (slope 1.0014)
    assert all(abs(s - 1) < 1e-4 for s in up.slope) and max(up.remainder) < 1e-4
    removal = first_order(un, queries, [1, 10, 30], n_ids=6, mode="remove")
    assert removal.n_ids == 6 and removal.to_dict()["mode"] == "remove"
    assert removal.remainder[-1] > 10 * up.remainder[-1]  # removing 1 of 12 examples is far from linear
    with pytest.raises(ifscope.ConfigError, match="unrolled"):
        first_order(_inf(task, train, 0.01, "graddot"), queries, [1])
