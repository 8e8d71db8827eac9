"""language_model on tiny causal LMs built from configs: the model's own masks, counted tokens, exact scores against a
dense Hessian written here, proponents from the query's vocabulary, and the judge of completions."""

import warnings

import pytest
import torch
from torch import nn

import ifscope
from ifscope.core.language_model import LMJudge, completion_mask, next_token_targets
from ifscope.core.projection import jvp_projections, per_example_grads

transformers = pytest.importorskip("transformers")


def tiny_gpt2(vocab=30, seed=0):
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(vocab_size=vocab, n_positions=16, n_embd=16, n_layer=2, n_head=2,
                                  bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(cfg).eval()


def lm_data(n=6, length=8, vocab=30, seed=1):
    """Right-padded random sequences of 3..length tokens (id 0 is padding)."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.zeros(n, length, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i in range(n):
        m = int(torch.randint(3, length + 1, (1,), generator=gen))
        ids[i, :m] = torch.randint(1, vocab, (m,), generator=gen)
        mask[i, :m] = 1
    return {"input_ids": ids, "attention_mask": mask}


def reference_nll(logits, batch, count):
    nll = nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), batch["input_ids"][:, 1:], reduction="none")
    return (nll * count).sum(1) / count.sum(1)


def test_task_keeps_the_models_causal_and_padding_masks():
    model = tiny_gpt2()
    task = ifscope.language_model(model)
    data = lm_data()
    params, rest = task.state()
    with torch.no_grad():
        ref = model(input_ids=data["input_ids"], attention_mask=data["attention_mask"]).logits
        ours = task.forward(params, rest, data)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)  # a lost causal mask moves them by ~0.1
    # the loss is the mean NLL over real next tokens; a loss_mask narrows it to the completion (last 2 tokens)
    real = data["attention_mask"][:, 1:].float()
    torch.testing.assert_close(task.per_example_loss(params, rest, data), reference_nll(ref, data, real))
    data["loss_mask"] = completion_mask(data["attention_mask"], 2)
    last2 = data["loss_mask"][:, 1:].float()
    assert (last2.sum(1) == 2).all() and ((last2 > 0) <= (real > 0)).all()
    torch.testing.assert_close(task.per_example_loss(params, rest, data), reference_nll(ref, data, last2))


def test_padding_does_not_change_gradients_and_jvp_equals_vmap():
    task = ifscope.language_model(tiny_gpt2(), last_blocks=1)
    params, rest = task.state(torch.float64)
    data = lm_data()
    data["loss_mask"] = completion_mask(data["attention_mask"], 3)
    padded = {k: torch.cat([v, torch.zeros(len(v), 5, dtype=v.dtype)], 1) for k, v in data.items()}
    trimmed = task.cast(padded, torch.float64)
    assert trimmed["loss_mask"].shape[1] == trimmed["input_ids"].shape[1] == int(data["attention_mask"].sum(1).max())
    g = per_example_grads(task, params, rest, data)
    torch.testing.assert_close(per_example_grads(task, params, rest, padded), g, rtol=1e-9, atol=1e-12)
    m = int(data["attention_mask"][2].sum())
    alone = {k: v[2:3, :m] for k, v in data.items()}
    torch.testing.assert_close(per_example_grads(task, params, rest, alone)[0], g[2], rtol=1e-9, atol=1e-12)
    basis = torch.randn(3, g.shape[1], dtype=torch.float64)
    torch.testing.assert_close(jvp_projections(task, params, rest, data, basis), g @ basis.T, rtol=1e-9, atol=1e-12)


def test_exact_scores_equal_a_dense_hessian_reference():
    model = tiny_gpt2().double()
    names = ["transformer.ln_f.weight", "transformer.h.1.mlp.c_proj.bias"]
    task = ifscope.language_model(model, params=names)
    train, test = lm_data(n=10, seed=2), lm_data(n=3, seed=3)
    test["loss_mask"] = completion_mask(test["attention_mask"], 2)
    wd = 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an untrained model's Hessian may have negative eigenvalues
        s = ifscope.Influence(task, train, method="exact", weight_decay=wd, dtype=torch.float64,
                              progress=False).scores(test)
    named = dict(model.named_parameters())
    theta = torch.cat([named[n].detach().reshape(-1) for n in names])
    sizes = [named[n].numel() for n in names]

    def losses(flat, batch):
        parts = dict(zip(names, (p.reshape(named[n].shape) for n, p in zip(names, flat.split(sizes)))))
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        logits = torch.func.functional_call(model, parts, (), inputs).logits
        count = batch["attention_mask"][:, 1:].double()
        if "loss_mask" in batch:
            count = count * batch["loss_mask"][:, 1:]
        return reference_nll(logits, batch, count)

    h = torch.autograd.functional.hessian(lambda f: losses(f, train).mean(), theta) + wd * torch.eye(len(theta))

    def grads(batch):  # one row per example: the Jacobian of the per-example losses
        return torch.autograd.functional.jacobian(lambda f: losses(f, batch), theta)
    expected = grads(test) @ torch.linalg.solve(h.double(), grads(train).T)
    torch.testing.assert_close(s, expected, rtol=1e-7, atol=1e-10)


class CausalBag(nn.Module):
    """A plain causal LM: the next-token logits read the running mean of the embeddings seen so far."""

    def __init__(self, vocab, dim=8):
        super().__init__()
        self.emb, self.out = nn.Embedding(vocab, dim), nn.Linear(dim, vocab)

    def forward(self, ids):
        e = self.emb(ids).cumsum(1) / torch.arange(1, ids.shape[1] + 1, dtype=torch.float32)[:, None]
        return self.out(e)


def test_proponents_come_from_the_querys_vocabulary():
    """Sequences over two disjoint vocabularies (1-10 and 11-20): a query's top proponents share its vocabulary."""
    gen = torch.Generator().manual_seed(0)
    n, length = 40, 6
    half = torch.arange(n) % 2
    ids = torch.randint(1, 11, (n, length), generator=gen) + 10 * half[:, None]
    train = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": half}
    torch.manual_seed(0)
    model = CausalBag(21)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    task = ifscope.language_model(model)
    for _ in range(100):
        params = dict(model.named_parameters())
        loss = task.per_example_loss(params, {}, train).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    qids = torch.randint(1, 11, (6, length), generator=gen) + 10 * (torch.arange(6) % 2)[:, None]
    queries = {"input_ids": qids, "attention_mask": torch.ones_like(qids)}
    inf = ifscope.Influence(task, train, method="exact", weight_decay=0.01, progress=False)
    top = inf.top(queries, k=5)
    assert (half[top.proponents] == (torch.arange(6) % 2)[:, None]).all()


class Words:
    """A tokenizer stand-in: ids are positions in a word list."""

    words = ["<pad>", "the", "cat", "sat", "on", "mat"]

    def decode(self, ids):
        return " ".join(self.words[i] for i in ids)


def test_judge_says_which_completions_are_not_the_greedy_continuation():
    ids = torch.tensor([[1, 2, 3, 4, 5], [1, 2, 3, 0, 0]])
    batch = {"input_ids": ids, "attention_mask": (ids > 0).long(), "labels": torch.tensor([7, 8])}
    batch["loss_mask"] = completion_mask(batch["attention_mask"], 2)
    logits = torch.full((2, 5, 6), -5.0)
    for b, t, v in [(0, 2, 4), (0, 3, 5), (1, 1, 4)]:  # row 0 continues "on mat" greedily, row 1 says "on" for "sat"
        logits[b, t, v] = 5.0
    task = ifscope.language_model(tiny_gpt2(6), tokenizer=Words())
    # targets as Hugging Face labels: one row per example, the counted next tokens, -100 elsewhere
    assert task.targets(batch).tolist() == [[-100, -100, -100, 4, 5], [-100, 2, 3, -100, -100]]
    assert torch.equal(next_token_targets(batch), task.targets(batch))
    judge = task.judge
    assert isinstance(judge, LMJudge) and judge.kind == "language_model"
    assert judge.wrong(logits, batch).tolist() == [False, True]
    assert judge.group(batch).tolist() == [7, 8]
    assert judge.show_target(batch, 1) == "'cat sat'" and judge.show_prediction(logits, batch, 0) == "'on mat'"
    assert judge.held_out(logits, batch)[0] < judge.held_out(logits, batch)[1]
    assert LMJudge().show_target(batch, 0) == "tokens 4 5"


def test_bad_batches_are_refused_with_one_line():
    task = ifscope.language_model(tiny_gpt2())
    params, rest = task.state()
    data = lm_data()
    data["loss_mask"] = torch.zeros_like(data["input_ids"])
    with pytest.raises(ifscope.DataError, match="no counted next-token prediction"):
        task.check(params, rest, data)
    with pytest.raises(ifscope.DataError, match="dict batches with 'input_ids'"):
        task.check(params, rest, (data["input_ids"],))
    with pytest.raises(ifscope.ConfigError, match="either params"):
        ifscope.language_model(tiny_gpt2(), params=["*"], last_blocks=1)
