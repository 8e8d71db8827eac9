"""hf_classification on a tiny BERT: padding, dropout/mode handling, parameter selection, vmap vs JVP paths."""

import pytest
import torch

transformers = pytest.importorskip("transformers")

import ifscope  # noqa: E402
from ifscope.core.hf import last_blocks_params, transformer_blocks  # noqa: E402
from ifscope.core.projection import jvp_projections, per_example_grads  # noqa: E402


def tiny_bert(seed=0):
    torch.manual_seed(seed)
    cfg = transformers.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=24, max_position_embeddings=32, num_labels=3,
                                  hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.3)
    return transformers.BertForSequenceClassification(cfg)


def text_data(n=12, length=9, pad_to=None, seed=1):
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, length + 1, (n,), generator=gen)
    width = pad_to or int(lengths.max())
    ids = torch.zeros(n, width, dtype=torch.long)
    mask = torch.zeros(n, width, dtype=torch.long)
    for i, L in enumerate(lengths):
        ids[i, :L] = torch.randint(1, 40, (int(L),), generator=gen)
        mask[i, :L] = 1
    labels = torch.randint(0, 3, (n,), generator=gen)
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids), "labels": labels}


def test_loss_matches_the_models_own_forward_with_a_2d_mask():
    model = tiny_bert().eval()
    task = ifscope.hf_classification(model)
    data = text_data()
    params, rest = task.state()
    ours = task.per_example_loss(params, rest, data)
    with torch.no_grad():
        logits = model(input_ids=data["input_ids"], attention_mask=data["attention_mask"]).logits
    ref = torch.nn.functional.cross_entropy(logits, data["labels"], reduction="none")
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)


def test_padding_does_not_change_gradients():
    model = tiny_bert().eval()
    task = ifscope.hf_classification(model)
    params, rest = task.state(torch.float64)
    tight, padded = text_data(), text_data(pad_to=20)
    assert padded["input_ids"].shape[1] == 20
    trimmed = task.cast(padded, torch.float64)
    assert trimmed["input_ids"].shape[1] == tight["input_ids"].shape[1]
    # per-example gradients of padded (untrimmed) and tight batches agree: masked tokens get no attention
    g_pad = per_example_grads(task, params, rest, padded)
    g_tight = per_example_grads(task, params, rest, tight)
    torch.testing.assert_close(g_pad, g_tight, rtol=1e-9, atol=1e-10)
    # and each equals the gradient of that example alone, without any padding
    one = {k: v[3:4, : int(tight["attention_mask"][3].sum())] if v.dim() == 2 else v[3:4] for k, v in tight.items()}
    torch.testing.assert_close(per_example_grads(task, params, rest, one)[0], g_tight[3], rtol=1e-9, atol=1e-10)


def test_jvp_and_vmap_paths_agree_and_scores_repeat_with_dropout_model_in_train_mode():
    model = tiny_bert()
    model.train()
    model.bert.embeddings.eval()  # a mixed state that must come back as it was
    modes = [m.training for m in model.modules()]
    task = ifscope.hf_classification(model, last_blocks=1)
    data = text_data(n=10)
    queries = {k: v[:4] for k, v in text_data(n=4, seed=5).items()}
    kw = dict(method="arnoldi", rank=3, iterations=6, dtype=torch.float64, batch_size=5, progress=False)
    s_jvp = ifscope.Influence(task, data, projection="jvp", **kw).scores(queries)
    s_vmap = ifscope.Influence(task, data, projection="vmap", **kw).scores(queries)
    again = ifscope.Influence(task, data, projection="vmap", **kw).scores(queries)
    assert s_jvp.shape == (4, 10)
    torch.testing.assert_close(s_jvp, s_vmap, rtol=1e-7, atol=1e-9)
    assert torch.equal(s_vmap, again)  # dropout is off: identical, not merely close
    assert [m.training for m in model.modules()] == modes


def test_jvp_projection_equals_autograd_gradient_dot_direction():
    model = tiny_bert().eval()
    task = ifscope.hf_classification(model, last_blocks=1)
    params, rest = task.state(torch.float64)
    data = task.cast(text_data(n=5), torch.float64)
    dim = sum(p.numel() for p in params.values())
    basis = torch.randn(3, dim, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    proj = jvp_projections(task, params, rest, data, basis)
    model64 = tiny_bert().eval().double()
    named = dict(model64.named_parameters())
    for i in range(5):
        model64.zero_grad()
        n = int(data["attention_mask"][i].sum())
        out = model64(input_ids=data["input_ids"][i:i + 1, :n]).logits
        torch.nn.functional.cross_entropy(out, data["labels"][i:i + 1]).backward()
        g = torch.cat([named[k].grad.reshape(-1) for k in task.parameter_names])
        torch.testing.assert_close(proj[i], basis @ g, rtol=1e-8, atol=1e-10)


def test_last_blocks_selects_the_tail_of_the_model():
    model = tiny_bert()
    assert transformer_blocks(model) == ("bert.encoder.layer", 2)
    one = last_blocks_params(model, 1)
    assert one[0].startswith("bert.encoder.layer.1.") and not any(".layer.0." in n for n in one)
    assert {"bert.pooler.dense.weight", "classifier.weight", "classifier.bias"} <= set(one)
    assert last_blocks_params(model, 0) == ["bert.pooler.dense.weight", "bert.pooler.dense.bias",
                                            "classifier.weight", "classifier.bias"]
    assert len(last_blocks_params(model, 2)) > len(one)
    with pytest.raises(ifscope.IfscopeError, match="last_blocks"):
        ifscope.hf_classification(model, last_blocks=3)
    with pytest.raises(ifscope.IfscopeError, match="either"):
        ifscope.hf_classification(model, params="classifier.*", last_blocks=1)


def test_attention_is_switched_to_eager_and_tuple_batches_are_refused():
    model = tiny_bert()
    task = ifscope.hf_classification(model)
    assert model.config._attn_implementation == "eager"
    params, rest = task.state()
    with pytest.raises(ifscope.DataError, match="input_ids"):
        task.per_example_loss(params, rest, (torch.zeros(2, 3, dtype=torch.long), torch.zeros(2)))
    with pytest.raises(ifscope.DataError, match="labels"):
        ifscope.encode_texts(lambda *a, **k: None, ["a", "b"], [0])


def test_models_without_a_block_stack_are_told_to_use_patterns():
    mlp = torch.nn.Sequential(torch.nn.Linear(4, 3))
    with pytest.raises(ifscope.ConfigError, match="patterns"):
        ifscope.hf_classification(mlp, last_blocks=1)
