"""The model contract on tiny models built here (no downloads): Hugging Face classifiers of every common kind reproduce
the model's own logits on padded batches, batch-coupled models are refused naming the module, recurrent models
score with the default options through the transform that works."""

import dataclasses
import sys
from pathlib import Path

import pytest
import torch

import ifscope
from ifscope.core.capabilities import known_capabilities
from ifscope.core.hf import _hf_inputs
from ifscope.core.projection import jvp_projections, per_example_grads

sys.path.insert(0, str(Path(__file__).parent))
import byom_recipes as byom  # noqa: E402
from cli_helpers import ifscope as run_cli  # noqa: E402

transformers = pytest.importorskip("transformers")
RECIPES = str(Path(__file__).parent / "byom_recipes.py")


def _hf(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    small = dict(vocab_size=40, num_labels=3)
    blocks = dict(num_hidden_layers=2, num_attention_heads=2, intermediate_size=24, max_position_embeddings=40)
    make = {
        "bert": lambda: transformers.BertForSequenceClassification(transformers.BertConfig(hidden_size=16, **blocks,
                                                                                           **small)),
        "distilbert": lambda: transformers.DistilBertForSequenceClassification(transformers.DistilBertConfig(
            dim=16, n_layers=2, n_heads=2, hidden_dim=24, max_position_embeddings=40, **small)),
        "roberta": lambda: transformers.RobertaForSequenceClassification(transformers.RobertaConfig(
            hidden_size=16, pad_token_id=1, **blocks, **small)),
        "gpt2": lambda: byom._gpt2(0, 0),
        "llama": lambda: transformers.LlamaForSequenceClassification(transformers.LlamaConfig(
            hidden_size=16, num_key_value_heads=1, pad_token_id=0, **blocks, **small)),
    }
    return make[kind]().eval()


PADDING = [("bert", False), ("distilbert", False), ("roberta", False), ("gpt2", False), ("gpt2", True),
           ("llama", False), ("llama", True)]


@pytest.mark.parametrize("kind,left", PADDING)
def test_task_logits_equal_the_models_own_on_padded_batches(kind, left):
    model = _hf(kind)
    task = ifscope.hf_classification(model)
    batch = byom.text_batch(6, seed=3, pad=model.config.pad_token_id or 0, left=left)
    if not left:  # a trailing all-padding column, which the task trims and the model reads
        pad = torch.full((6, 1), model.config.pad_token_id or 0)
        batch = {**batch, "input_ids": torch.cat([batch["input_ids"], pad], 1),
                 "attention_mask": torch.cat([batch["attention_mask"], torch.zeros_like(pad)], 1)}
    params, rest = task.state()
    with torch.no_grad():
        ours = task.forward(params, rest, task.cast(batch, torch.float32))
        own = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(ours, own, rtol=1e-5, atol=1e-5)
    found = ifscope.check_model(task, batch)
    assert found.forward_gap is not None and found.forward_gap < 1e-5 and found.fallbacks == []


@pytest.mark.parametrize("kind", ["gpt2", "llama", "roberta"])
def test_both_projection_paths_trace_and_agree(kind):
    task = ifscope.hf_classification(_hf(kind), last_blocks=1)
    params, rest = task.state(torch.float64)
    batch = task.cast(byom.text_batch(5, seed=4), torch.float64)
    basis = torch.randn(3, sum(p.numel() for p in params.values()), dtype=torch.float64)
    by_vmap = per_example_grads(task, params, rest, batch) @ basis.T
    # rtol 1e-6: Llama's RMSNorm runs in float32 whatever the dtype
    torch.testing.assert_close(jvp_projections(task, params, rest, batch, basis), by_vmap, rtol=1e-6, atol=1e-8)


def test_a_decoder_given_an_encoders_additive_mask_is_refused():
    model = _hf("gpt2")
    lost = dataclasses.replace(ifscope.hf_classification(model), inputs=_hf_inputs)  # the causal mask is lost
    with pytest.raises(ifscope.ModelError, match="own forward by up to"):
        ifscope.check_model(lost, byom.text_batch(6, seed=3))


def test_a_decoder_without_pad_token_is_refused():
    with pytest.raises(ifscope.ConfigError, match="pad_token_id"):
        byom.gpt2_no_pad()


def test_batchnorm_on_batch_statistics_is_refused_and_with_running_statistics_accepted():
    bad = byom.batchnorm_batch_stats()
    with pytest.raises(ifscope.ModelError, match=r"module '1' \(BatchNorm1d\).*track_running_stats"):
        ifscope.check_model(bad.task, bad.train)
    with pytest.raises(ifscope.ModelError, match="not per-example"):
        ifscope.Influence(bad.task, bad.train, "graddot", progress=False).fit()
    good = byom.batchnorm_eval()
    good.model.train()  # left in train mode by its user: ifscope evaluates it on its running statistics
    found = ifscope.check_model(good.task, good.train)
    assert found.batch_gap < 1e-6 and found.forward_gap is None
    assert good.model.training


def test_batch_mixing_is_refused_naming_the_module():
    bad = byom.coupled()
    with pytest.raises(ifscope.ModelError, match=r"example 0's loss .* module '1' \(Centered\) mixes"):
        ifscope.check_model(bad.task, bad.train)


def _queries(recipe, n=4):
    return recipe.test[0][:n], recipe.test[1][:n]


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_recurrent_models_score_with_default_options_and_equal_the_vmap_path(name):
    recipe = getattr(byom, name)()
    kw = dict(rank=4, iterations=10, batch_size=16, progress=False)
    with pytest.warns(UserWarning, match="per-example gradients use a loop|no forward-mode derivative"):
        auto = ifscope.Influence(recipe.task, recipe.train, "arnoldi", **kw)
        scores = auto.scores(_queries(recipe))
    assert auto.contract is not None and auto.contract.fallbacks
    chosen = auto.estimator.path_choice.path
    assert chosen == ("vmap" if name == "lstm" else "jvp")  # the transform each one has in float32
    by_vmap = ifscope.Influence(recipe.task, recipe.train, "arnoldi", projection="vmap", **kw).scores(
        _queries(recipe))
    torch.testing.assert_close(scores, by_vmap, rtol=1e-4, atol=1e-5)


def test_naming_a_path_the_model_lacks_is_a_clear_error():
    recipe = byom.lstm()
    inf = ifscope.Influence(recipe.task, recipe.train, "arnoldi", rank=4, iterations=10, projection="jvp",
                            progress=False)
    with pytest.raises(ifscope.ConfigError, match="projection='jvp' needs forward-mode derivatives.*'vmap'"):
        inf.scores(_queries(recipe))


def test_lstm_in_float64_falls_back_to_a_loop_and_fades():
    recipe = byom.lstm()
    inf = ifscope.Influence(recipe.task, recipe.train, "arnoldi", rank=4, iterations=10, dtype=torch.float64,
                            progress=False).fit()
    assert any(c.dtype == "float64" and not c.vmap_ok for c in known_capabilities(recipe.model))
    ref = ifscope.Influence(recipe.task, recipe.train, "graddot", dtype=torch.float64, progress=False)
    queries = _queries(recipe)
    result = ifscope.fade_curve({"arnoldi": inf, "graddot": ref}, queries, ids=list(range(6)), steps=[1, 3],
                                progress=False)
    assert all(abs(v) <= 1 for m in result.methods.values() for v in m["pearson"])
    # the loop's per-example gradients equal each example's own gradient
    params, rest = recipe.task.state(torch.float64)
    batch = recipe.task.cast(queries, torch.float64)
    one = per_example_grads(recipe.task, params, rest, (batch[0][1:2], batch[1][1:2]))[0]
    torch.testing.assert_close(per_example_grads(recipe.task, params, rest, batch)[1], one)


@pytest.mark.parametrize("name,says", [("batchnorm_batch_stats", "BatchNorm1d"), ("coupled", "Centered"),
                                       ("gpt2_no_pad", "pad_token_id")])
def test_ifscope_check_prints_the_one_line_reason(name, says):
    proc = run_cli("check", "--recipe", f"{RECIPES}:{name}", check=False)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.startswith("ifscope: ")]
    assert len(lines) == 1 and lines[0].startswith("ifscope: error: ") and says in lines[0]
    assert "Traceback" not in proc.stderr


