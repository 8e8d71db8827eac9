"""ifscope.experiments.correct: the caller's model is untouched, correct queries are left alone, a seed fixes the result."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from ifscope import ConfigError, Influence, correct, split_mispredicted
from ifscope.core.data import as_dataset, take
from ifscope.experiments.correct import DEFAULT_LR, LR_FRACTION, default_lr
from ifscope.recipes.digits import digits_mlp


@pytest.fixture(scope="module")
def setup():
    recipe = digits_mlp(n_train=200, n_test=300, hidden=8, steps=300, seed=0)
    inf = Influence(recipe.task, recipe.train, method="arnoldi", rank=10, iterations=30,
                    weight_decay=recipe.info["weight_decay"], progress=False).fit()
    test = as_dataset(recipe.test)
    wrong, right = split_mispredicted(inf, test)
    assert len(wrong) >= 4, "the tiny model should mis-predict a few test digits"
    return recipe, inf, test, wrong, right


def small(inf, test, wrong, right, **kw):
    return correct(inf, test, heldout=take(test, right[:100]), indices=wrong[:3], k=8, steps=5, anchor=20,
                   progress=False, **kw)


def test_caller_model_is_never_modified(setup):
    recipe, inf, test, wrong, right = setup
    before = {k: v.clone() for k, v in recipe.model.state_dict().items()}
    res = small(inf, test, wrong, right)
    for k, v in recipe.model.state_dict().items():
        assert torch.equal(v, before[k]), f"{k} changed"
    for params in res.params.values():   # the corrections themselves did move
        assert any(not torch.equal(params[n], before[n]) for n in params)


def test_correct_queries_are_left_alone_unless_asked(setup):
    _, inf, test, wrong, right = setup
    idx = [wrong[0], right[0]]
    res = correct(inf, test, indices=idx, k=8, steps=3, anchor=0, baselines=[], progress=False)
    assert res.skipped == [right[0]]
    assert [q.index for q in res.queries] == [wrong[0]] and set(res.params) == {wrong[0]}
    forced = correct(inf, test, indices=idx, k=8, steps=3, anchor=0, baselines=[], include_correct=True,
                     progress=False)
    assert forced.skipped == [] and set(forced.params) == set(idx)
    default = correct(inf, test, k=8, steps=3, anchor=0, baselines=[], progress=False)
    assert [q.index for q in default.queries] == wrong   # default: exactly the mis-predicted ones


def test_fixed_seed_reproduces_the_corrected_parameters(setup):
    _, inf, test, wrong, right = setup
    a, b = small(inf, test, wrong, right, seed=3), small(inf, test, wrong, right, seed=3)
    assert set(a.params) == set(b.params)
    for key in a.params:
        for n in a.params[key]:
            assert torch.equal(a.params[key][n], b.params[key][n])
    assert a.to_dict()["fix_rate"] == b.to_dict()["fix_rate"]
    sel = [q.outcomes["random"].selected for q in a.queries]
    assert sel == [q.outcomes["random"].selected for q in b.queries]
    c = small(inf, test, wrong, right, seed=4)   # another seed draws other random examples (and anchors)
    assert sel != [q.outcomes["random"].selected for q in c.queries]
    assert any(not torch.equal(a.params[k][n], c.params[k][n]) for k in a.params for n in a.params[k])


def test_influence_selection_is_the_top_k_proponents_and_opponents(setup):
    _, inf, test, wrong, right = setup
    res = correct(inf, test, indices=wrong[:2], k=5, steps=2, strategy="both", anchor=0, baselines=["random"],
                  progress=False)
    scores = inf.scores(take(test, wrong[:2]))
    for row, q in zip(scores, res.queries):
        o = q.outcomes["influence"]
        assert sorted(o.selected) == sorted(torch.topk(row, 5).indices.tolist())
        assert sorted(o.ascended) == sorted(torch.topk(-row, 5).indices.tolist())
        assert len(q.outcomes["random"].selected) == 5 and len(q.outcomes["random"].ascended) == 5


def test_output_document_and_safetensors(setup, tmp_path):
    _, inf, test, wrong, right = setup
    path = tmp_path / "corrected.safetensors"
    res = small(inf, test, wrong, right, save=path)
    d = json.loads(json.dumps(res.to_dict()))
    assert d["n_queries"] == 3
    assert set(d["fix_rate"]) == {"influence", "random", "random_same_class", "query_itself"}
    assert d["heldout_accuracy"]["before"] == 1.0 and 0.0 <= d["heldout_accuracy"]["after"] <= 1.0
    assert d["broken"] >= 0 and d["seconds_per_correction"] > 0
    assert [q["index"] for q in d["queries"]] == wrong[:3]
    assert all(isinstance(q["fixed"], bool) for q in d["queries"])
    assert d["fix_rate"]["influence"] == sum(q["fixed"] for q in d["queries"]) / 3
    saved = load_file(str(path))
    for i in wrong[:3]:
        for n, t in res.params[i].items():
            assert torch.equal(saved[f"query{i}/{n}"], t)


def test_group_correction_makes_one_model(setup):
    _, inf, test, wrong, right = setup
    res = correct(inf, test, heldout=take(test, right[:50]), indices=wrong[:3], k=8, steps=3, group=True,
                  baselines=["random"], progress=False)
    assert set(res.params) == {"group"} and res.n_queries == 3
    assert len({q.outcomes["influence"].heldout_accuracy for q in res.queries}) == 1


@pytest.mark.parametrize("kw, word", [({"strategy": "sideways"}, "strategy"), ({"k": 0}, "k"),
                                      ({"lr": -1.0}, "lr"), ({"baselines": ["oracle"]}, "baseline"),
                                      ({"indices": [10**6]}, "indices"), ({"anchor": -1}, "anchor")])
def test_bad_options_raise_config_errors(setup, kw, word):
    _, inf, test, _, _ = setup
    with pytest.raises(ConfigError, match=word):
        correct(inf, test, progress=False, **kw)


def test_cli_writes_correct_json(tmp_path):
    from ifscope.cli import main
    recipe_file = tmp_path / "tiny.py"
    recipe_file.write_text("from ifscope.recipes.digits import digits_mlp\n"
                           "def make(seed=0, n_test=300):\n"
                           "    r = digits_mlp(n_train=200, n_test=n_test, hidden=8, steps=300, seed=seed)\n"
                           "    return r\n")
    workdir = tmp_path / "run"
    rc = main(["correct", "--recipe", f"{recipe_file}:make", "--workdir", str(workdir), "--rank", "10",
               "--iterations", "30", "--queries", "3", "--k", "8", "--steps", "3", "--save"])
    assert rc == 0
    d = json.loads((workdir / "correct.json").read_text())
    assert d["n_queries"] == 3 and d["n_heldout"] == 297 and "influence" in d["fix_rate"]
    assert (workdir / "corrected.safetensors").is_file()


def test_stop_when_fixed_stops_at_the_first_fixing_step(setup):
    _, inf, test, wrong, right = setup
    kw = dict(indices=wrong[:2], k=8, steps=12, lr=0.3, anchor=0, baselines=[], progress=False)
    stopped = correct(inf, test, stop_when_fixed=True, **kw)
    for q in stopped.queries:
        o = q.outcomes["influence"]
        assert 1 <= o.steps <= 12 and (o.fixed or o.steps == 12)
        if o.fixed:   # the same number of plain steps reproduces the stopped parameters, one fewer does not fix
            again = correct(inf, test, **{**kw, "indices": [q.index], "steps": o.steps})
            for n, t in stopped.params[q.index].items():
                torch.testing.assert_close(again.params[q.index][n], t)
            if o.steps > 1:
                assert not correct(inf, test, **{**kw, "indices": [q.index], "steps": o.steps - 1}).queries[0] \
                    .outcomes["influence"].fixed


def test_nothing_to_correct_gives_an_empty_but_valid_document(setup):
    _, inf, test, _, right = setup
    res = correct(inf, test, indices=right[:2], progress=False)
    d = res.to_dict()
    assert d["n_queries"] == 0 and d["skipped"] == right[:2] and d["fix_rate"] == {} and res.params == {}
    json.dumps(d, allow_nan=False)
    with pytest.raises(ConfigError, match="already predicted correctly"):
        res.fix_rate()


def test_influence_fixes_more_mistakes_than_random_examples(setup):
    """The claim itself, on a small model: the same budget fixes more mis-predictions when spent on the top
    proponents than on random training examples."""
    _, inf, test, wrong, right = setup
    res = correct(inf, test, heldout=take(test, right[:100]), indices=wrong[:12], k=8, steps=10, lr=0.3, anchor=0,
                  baselines=["random"], progress=False)
    assert res.n_queries == 12
    assert res.fix_rate("influence") > res.fix_rate("random")


def test_correct_reads_the_fitted_influence_and_never_refits_it(setup):
    recipe, inf, test, wrong, _ = setup
    est = inf.estimator
    calls = est.hvp_calls
    res = correct(inf, test, indices=wrong[:2], k=4, steps=2, anchor=0, baselines=[], progress=False)
    assert inf.estimator is est and est.hvp_calls == calls          # no refit, no new curvature products
    lam = float(est.eigenvalues.max())
    assert inf.lambda_max == pytest.approx(lam)  # the run's fitted spectrum: its top Ritz value
    assert res.config["lr"] == default_lr(inf) == min(DEFAULT_LR, LR_FRACTION / lam) and res.config["lr_default"]
    unfitted = Influence(recipe.task, recipe.train, method="arnoldi", rank=4, iterations=10, progress=False)
    with pytest.raises(ConfigError, match="not fitted"):
        correct(unfitted, test, progress=False)
    assert unfitted.estimator is None


def test_cli_reads_the_recipe_defaults_flags_override_and_the_report_shows_corrections(tmp_path):
    from ifscope.cli import main
    from ifscope.report import render_report
    recipe_file = tmp_path / "tiny.py"
    recipe_file.write_text("from ifscope.recipes.digits import digits_mlp\n"
                           "def make(seed=0):\n"
                           "    r = digits_mlp(n_train=200, n_test=300, hidden=8, steps=300, seed=seed)\n"
                           "    r.defaults['correct'] = {'k': 5, 'steps': 2, 'queries': 3, 'anchor': 0, 'stop_when_fixed': True}\n"
                           "    return r\n")
    workdir = tmp_path / "run"
    spec = f"{recipe_file}:make"
    assert main(["fit", "--recipe", spec, "--workdir", str(workdir), "--rank", "4", "--iterations", "12"]) == 0
    assert main(["correct", "--recipe", spec, "--workdir", str(workdir), "--steps", "3"]) == 0
    d = json.loads((workdir / "correct.json").read_text())
    assert d["n_queries"] == 3 and d["config"]["rank"] == 4 and d["config"]["iterations"] == 12  # the run's fit
    assert {k: d["settings"][k] for k in ("k", "steps", "anchor", "stop_when_fixed")} == \
        {"k": 5, "steps": 3, "anchor": 0, "stop_when_fixed": True}
    shown = d["examples"]
    assert [q["index"] for q in shown] == [q["index"] for q in d["queries"]]
    assert all(len(q["pixels"]) == 64 and len(q["proponents"]) == 4 for q in shown)
    assert [e["index"] for e in shown[0]["proponents"]] == d["queries"][0]["methods"]["influence"]["selected"][:4]
    page = render_report(workdir).read_text()
    assert page.count('data-corrected="') == 3 and "gallery/c" in page
    with pytest.raises(SystemExit):
        main(["correct", "--recipe", spec, "--workdir", str(workdir), "--strategy", "sideways"])


def test_guard_stops_before_the_first_step_that_costs_too_much_training_accuracy(setup):
    """With ``guard`` a correction keeps the last parameters whose accuracy on the guard sample (less the examples it
    steps on) is within ``guard_drop`` of the checkpoint's; without the guard the same steps lose more."""
    _, inf, test, wrong, _ = setup
    kw = dict(indices=wrong[:4], k=8, steps=15, lr=2.0, anchor=0, baselines=[], progress=False)
    free = correct(inf, test, **kw)
    guarded = correct(inf, test, guard=100, guard_drop=0.02, **kw)
    pick = torch.randperm(inf.n_train, generator=torch.Generator().manual_seed(2))[:100]
    from ifscope.experiments.correct import evaluate
    ctx = inf.estimator.ctx

    def accuracy(params, selected):
        keep = pick[~torch.isin(pick, torch.as_tensor(selected))].tolist()
        return float(evaluate(inf, inf.task.judge, params, ctx.rest, as_dataset(take(inf.train, keep))).held_out.mean())
    stopped = 0
    for q in guarded.queries:
        o = q.outcomes["influence"]
        before = accuracy(ctx.params, o.selected)
        assert before - accuracy(guarded.params[q.index], o.selected) <= 0.02 + 1e-9
        if o.guarded:
            stopped += 1
            assert o.steps < 15 and before - accuracy(free.params[q.index], o.selected) > 0.02
    assert stopped >= 1, "at lr 2.0 at least one correction should hit the guard"


def test_revert_unfixed_returns_failed_corrections_to_the_checkpoint(setup):
    _, inf, test, wrong, right = setup
    kw = dict(heldout=take(test, right[:100]), indices=wrong[:6], k=8, steps=2, lr=0.05, anchor=0,
              baselines=["random"], progress=False)
    kept, reverted = correct(inf, test, **kw), correct(inf, test, revert_unfixed=True, **kw)
    acc0 = reverted.heldout_before[0]
    unfixed = 0
    for a, b in zip(kept.queries, reverted.queries):
        for m in ("influence", "random"):
            oa, ob = a.outcomes[m], b.outcomes[m]
            assert oa.fixed == ob.fixed and ob.reverted == (not oa.fixed)
            if ob.reverted:
                unfixed += 1
                assert ob.heldout_accuracy == acc0 and ob.loss_after == pytest.approx(a.loss_before)
            else:
                assert ob.heldout_accuracy == oa.heldout_accuracy
        if b.outcomes["influence"].reverted:
            for n, t in reverted.params[b.index].items():
                assert torch.equal(t, inf.estimator.ctx.params[n])
    assert unfixed >= 1, "two small steps should leave some mistake unfixed"
