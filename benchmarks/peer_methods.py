"""The peer libraries' influence methods as benchmarks/peers.py runs them: each returns a run computing the
``[queries, train]`` score matrix (positive = proponent) in ifscope's conventions from the peer's own API."""

from __future__ import annotations

import os
import tempfile

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def dattri_method(kind: str, model, train_ds, queries, reg: float, rank: int):
    def go():
        from dattri.algorithm import influence_function as dif
        from dattri.task import AttributionTask

        def loss(params, data):
            x, y = data
            x, y = (x.unsqueeze(0), y.unsqueeze(0)) if x.dim() == 1 else (x, y)
            return F.cross_entropy(torch.func.functional_call(model, params, x), y.long())
        task = AttributionTask(loss_func=loss, model=model, checkpoints=model.state_dict())
        n = len(train_ds[0])
        full = DataLoader(TensorDataset(*train_ds), batch_size=n)  # one batch: dattri sums per-batch inverse-HVPs
        test = DataLoader(TensorDataset(*queries), batch_size=len(queries[0]))
        if kind == "arnoldi":
            att = dif.IFAttributorArnoldi(task, proj_dim=rank, max_iter=2 * rank, regularization=reg)
        elif kind == "cg":
            att = dif.IFAttributorCG(task, max_iter=100, regularization=reg)
        elif kind == "lissa":
            att = dif.IFAttributorLiSSA(task, damping=reg, recursion_depth=100)
        elif kind == "datainf":
            att = dif.IFAttributorDataInf(task, regularization=reg)
        else:
            att = dif.IFAttributorExplicit(task, regularization=reg)
        att.cache(full)
        return att.attribute(full, test).T  # dattri returns [train, test]
    return go


def kronfluence_method(model, train_ds, queries, reg: float | None, strategy: str = "ekfac", empirical: bool = False):
    """kronfluence's pairwise scores; ``reg`` its damping_factor (None: 0.1 × each module's mean eigenvalue),
    ``empirical``: the empirical Fisher (observed labels) instead of labels sampled from the model."""
    def go():
        from kronfluence.analyzer import Analyzer, prepare_model
        from kronfluence.arguments import FactorArguments, ScoreArguments
        from kronfluence.task import Task

        class Classification(Task):
            def compute_train_loss(self, batch, model, sample=False):
                x, y = batch
                logits = model(x)
                if sample:  # kronfluence's Fisher uses labels sampled from the model
                    with torch.no_grad():
                        y = torch.multinomial(F.softmax(logits, -1), 1).flatten()
                return F.cross_entropy(logits, y, reduction="sum")

            def compute_measurement(self, batch, model):
                x, y = batch
                return F.cross_entropy(model(x), y, reduction="sum")
        task = Classification()
        m = prepare_model(model, task)
        with tempfile.TemporaryDirectory() as out:
            an = Analyzer(analysis_name="bench", model=m, task=task, cpu=True, disable_model_save=True,
                          output_dir=out, disable_tqdm=True)
            an.fit_all_factors("f", dataset=TensorDataset(*train_ds), per_device_batch_size=256,
                               factor_args=FactorArguments(strategy=strategy, use_empirical_fisher=empirical),
                               overwrite_output_dir=True)
            an.compute_pairwise_scores("s", factors_name="f", query_dataset=TensorDataset(*queries),
                                       train_dataset=TensorDataset(*train_ds), per_device_query_batch_size=64,
                                       per_device_train_batch_size=256,
                                       score_args=ScoreArguments(damping_factor=reg), overwrite_output_dir=True)
            return an.load_pairwise_scores("s")["all_modules"].clone()
    return go


def captum_method(model, train_ds, queries, reg: float):
    def go():
        from captum.influence._core.influence_function import NaiveInfluenceFunction
        n = len(train_ds[0])
        with tempfile.TemporaryDirectory() as out:
            path = os.path.join(out, "ckpt.pt")
            torch.save(model.state_dict(), path)

            def load(m, p):
                m.load_state_dict(torch.load(p))
                return 1.0
            # Captum builds the Hessian of the summed loss: damping × N there, scores × N here
            inf = NaiveInfluenceFunction(model, DataLoader(TensorDataset(*train_ds), batch_size=256), path, load,
                                         loss_fn=nn.CrossEntropyLoss(reduction="none"), batch_size=256,
                                         projection_dim=None, hessian_reg=reg * n)
            return inf.influence(queries) * n
    return go


def pydvl_method(kind: str, model, train_ds, queries, reg: float, rank: int):
    def go():
        from pydvl.influence.torch import ArnoldiInfluence, CgInfluence, DirectInfluence
        loader = DataLoader(TensorDataset(*train_ds), batch_size=len(train_ds[0]))
        if kind == "cg":
            inf = CgInfluence(model, F.cross_entropy, regularization=reg, maxiter=100)
        elif kind == "arnoldi":
            inf = ArnoldiInfluence(model, F.cross_entropy, regularization=reg, rank=rank)
        else:
            inf = DirectInfluence(model, F.cross_entropy, regularization=reg)
        inf = inf.fit(loader)
        return inf.influences(queries[0], queries[1], train_ds[0], train_ds[1])
    return go


PEER_MODULES = ("dattri.algorithm.influence_function", "dattri.task", "kronfluence.analyzer", "kronfluence.arguments",
                "captum.influence._core.influence_function", "pydvl.influence.torch")


def warm_imports() -> None:
    """Import the peers before timing anything: a library's import time is not its method's cost."""
    import importlib
    for name in PEER_MODULES:
        try:
            importlib.import_module(name)
        except Exception as exc:  # reported again, with the method, when the method runs
            print(f"cannot import {name}: {type(exc).__name__}: {exc}")