def test_ifscope_check_reports_the_fallbacks_in_json():
    import json
    proc = run_cli("check", "--recipe", f"{RECIPES}:lstm", "--json")
    contract = json.loads(proc.stdout)["model_contract"]
    assert {c["dtype"] for c in contract["capabilities"]} == {"float32", "float64"}
    assert any("vmap(grad) instead of jvp" in line for line in contract["fallbacks"])
    assert "ifscope: RNNClassifier has no forward-mode derivative" in proc.stderr


def test_gauss_newton_curvature_without_forward_mode_is_a_clear_error():
    recipe = byom.lstm()
    with pytest.raises(ifscope.ConfigError, match="curvature='ggn' needs forward-mode derivatives.*'hessian'"):
        ifscope.Influence(recipe.task, recipe.train, "arnoldi", rank=4, iterations=10, curvature="ggn",
                          progress=False).fit()


def test_every_commands_json_lists_the_fallbacks_taken_on_the_model():
    from ifscope.cli import run_facts
    recipe = byom.lstm()
    with pytest.warns(UserWarning, match="no forward-mode derivative in float32"):
        inf = ifscope.Influence(recipe.task, recipe.train, "arnoldi", rank=4, iterations=10, progress=False).fit()
    facts = run_facts(inf)
    assert facts["model_contract"]["fallbacks"] == facts["fallbacks"] and len(facts["fallbacks"]) == 1
    with pytest.warns(UserWarning, match="vmap\\(grad\\) in float64"):  # a float64 reference, as fade builds
        ifscope.Influence(recipe.task, recipe.train, "graddot", dtype=torch.float64, progress=False).scores(
            _queries(recipe))
    assert len(run_facts(inf)["fallbacks"]) == 2


def test_fade_on_a_model_that_fails_in_float64_runs_its_references_in_float32(tmp_path):
    import json
    proc = run_cli("fade", "--recipe", f"{RECIPES}:float32_only", "--workdir", str(tmp_path), "--steps", "1,3",
                   "--n-ids", "4", "--n-queries", "3", "--methods", "run,graddot", "--json")
    out = json.loads(proc.stdout)
    assert out["truth_dtype"] == out["reference_dtype"] == "float32"
    assert "does not run in float64 (RuntimeError: mat1 and mat2 must have the same dtype" in out["dtype_fallback"]
    assert f"ifscope: {out['dtype_fallback']}" in proc.stderr.splitlines()


def test_check_model_says_which_dtype_the_model_cannot_run_in():
    recipe = byom.float32_only()
    found = ifscope.check_model(recipe.task, recipe.train, dtypes=(torch.float64,))
    assert list(found.unsupported) == ["float64"] and "must have the same dtype" in found.unsupported["float64"]
    assert found.fallbacks[0].startswith("Float32Only does not run in float64")
    with pytest.raises(ifscope.DataError, match="does not run in float64.*use dtype=torch.float32"):
        ifscope.check_model(recipe.task, recipe.train, dtype=torch.float64)
