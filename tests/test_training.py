"""Deterministic training and replay: same schedule → same parameters bit for bit; a removal touches only its batches."""

import pytest
import torch
from torch import nn

import ifscope
from ifscope.truth.training import Schedule, make_batches, replay, train


def _task():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Dropout(0.5), nn.Linear(6, 3))
    x = torch.randn(24, 4)
    y = torch.randint(0, 3, (24,))
    return ifscope.classification(model), (x, y)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_replay_with_unit_weights_reproduces_training_bit_for_bit(optimizer):
    task, data = _task()
    params0, _ = task.state()
    first = train(task, data, steps=12, lr=0.05, optimizer=optimizer, batch_size=5, weight_decay=1e-2, seed=3)
    again = replay(task, params0, data, first.schedule, weights=torch.ones(24))
    for k in first.params:
        assert torch.equal(first.params[k], again.params[k]), k
    assert first.losses[-1] == again.losses[-1]
    moved = sum(float((first.params[k] - params0[k]).abs().sum()) for k in params0)
    assert moved > 0  # it trained (with dropout in the model: eval mode keeps it off)


def test_removal_changes_only_the_batches_that_contain_the_example():
    task, data = _task()
    params0, _ = task.state()
    schedule = Schedule(make_batches(24, 10, 6, seed=1), lr=0.1)  # 4 batches per epoch: each example in 1 of 4
    z = 7
    containing = schedule.steps_containing(z)
    assert 0 < len(containing) < 10
    base, removed = [], []
    replay(task, params0, data, schedule, callback=lambda t, p: base.append({k: v.clone() for k, v in p.items()}))
    w = torch.ones(24)
    w[z] = 0.0
    replay(task, params0, data, schedule, weights=w,
           callback=lambda t, p: removed.append({k: v.clone() for k, v in p.items()}))
    # identical until the first batch holding z, then different (the difference is carried on)
    for t in range(10):
        same = all(torch.equal(base[t][k], removed[t][k]) for k in params0)
        assert same == (t < containing[0]), t
    # and a step whose batch lacks z applies the same update to both as the unchanged step would: check one step
    first_diff = containing[0]
    step = next(t for t in range(first_diff + 1, 10) if t not in containing)
    one = Schedule([schedule.batches[step]], lr=0.1)
    a = replay(task, removed[step - 1], data, one, weights=w).params
    b = replay(task, removed[step - 1], data, one).params
    for k in a:
        assert torch.equal(a[k], b[k])


def test_make_batches_is_seeded_and_covers_each_epoch():
    b1, b2 = make_batches(20, 8, 5, seed=4), make_batches(20, 8, 5, seed=4)
    assert all(torch.equal(x, y) for x, y in zip(b1, b2))
    assert sorted(torch.cat(b1[:4]).tolist()) == list(range(20))
    assert all(len(b) == 20 for b in make_batches(20, 3, None, seed=0))


def test_bad_inputs_raise_clear_errors():
    task, data = _task()
    params0, _ = task.state()
    schedule = Schedule(make_batches(24, 3, None, 0), lr=0.1)
    with pytest.raises(ifscope.ConfigError, match="weights"):
        replay(task, params0, data, schedule, weights=torch.ones(5))
    with pytest.raises(ifscope.ConfigError, match="steps"):
        replay(task, params0, data, schedule, steps=10)
    with pytest.raises(ifscope.ConfigError, match="optimizer"):
        replay(task, params0, data, Schedule(schedule.batches, lr=0.1, optimizer="rmsprop"))


def test_ground_truth_matches_separate_replays_and_is_batch_invariant():
    from ifscope.truth.groundtruth import actual_changes
    task, data = _task()
    params0, rest = task.state(torch.float64)
    schedule = Schedule(make_batches(24, 6, 8, seed=2), lr=0.2, optimizer="momentum")
    queries = (data[0][:5], data[1][:5])
    ids = [3, 11, 20]
    gt = actual_changes(task, data, queries, ids, [2, 6], schedule, mode="upweight", epsilon=0.5,
                        dtype=torch.float64, progress=False, vectorize=2)
    gt1 = actual_changes(task, data, queries, ids, [2, 6], schedule, mode="upweight", epsilon=0.5,
                         dtype=torch.float64, progress=False, vectorize=1)
    torch.testing.assert_close(gt.delta, gt1.delta, rtol=1e-9, atol=1e-12)
    base = replay(task, params0, data, schedule, rest=rest).params
    w = torch.ones(24)
    w[11] = 1.5
    moved = replay(task, params0, data, schedule, weights=w, rest=rest).params
    x = queries[0].double()
    with task.evaluating():  # the model has dropout; ground truth runs in eval mode
        change = task.per_example_loss(moved, rest, (x, queries[1])) - task.per_example_loss(base, rest, (x, queries[1]))
    torch.testing.assert_close(gt.delta[1, 1], change.detach(), rtol=1e-9, atol=1e-12)
    gap = torch.cat([(moved[k] - base[k]).flatten() for k in base]).norm()
    torch.testing.assert_close(gt.gap[1, 1], gap, rtol=1e-9, atol=1e-12)
    assert gt.gap[0, 0] > 0 or 3 not in torch.cat(schedule.batches[:2]).tolist()
