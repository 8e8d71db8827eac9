"""core.memory: freed heap pages handed back at most once per interval, and a streamed embedding that calls it."""

import sys

import pytest
import torch

from ifscope.core import memory


def test_release_freed_runs_at_most_once_per_interval(monkeypatch):
    calls = []
    monkeypatch.setitem(memory._state, "libc", lambda pad: calls.append(pad))
    monkeypatch.setitem(memory._state, "last", 0.0)
    assert memory.release_freed(interval_s=0) is True and calls == [0]
    assert memory.release_freed(interval_s=3600) is False and calls == [0]  # just trimmed: not again
    assert memory.release_freed(interval_s=0) is True and calls == [0, 0]


def test_without_glibc_it_does_nothing(monkeypatch):
    monkeypatch.setitem(memory._state, "libc", False)
    monkeypatch.setitem(memory._state, "last", 0.0)
    assert memory.release_freed(interval_s=0) is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_on_linux_the_real_trim_returns_freed_pages():
    memory._state["libc"] = None  # found afresh
    blocks = [torch.ones(1024 + 97 * (k % 7)) for k in range(2000)]  # heap blocks of sizes that differ (~10 MB)
    del blocks
    assert memory.release_freed(interval_s=0) is True


def test_a_streamed_training_embedding_releases_freed_memory(monkeypatch):
    import ifscope
    calls = []
    monkeypatch.setattr("ifscope.influence.scoring.release_freed", lambda: calls.append(1))
    model = torch.nn.Linear(3, 2)
    train = (torch.randn(40, 3), torch.randint(0, 2, (40,)))
    inf = ifscope.Influence(ifscope.classification(model), train, method="graddot", batch_size=8, progress=False)
    assert inf.train_embeddings().shape[0] == 40 and len(calls) == 5  # once per batch of 8
