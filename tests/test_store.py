"""Run directories: checksummed artifacts, format version, fingerprints, reuse and resume through Influence."""

import json

import pytest
import torch
from recipes_for_tests import tiny

from ifscope import ArtifactError, Influence, NumericalWarning
from ifscope.core.fingerprint import data_fingerprint, model_fingerprint
from ifscope.run.store import CURVATURE, FORMAT_VERSION, MANIFEST, RunDir


@pytest.fixture(scope="module")
def recipe():
    return tiny()


def influence(recipe, workdir, **kw):
    options = dict(rank=8, iterations=24, batch_size=64, progress=False, workdir=workdir)
    options.update(kw)
    return Influence(recipe.task, recipe.train, **options)


def test_tensors_round_trip_and_checksums_catch_corruption(tmp_path):
    run = RunDir(tmp_path)
    run.bind({"model": "m", "train": "d"}, {"method": "x"})
    t = {"a": torch.arange(6.0).reshape(2, 3), "b": torch.tensor([1, 2])}
    run.save_tensors("x.safetensors", t)
    again = RunDir(tmp_path).load_tensors("x.safetensors")
    assert torch.equal(again["a"], t["a"]) and torch.equal(again["b"], t["b"])
    file = tmp_path / "x.safetensors"
    data = bytearray(file.read_bytes())
    data[-1] ^= 0xFF
    file.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"x\.safetensors is corrupted"):
        RunDir(tmp_path).load_tensors("x.safetensors")
    file.write_bytes(bytes(data[:10]))
    with pytest.raises(ArtifactError, match=r"x\.safetensors is truncated"):
        RunDir(tmp_path).load_tensors("x.safetensors")


def test_manifest_format_version_and_corruption(tmp_path):
    RunDir(tmp_path).bind({"model": "m"})
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert manifest["format_version"] == FORMAT_VERSION and "torch" in manifest["versions"]
    manifest["format_version"] = FORMAT_VERSION + 1
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="newer than this ifscope reads"):
        RunDir(tmp_path)
    (tmp_path / MANIFEST).write_text('{"format_version": 1, "artif')
    with pytest.raises(ArtifactError, match="manifest.json is corrupted"):
        RunDir(tmp_path)


def test_fingerprints_refuse_another_model_or_data(tmp_path):
    RunDir(tmp_path).bind({"model": "aaa", "train": "ddd"})
    with pytest.raises(ArtifactError, match="made for another model"):
        RunDir(tmp_path).bind({"model": "bbb", "train": "ddd"})
    with pytest.raises(ArtifactError, match="made for another train"):
        RunDir(tmp_path).bind({"model": "aaa", "train": "eee"})


def test_fingerprints_see_one_changed_value():
    model = torch.nn.Linear(3, 2)
    before = model_fingerprint(model)
    with torch.no_grad():
        model.bias[0] += 1e-6
    assert model_fingerprint(model) != before
    x = torch.zeros(4, 3)
    y = x.clone()
    y[3, 2] = 1.0
    assert data_fingerprint(torch.utils.data.TensorDataset(x)) != data_fingerprint(torch.utils.data.TensorDataset(y))


def test_workdir_reuses_curvature_and_shards_and_matches_memory(recipe, tmp_path):
    first = influence(recipe, tmp_path).fit()
    assert not first.reused and (tmp_path / CURVATURE).exists()
    s1 = first.scores(recipe.test)
    assert first.run.shards_computed == 4 and len(list((tmp_path / "train").glob("*.safetensors"))) == 4
    second = influence(recipe, tmp_path).fit()
    assert second.reused and second.estimator.hvp_calls == 0
    s2 = second.scores(recipe.test)
    assert second.run.shards_reused == 4 and second.run.shards_computed == 0
    memory = influence(recipe, None).fit().scores(recipe.test)
    assert torch.equal(s1, s2)
    torch.testing.assert_close(s1, memory)


def test_workdir_changed_options_refit_and_other_model_refused(recipe, tmp_path):
    influence(recipe, tmp_path).fit().scores(recipe.test)
    changed = influence(recipe, tmp_path, rank=4).fit()
    assert not changed.reused and CURVATURE in changed.dropped and len(changed.estimator.eigenvalues) == 4
    assert not (tmp_path / "train").exists() or not list((tmp_path / "train").iterdir())
    other = tiny(seed=1)
    with pytest.raises(ArtifactError, match="made for another model"):
        influence(other, tmp_path, rank=4).fit()


def test_corrupted_shard_is_named(recipe, tmp_path):
    good = influence(recipe, tmp_path).fit().scores(recipe.test)
    shard = tmp_path / "train" / "00002.safetensors"
    shard.write_bytes(shard.read_bytes()[:-7])
    with pytest.warns(NumericalWarning, match=r"train/00002\.safetensors is truncated.*recomputing"):
        again = influence(recipe, tmp_path).fit()
        assert torch.equal(again.scores(recipe.test), good)
    assert again.run.shards_computed == 1  # only the damaged shard
    from safetensors import safe_open
    from safetensors.torch import load, save
    with safe_open(str(shard), framework="pt") as fh:
        meta = fh.metadata()
    tampered = load(shard.read_bytes())
    tampered["embeddings"] = tampered["embeddings"] + 1  # a valid file with wrong content: its checksum catches it
    shard.write_bytes(save(tampered, metadata=meta))
    with pytest.warns(NumericalWarning, match="is corrupted"):
        assert torch.equal(influence(recipe, tmp_path).fit().scores(recipe.test), good)


def test_artifacts_get_the_users_umask(tmp_path):
    import os
    old = os.umask(0o022)
    try:
        run = RunDir(tmp_path)
        run.bind({"model": "m", "train": "d"}, {"method": "graddot"})
        path = run.save_json("top.json", {"k": 1})
    finally:
        os.umask(old)
    assert (path.stat().st_mode & 0o777) == 0o644 and ((tmp_path / MANIFEST).stat().st_mode & 0o777) == 0o644
