"""Cached frozen prefix: the ground truth replayed on cached activations equals replaying the whole model; replicas
by vmap or by a loop agree; the noise floor is reported."""

import pytest
import torch
from torch import nn

import ifscope
from ifscope.core.batching import batched, choose, looped
from ifscope.core.curvature import Curvature
from ifscope.truth.groundtruth import actual_changes, actual_changes_many
from ifscope.truth.prefix import cache_prefix
from ifscope.truth.training import Schedule, make_batches

transformers = pytest.importorskip("transformers")


def tiny_bert(layers=2, seed=0):
    torch.manual_seed(seed)
    cfg = transformers.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=layers, num_attention_heads=2,
                                  intermediate_size=24, max_position_embeddings=32, num_labels=3,
                                  hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.3)
    return transformers.BertForSequenceClassification(cfg)


def text_data(n, width=11, seed=1):
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, width - 2, (n,), generator=gen)  # trailing padding columns on every row
    ids = torch.zeros(n, width, dtype=torch.long)
    mask = torch.zeros(n, width, dtype=torch.long)
    for i, length in enumerate(lengths):
        ids[i, :length] = torch.randint(1, 40, (int(length),), generator=gen)
        mask[i, :length] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids),
            "labels": torch.randint(0, 3, (n,), generator=gen)}


def tiny_cnn(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Unflatten(1, (1, 4, 4)), nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(),
                         nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(16, 3))


def image_data(n, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 16, generator=gen), torch.randint(0, 3, (n,), generator=gen)


def _truth(task, train, queries, **kw):
    schedule = Schedule(make_batches(len(train["labels"] if isinstance(train, dict) else train[1]), 7, 8, seed=3),
                        lr=0.5, weight_decay=1e-3)
    return actual_changes(task, train, queries, [1, 5, 17], [1, 3, 7], schedule, mode="upweight", epsilon=0.5,
                          dtype=torch.float64, progress=False, **kw)


@pytest.mark.parametrize("last_blocks", [0, 1, 2])
def test_ground_truth_on_cached_prefix_equals_replaying_the_whole_bert(last_blocks):
    model = tiny_bert().eval()
    task = ifscope.hf_classification(model, last_blocks=last_blocks)
    train, queries = text_data(24), text_data(5, seed=2)
    pre = cache_prefix(task, train, queries, dtype=torch.float64)
    assert pre.start == 2 - last_blocks and pre.task.parameter_names == task.parameter_names
    full = _truth(task, train, queries)
    cached = _truth(pre.task, *pre.datasets)
    assert full.delta.abs().max() > 1e-4  # the examples do move the queries
    torch.testing.assert_close(cached.delta, full.delta, rtol=1e-9, atol=1e-13)
    torch.testing.assert_close(cached.gap, full.gap, rtol=1e-9, atol=1e-13)
    torch.testing.assert_close(cached.base, full.base, rtol=1e-12, atol=1e-13)


