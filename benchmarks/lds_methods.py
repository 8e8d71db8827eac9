"""The methods of ``benchmarks/lds.py``: ifscope's estimators configured for one recipe, and the peers' (dattri's
influence functions and TRAK, kronfluence, pyDVL) as functions returning a ``[queries, train]`` score matrix with
positive = proponent, each on its own copy of the model."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

import ifscope
from ifscope.experiments.fade import trajectory_checkpoints
from ifscope.truth.training import Schedule

# ifscope's methods: label -> (method, options); the horizon-aware ones also get horizon = T and the continued
# training's lr (HORIZON_AWARE), tracin one checkpoint per step of that training, unrolled its exact derivative
IFSCOPE = {"exact": ("exact", {}), "cg": ("cg", {"cg_iterations": 100}), "lissa": ("lissa", {"depth": 100}),
           "arnoldi": ("arnoldi", {"rank": 50, "iterations": 100}), "graddot": ("graddot", {}),
           "horizon": ("horizon", {}), "arnoldi_horizon": ("arnoldi", {"rank": 50, "iterations": 100}),
           "kfac": ("kfac", {}), "ekfac": ("ekfac", {}), "ekfac_horizon": ("ekfac", {}), "tracin": ("tracin", {}),
           "unrolled": ("unrolled", {})}
HORIZON_AWARE = ("horizon", "arnoldi_horizon", "ekfac_horizon", "unrolled")
KRONECKER = ("kfac", "ekfac", "ekfac_horizon")  # damping: their own default (0.1 x each layer's mean eigenvalue)
PEERS = ("explicit", "cg", "arnoldi", "lissa", "datainf", "trak-1", "trak-10", "kronfluence-ekfac", "pydvl-cg",
         "pydvl-arnoldi", "pydvl-ekfac")
PEER_MODULES = ("dattri.algorithm.influence_function", "dattri.algorithm.trak", "dattri.task", "kronfluence.analyzer",
                "pydvl.influence.torch")


@dataclass
class Setting:
    """What every method of one run shares: the recipe, its weight decay, the horizon T and step η of the continued
    training, the damping of the inverse-curvature methods and the Hessian sample."""

    recipe: Any
    weight_decay: float
    schedule: Schedule
    steps: int
    damping: float
    hessian_samples: int | None
    seed: int


def kronecker_task(recipe: Any) -> Any:
    """The recipe's task restricted to the parameters K-FAC factors (nn.Linear / nn.Conv1d / nn.Conv2d weights and
    biases), the same layers kronfluence tracks; other parameters (BatchNorm's) are left out of the score."""
    kinds = (nn.Linear, nn.Conv1d, nn.Conv2d)
    names = [f"{m_name}.{p}" if m_name else p for m_name, m in recipe.model.named_modules() if isinstance(m, kinds)
             for p, _ in m.named_parameters(recurse=False)]
    all_names = [n for n, _ in recipe.model.named_parameters()]
    return recipe.task if sorted(names) == sorted(all_names) else ifscope.classification(recipe.model, params=names)


def ifscope_options(label: str, s: Setting) -> tuple[str, dict[str, Any]]:
    """``(method, options)`` of the ifscope row ``label`` in setting ``s``."""
    method, own = IFSCOPE[label]
    opts: dict[str, Any] = {"weight_decay": s.weight_decay, "seed": s.seed, **own}
    if label not in KRONECKER:
        opts["damping"] = s.damping
    if s.hessian_samples is not None:
        opts["hessian_samples"] = s.hessian_samples
    if label in HORIZON_AWARE:
        opts.update(horizon=s.steps, lr=s.schedule.lr)
    return method, opts


def ifscope_scores(label: str, s: Setting, queries: Any) -> Tensor:
    """ifscope's ``[Q, N]`` scores of row ``label`` (fit included)."""
    method, opts = ifscope_options(label, s)
    task = kronecker_task(s.recipe) if label in KRONECKER else s.recipe.task
    if label == "tracin":  # TracIn along the continued training: one checkpoint per step, each with its lr
        opts.update(per_step=True, checkpoints=trajectory_checkpoints(s.recipe.task, s.recipe.train, s.schedule,
                                                                      s.steps))
    return ifscope.Influence(task, s.recipe.train, method=method, progress=False, **opts).scores(queries)


def _cross_entropy(model: nn.Module) -> Callable:
    def loss(params, data):
        x, y = data
        x, y = (x.unsqueeze(0), y.unsqueeze(0)) if x.dim() == 1 else (x, y)
        return F.cross_entropy(torch.func.functional_call(model, params, x), y.long())
    return loss


def dattri_trak(model: nn.Module, train: tuple, queries: tuple, checkpoints: list[dict[str, Tensor]], reg: float,
                proj_dim: int = 512) -> Tensor:
    """dattri's TRAK over ``checkpoints`` (TRAK-k: k models), its target the margin ``log p/(1-p)`` as in TRAK."""
    from dattri.algorithm.trak import TRAKAttributor
    from dattri.task import AttributionTask

    def margin(params, data):
        x, y = data
        logits = torch.func.functional_call(model, params, x.unsqueeze(0))[0]
        gold = torch.arange(logits.shape[-1]) == y.long()  # no indexing by a value: dattri vmaps this function
        return (logits * gold).sum() - torch.logsumexp(logits.masked_fill(gold, float("-inf")), 0)

    def probability(params, data):
        x, y = data
        return torch.exp(-F.cross_entropy(torch.func.functional_call(model, params, x.unsqueeze(0)),
                                          y.long().unsqueeze(0)))
    task = AttributionTask(loss_func=margin, model=model, checkpoints=checkpoints)
    att = TRAKAttributor(task=task, correct_probability_func=probability, device="cpu", regularization=reg,
                         projector_kwargs={"proj_dim": proj_dim})
    att.cache(DataLoader(TensorDataset(*train), batch_size=256))
    return att.attribute(DataLoader(TensorDataset(*queries), batch_size=256)).T  # dattri returns [train, test]


def pydvl_ekfac(model: nn.Module, train: tuple, queries: tuple, reg: float) -> Tensor:
    """pyDVL's EK-FAC (empirical Fisher, eigenvalues refitted: ``update_diagonal=True``); its influences have this
    repository's sign (its ``direct`` equals ifscope's ``exact``)."""
    from pydvl.influence.torch import EkfacInfluence
    inf = EkfacInfluence(model, update_diagonal=True, hessian_regularization=reg)
    inf = inf.fit(DataLoader(TensorDataset(*train), batch_size=256))
    return inf.influences(queries[0], queries[1], train[0], train[1])


def peer_label(kind: str) -> str:
    """The row name of a peer ``kind`` (docs_render_lds.peer_name, which the docs' figures look rows up by)."""
    from docs_render_lds import peer_name
    return peer_name(kind)


def peer_scores(kind: str, s: Setting, x_train: tuple, x_query: tuple, trak_models: Callable[[int], list]) -> Tensor:
    """The peer ``kind``'s ``[Q, N]`` scores on its own copy of the recipe's model (fit included)."""
    from peers import dattri_method, kronfluence_method, pydvl_method
    model = copy.deepcopy(s.recipe.model)
    labelled = (x_train[0], x_train[1].long())  # dattri takes float labels, kronfluence and pyDVL class indices
    q_labelled = (x_query[0], x_query[1].long())
    reg = s.weight_decay + s.damping
    if kind.startswith("kronfluence-"):  # it wraps the modules it tracks: a bare nn.Linear needs a parent
        wrapped = model if any(True for _ in model.children()) else nn.Sequential(model)
        return kronfluence_method(wrapped, labelled, q_labelled, None, kind.split("-", 1)[1])()
    if kind.startswith("trak-"):
        return dattri_trak(model, x_train, x_query, trak_models(int(kind.split("-")[1])), 0.0)
    if kind == "pydvl-ekfac":
        return pydvl_ekfac(model, labelled, q_labelled, reg)
    if kind.startswith("pydvl-"):
        return pydvl_method(kind.split("-", 1)[1], model, labelled, q_labelled, reg, 50)()
    return dattri_method(kind, model, x_train, x_query, reg, 50)()


def covered(label: str, s: Setting) -> int:
    """How many of the model's parameters row ``label`` scores over: K-FAC's layers (ifscope's and pyDVL's), the
    nn.Linear and nn.Conv2d modules kronfluence tracks (it skips a Conv1d silently), else all."""
    model = s.recipe.model
    if label.startswith("kronfluence"):
        return sum(p.numel() for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d)) for p in m.parameters())
    if label.split()[-1] in KRONECKER:
        names = set(kronecker_task(s.recipe).parameter_names)
        return sum(p.numel() for n, p in model.named_parameters() if n in names)
    return sum(p.numel() for p in model.parameters())




def timed(fn: Callable[[], Tensor]) -> tuple[Tensor, float]:
    t0 = time.perf_counter()
    out = torch.as_tensor(fn()).detach().double()
    return out, time.perf_counter() - t0
