"""Which parameters each training stage trains.

* ``base``: the tau = 0 path, i.e. every trainable parameter outside the
  telepathy pathway and outside LoRA (the CPU stand-in for pi0.5; frozen after).
* ``sigma``: the telepathy pathway (each component's ``telepathy_params``: the
  vision modulator, intent's factor/intent/telepathy heads and language
  modulator, the memory, the residual heads; ``model.scene_correction``'s head) plus
  the backbone's LoRA adapters.

Pathway parameters a component lists in ``distilled_params`` (the vision's tau stem)
train in neither stage: only their own distillation (``sigma declutter``) trains them.

Parameters frozen by construction (a backbone's base weights) stay frozen in
both stages. Because LoRA changes the backbone's hidden states, and with them
``a_0``, stage ``sigma`` takes ``a_base`` from a frozen copy of the base stage
(a ``base_policy`` checkpoint) or from base actions stored with the data.
"""

from __future__ import annotations

from typing import Literal

from sigma_core.components import Component
from sigma_core.model.policy import SigmaPolicy

Stage = Literal["base", "sigma"]


def is_lora(name: str) -> bool:
    """Whether a parameter name belongs to a peft LoRA adapter."""
    return "lora_" in name


def telepathy_parameter_names(policy: SigmaPolicy) -> set[str]:
    """Full names of the parameters in the telepathy pathway (LoRA not included): each
    component's ``telepathy_params`` and the policy's scene correction, if any."""
    names: set[str] = set()
    if policy.spec.model.scene_correction:
        names = {f"scene_correction.{n}" for n, _ in policy.scene_correction.named_parameters()}
    for slot, component in policy.named_components():
        prefixes = type(component).telepathy_params
        for name, _ in component.named_parameters():
            if any(name.startswith(p) for p in prefixes):
                names.add(f"{slot}.{name}")
    return names


def distilled_parameter_names(policy: SigmaPolicy) -> set[str]:
    """Full names of the pathway's parameters that only their own distillation trains
    (each component's ``distilled_params``): frozen in both stages."""
    return {
        f"{slot}.{name}"
        for slot, component in policy.named_components()
        for name, _ in component.named_parameters()
        if any(name.startswith(p) for p in type(component).distilled_params)
    }


def configure_stage(policy: SigmaPolicy, stage: Stage) -> dict[str, int]:
    """Set ``requires_grad`` for ``stage``; return {trainable, frozen} parameter counts.

    Only parameters that were trainable when the policy was built can be turned
    on, so calling it twice, or switching stages, is safe.
    """
    if stage not in ("base", "sigma"):
        raise ValueError(f"unknown stage {stage!r}; choose base or sigma")
    telepathy = telepathy_parameter_names(policy)
    distilled = distilled_parameter_names(policy)
    counts = {"trainable": 0, "frozen": 0}
    for name, p in policy.named_parameters():
        pathway = name in telepathy or is_lora(name)
        on = name in policy.trainable_at_build and (pathway if stage == "sigma" else not pathway)
        on = on and name not in distilled
        p.requires_grad_(on)
        counts["trainable" if on else "frozen"] += p.numel()
    return counts


def untrained_slots(policy: SigmaPolicy, stage: Stage) -> list[str]:
    """Warnings for components the spec chose that ``stage`` leaves without a trainable tensor.

    Only slots whose ``type`` differs from the default are checked: a new head
    (a plugin's, or a built-in alternative) that a stage freezes trains nothing,
    which an author would otherwise discover only from flat losses.
    """
    from sigma_core.spec import ModelSpec

    defaults = ModelSpec()
    out = []
    for slot, component in policy.named_components():
        if (
            slot == "base_policy"
            or getattr(policy.spec.model, slot).type == getattr(defaults, slot).type
        ):
            continue
        params = list(component.parameters())
        if params and not any(p.requires_grad for p in params):
            head = f"model.{slot} ({component.name}) has no trainable parameter in stage {stage}:"
            out.append(f"{head} it trains nothing. {_advice(component, stage)}")
    return out


#: kinds that belong to the telepathy pathway whole (their ABC's ``telepathy_params``)
PATHWAY_KINDS = ("memory", "residual")


def _advice(component: Component, stage: Stage) -> str:
    """What to change so that ``stage`` trains ``component`` (it trains nothing now)."""
    cls = type(component)
    if stage == "sigma" and cls.kind in PATHWAY_KINDS:
        return (
            f"A {cls.kind} belongs to the telepathy pathway and trains only in stage sigma, "
            f"but {cls.__name__}.telepathy_params = {cls.telepathy_params!r} leaves it out: "
            "keep the default telepathy_params = ('',) (or name its parameter prefixes)"
        )
    if stage == "base" and cls.telepathy_params:
        return (
            f"It belongs to the telepathy pathway (telepathy_params = {cls.telepathy_params!r}),"
            " which trains in stage sigma on a trained base: use train.stage: sigma with a"
            " base_policy checkpoint of stage base (see configs/sigma-tiny.yaml)"
        )
    return (
        "To train a new head, use train.stage: base (with train.losses.base_loss: native"
        " for its own loss; see configs/train-head.yaml)"
    )
