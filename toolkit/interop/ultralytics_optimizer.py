"""The optimizer state of an interrupted Ultralytics run (its ``last.pt``), per parameter name, read without running code.

Ultralytics keeps the optimizer in ``last.pt`` while a run goes on (a finished run's checkpoints
have none). Its ``state`` is keyed by each parameter's position over the parameter groups, and
the groups hold no names, so this module rebuilds the order in which Ultralytics 8.4's
``build_optimizer`` filled them, from the module tree pickled beside it (the EMA model, the
same tree as the trained one):

* parameters in ``named_modules`` / ``named_parameters`` order, sorted into the groups
  ``weight`` (decayed), ``bn`` (weights of normalisation layers), ``bias`` (any name holding
  "bias") and, for MuSGD, first of all ``muon`` (every 2-D and 4-D weight);
* MuSGD splits each group in two: the head's class branches (``cv3``, ``one2one_cv3``) and
  ``proto.semseg`` first (they learn at 3x lr), the rest second.

Each group's ``param_group`` name and size in the file must equal the rebuilt ones, and every
state tensor the shape of its parameter.
"""

from __future__ import annotations

from pathlib import Path

import torch

from edgeseg.interop.torch_pickle import READ_ERRORS, Refused, Unsafe, load_restricted, read_error
from edgeseg.interop.ultralytics import _Budget, _collect_state, _model_object
from edgeseg.runtimes.errors import EdgesegError

OPTIMIZERS = ("SGD", "MuSGD", "Adam", "AdamW")  # the ones whose state carries over (edgeseg has them)


def optimizer_kind(groups: list) -> str | None:
    """The optimizer a state_dict's ``param_groups`` come from: one of ``OPTIMIZERS``, or None for another."""
    first = groups[0] if groups and isinstance(groups[0], dict) else {}
    if any(isinstance(g, dict) and g.get("use_muon") for g in groups):
        return "MuSGD"
    if "betas" in first:
        return "AdamW" if first.get("decoupled_weight_decay") else "Adam"
    if "nesterov" in first and "alpha" not in first:  # RMSprop has momentum and alpha, no nesterov
        return "SGD"
    return None


def rebuilt_groups(owners: dict[str, str], dims: dict[str, int], muon: bool) -> list[tuple[str, list[str]]]:
    """Ultralytics 8.4's parameter groups as ``[(param_group name, [parameter keys])]``, in its order.

    Args:
        owners: ``{parameter key: pickled class of its module}`` in ``named_parameters`` order.
        dims: each parameter's number of dimensions.
        muon: the optimizer is MuSGD.
    """
    kinds: dict[str, list[str]] = {"weight": [], "bn": [], "bias": [], "muon": []}
    for name, owner in owners.items():
        if muon and dims[name] in (2, 4):
            kinds["muon"].append(name)
        elif "bias" in name:
            kinds["bias"].append(name)
        elif "Norm" in owner.rpartition(".")[2]:
            kinds["bn"].append(name)
        else:
            kinds["weight"].append(name)
    order = ["weight", "bn", "bias", "muon"] if muon else ["weight", "bn", "bias"]
    if not muon:
        return [(kind, kinds[kind]) for kind in order]
    head = max((int(n.split(".")[1]) for n in owners if n.startswith("model.") and n.split(".")[1].isdigit()), default=-1)
    branches = (f"model.{head}.cv3.", f"model.{head}.one2one_cv3.")

    def boosted(name: str) -> bool:
        return name.startswith(branches) or "proto.semseg" in name

    groups = []
    for kind in order:
        groups += [(kind, [n for n in kinds[kind] if boosted(n)]), (kind, [n for n in kinds[kind] if not boosted(n)])]
    return groups


def ultralytics_optimizer_state(path: str | Path) -> tuple[str, dict[str, dict[str, torch.Tensor]]] | None:
    """The optimizer state an Ultralytics checkpoint holds, by parameter key; None when it holds none.

    Returns:
        ``(kind, state)``: ``kind`` one of ``OPTIMIZERS``; ``state`` ``{parameter key (edgeseg's =
        Ultralytics' name): {state name: tensor}}`` for each parameter the optimizer has stepped
        (AdamW: ``step``, ``exp_avg``, ``exp_avg_sq``; SGD: ``momentum_buffer``; MuSGD also
        ``momentum_buffer_SGD``), floating tensors as float32 copies.

    Raises:
        EdgesegError: an optimizer edgeseg does not have, groups that are not the ones Ultralytics
            builds for the pickled model, a state tensor of another shape than its parameter, or
            a file ``load_restricted`` refuses.
    """
    path = Path(path)
    ckpt = load_restricted(path)
    saved = ckpt.get("optimizer") if isinstance(ckpt, dict) else None
    if saved is None:
        return None
    try:
        _, model = _model_object(ckpt, path)
        params: dict[str, torch.Tensor] = {}
        owners: dict[str, str] = {}
        _collect_state(model, "", params, _Budget("the module tree"), owners)
        groups, state = saved["param_groups"], saved["state"]
        kind = optimizer_kind(groups)
        if kind is None:
            raise EdgesegError(f"{path}: its optimizer state is not one of {', '.join(OPTIMIZERS)}'s")
        rebuilt = rebuilt_groups(owners, {n: params[n].dim() for n in owners}, kind == "MuSGD")
        found = [(g.get("param_group"), len(g["params"])) for g in groups]
        expected = [(kind_name, len(names)) for kind_name, names in rebuilt]
        if found != expected:
            raise EdgesegError(f"{path}: its optimizer's parameter groups {found} are not the ones Ultralytics 8.4 builds for its model {expected}")
        out: dict[str, dict[str, torch.Tensor]] = {}
        for name, index in zip((n for _, names in rebuilt for n in names), (i for g in groups for i in g["params"])):
            entry = state.get(index) or {}
            tensors = {}
            for key, value in entry.items():
                if not isinstance(key, str) or not isinstance(value, torch.Tensor):
                    raise EdgesegError(f"{path}: optimizer state {index} holds a {type(value).__name__}, not a tensor")
                if key != "step" and value.shape != params[name].shape:
                    raise EdgesegError(
                        f"{path}: optimizer state '{key}' of {name} has shape {list(value.shape)}, the parameter {list(params[name].shape)}"
                    )
                tensors[key] = value.to(torch.float32, copy=True) if value.is_floating_point() else value.clone()
            if tensors:
                out[name] = tensors
    except EdgesegError:
        raise
    except (Refused, Unsafe, *READ_ERRORS) as exc:
        raise read_error(path, exc) from None
    return kind, out