def test_per_example_loss_on_cached_states_equals_the_model_at_other_parameters():
    model = tiny_bert(layers=3).eval()
    task = ifscope.hf_classification(model, last_blocks=2)
    data = text_data(9)
    pre = cache_prefix(task, data, dtype=torch.float64, batch_size=4)  # batches padded to different widths
    params, rest = task.state(torch.float64)
    moved = {k: v + 0.3 * torch.randn_like(v) for k, v in params.items()}
    full = task.per_example_loss(moved, rest, task.cast(data, torch.float64))
    ours = pre.task.per_example_loss(moved, pre.task.state(torch.float64)[1],
                                     pre.task.cast(pre.datasets[0], torch.float64))
    torch.testing.assert_close(ours, full, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(full, task.per_example_loss(params, rest, task.cast(data, torch.float64)))


def test_a_cnn_with_every_parameter_selected_caches_nothing_and_loop_equals_vmap():
    task = ifscope.classification(tiny_cnn().eval())
    train, queries = image_data(24), image_data(5, seed=2)
    pre = cache_prefix(task, train, queries)
    assert pre.start is None and pre.task is task and pre.datasets[0] is train
    by_vmap = _truth(task, train, queries, batching="vmap", vectorize=4)
    by_loop = _truth(task, train, queries, batching="loop")
    assert by_vmap.batching == "vmap" and by_loop.batching == "loop"
    torch.testing.assert_close(by_loop.delta, by_vmap.delta, rtol=1e-9, atol=1e-13)
    floor = by_loop.noise_floor()
    assert floor["kernels"] == ["loop", "vmap"]
    assert max(floor["ratio"]) < 1e-8 and min(floor["signal_rms"]) > 0


def test_auto_batching_picks_one_kernel_and_returns_its_result():
    fn = lambda x, w: (x * w).sum(-1)  # noqa: E731
    x, w = torch.randn(4, 6, dtype=torch.float64), torch.randn(6, dtype=torch.float64)
    how, out = choose("auto", ("test", id(fn)), fn, (x, w), in_dims=(0, None))
    assert how in ("vmap", "loop")
    torch.testing.assert_close(out, x @ w)
    torch.testing.assert_close(looped(fn, (0, None))(x, w), batched(fn, "vmap", (0, None))(x, w))
    with pytest.raises(ifscope.ConfigError, match="batching"):
        choose("threads", ("test",), fn, (x, w))


def test_curvature_products_agree_between_loop_and_vmap():
    task = ifscope.classification(tiny_cnn().eval())
    params, rest = task.state(torch.float64)
    x, y = image_data(10)
    vs = torch.randn(3, sum(p.numel() for p in params.values()), dtype=torch.float64)
    products = [Curvature(task, params, rest, [(x.double(), y)], weight_decay=1e-3, batching=how).matmat(vs)
                for how in ("vmap", "loop")]
    torch.testing.assert_close(products[0], products[1], rtol=1e-10, atol=1e-12)


def tiny_bert_recipe():
    """A recipe for the command-line test: a 2-layer BERT with influence over every parameter by default."""
    from ifscope.recipes import Recipe
    model = tiny_bert().eval()
    return Recipe(model, ifscope.hf_classification(model), text_data(24), text_data(6, seed=2),
                  info={"weight_decay": 1e-3})


def test_fade_command_with_last_blocks_runs_every_method_on_the_cached_task(tmp_path):
    from ifscope.cli import build_parser
    args = build_parser().parse_args([
        "fade", "--recipe", f"{__file__}:tiny_bert_recipe", "--workdir", str(tmp_path), "--last-blocks", "1",
        "--n-ids", "3", "--n-queries", "2", "--steps", "1,3", "--rank", "4", "--iterations", "8", "--krylov", "3",
        "--train-batch-size", "8", "--batch-size", "8", "--truth-dtype", "float64"])
    out = args.run(args)
    model = tiny_bert()
    selected = sum(p.numel() for n, p in model.named_parameters()
                   if n.startswith(("bert.encoder.layer.1.", "bert.pooler.", "classifier.")))
    assert out["prefix"] == {"cached": True, "start_block": 1, "seconds": out["prefix"]["seconds"]}
    assert out["parameters"] == selected
    assert {"horizon", "arnoldi", "arnoldi_horizon", "graddot", "tracin", "horizon_schedule"} <= set(out["methods"])
    assert max(out["noise_floor"]["ratio"]) < 1e-6


def test_diagnose_ground_truth_replays_the_cached_prefix_and_equals_the_whole_bert(monkeypatch):
    from ifscope.experiments.diagnose import diagnose, truth
    from ifscope.experiments.fade import gd_schedule
    from ifscope.truth.prefix import CachedTextTask
    model = tiny_bert().eval()
    task = ifscope.hf_classification(model, last_blocks=1)
    train, queries = text_data(24), text_data(5, seed=2)
    inf = ifscope.Influence(task, train, "arnoldi", rank=4, iterations=8, weight_decay=1e-3, progress=False).fit()
    schedule = gd_schedule(inf, 3, batch_size=8, seed=1)
    replayed = []
    monkeypatch.setattr(truth, "actual_changes_many", lambda task, *a, **kw: replayed.append(task) or
                        actual_changes_many(task, *a, **kw))
    got = diagnose(inf, queries, checks=["divergence", "first_order"], n_queries=4, n_train=6, n_ids=3,
                   steps=[1, 3], epsilons=[0.5], schedule=schedule, seed=2).assumptions["divergence"]
    assert len(replayed) == 1 and isinstance(replayed[0], CachedTextTask)  # removals and ε sweep: one replay
    full = actual_changes(task, train, {k: v[:4] for k, v in queries.items()}, torch.tensor(got["ids"]), [1, 3],
                          schedule, dtype=torch.float64, progress=False)
    assert full.gap[-1].min() > 0  # every id has been in a batch by T = 3
    torch.testing.assert_close(torch.tensor(got["gap"], dtype=torch.float64), full.gap.mean(1), rtol=1e-9,
                               atol=1e-13)


def test_fade_ids_from_the_first_minibatch_all_act_at_the_first_step(tmp_path):
    from ifscope.cli import build_parser
    from ifscope.experiments.fade import gd_schedule
    argv = ["fade", "--recipe", f"{__file__}:tiny_bert_recipe", "--workdir", str(tmp_path), "--last-blocks", "1",
            "--n-ids", "5", "--n-queries", "2", "--steps", "1,2", "--rank", "4", "--iterations", "8",
            "--methods", "run,graddot", "--train-batch-size", "6", "--lr", "0.05", "--truth-dtype", "float64"]
    out = (args := build_parser().parse_args([*argv, "--ids-from", "first_batch"])).run(args)
    recipe = tiny_bert_recipe()  # a recorded recipe file is run only when named: build it here
    run = ifscope.Influence.open(tmp_path, task=recipe.task, train=recipe.train, progress=False)
    first = gd_schedule(run, 2, batch_size=6, seed=0).batches[0]
    assert out["ids_from"] == "first_batch" and set(out["ids"]) <= set(first.tolist()) and len(out["ids"]) == 5
    assert min(out["gap"]) > 0 and out["methods"]["graddot"]["pearson"][0] > 0.9  # every id moved the model at T=1
    with pytest.raises(ifscope.ConfigError, match="first minibatch"):
        (args := build_parser().parse_args([*argv[:-2], "--ids-from", "first_batch", "--n-ids", "7"])).run(args)
