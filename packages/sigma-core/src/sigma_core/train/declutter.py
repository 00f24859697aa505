"""Distilling the tau pass's vision towards the scene without distractors (``sigma declutter``).

A base trained in one-cube scenes loses the named cube among distractor cubes of other
colours (issue 21: 26% success in the clear transfer scenes, 48% with the distractors
drawn invisible, 88% told the named cube's position). Nothing that reads the frozen
base's features locates the cube to the centimetre it needs; but the base already acts
well on a scene it sees without the distractors. So the tau pass is taught to *see*
that scene: with ``vision.tau_stem`` tau enters the image encoding, and on states the
policy visits in closed loop (the simulator renders each one a second time without the
distractors, :func:`sigma_sim.scene.uncluttered_observation`) the tau pass's vision is
fitted to what the frozen base's pass 1 sees in the uncluttered render::

    L_declutter = mean (V_mod(x; tau) - V_base(x_clean))^2 + mean (s_tau(x; tau) - s_hat(x_clean))^2

(``V`` the vision tokens, ``s`` the scene estimate of ``model.scene_state: estimated``;
:meth:`SigmaPolicy.telepathy_vision`). Only the tau stem trains (the vision's
``distilled_params``, which stage sigma leaves at their zero start); tau itself comes
from the trained intent workspace, frozen, which reads the instruction: the instruction
is what says which cubes are distractors. The uncluttered render is privileged, used only while
training, like the scene state of the auxiliary head. The closed loop that collects the
states lives in ``sigma_sim.declutter``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from sigma_core.errors import SigmaUserError
from sigma_core.model.policy import SigmaPolicy
from sigma_core.train.estimator import VisitedStates
from sigma_core.train.stages import distilled_parameter_names
from sigma_core.types import SigmaBatch


@dataclass
class ClutteredStates(VisitedStates):
    """Planning steps of closed-loop episodes in scenes with distractors.

    Attributes (besides :class:`VisitedStates`' images, state and truth):
        clean: (N, C, 1, 3, P, P) the same instants rendered without the distractors,
            float16 like ``images``.
        memory: (N, D) the semantic memory ``m_{t-1}`` the policy planned with.
        texts: N instructions, as the policy read them.
    """

    clean: Tensor
    memory: Tensor
    texts: list[str]

    def batch(self, idx: Tensor) -> SigmaBatch:
        """The observations at ``idx`` as a batch (images as float32)."""
        return SigmaBatch(
            images=self.images[idx].float(),
            state=self.state[idx],
            texts=[self.texts[int(i)] for i in idx],
            environment_state=self.truth[idx],
        )


def check_declutter(policy: SigmaPolicy, source: str) -> None:
    """Refuse a policy whose tau pass cannot see the pixels or is not trained.

    Raises:
        SigmaUserError: naming ``source`` and the spec key to set.
    """
    spec = policy.spec
    if spec.train.stage != "sigma" or not spec.model.telepathy:
        raise SigmaUserError(
            f"{source}: declutter trains the tau pass of a Sigma policy (train.stage: sigma,"
            f" model.telepathy: true), not stage {spec.train.stage!r}"
            f" with telepathy {spec.model.telepathy}"
        )
    if not policy.vision.tau_sees_pixels:
        raise SigmaUserError(
            f"{source}: its vision does not let tau into the image encoding; train it with"
            " vision.tau_stem: true (configs/sigma-declutter.yaml)"
        )
    if policy.dims.frame_history != 1:
        raise SigmaUserError(
            f"{source}: declutter renders one uncluttered frame per camera;"
            f" model.dims.frame_history is {policy.dims.frame_history}, not 1"
        )


def declutter_parameters(policy: SigmaPolicy) -> list[str]:
    """Names of the parameters declutter trains: the vision's distilled parameters (its
    ``distilled_params``, the tau stem), which neither training stage touches."""
    names = distilled_parameter_names(policy) & policy.trainable_at_build
    return sorted(n for n in names if n.startswith("vision."))


@torch.no_grad()
def declutter_targets(
    policy: SigmaPolicy, states: ClutteredStates, chunk: int = 128
) -> tuple[Tensor, Tensor | None, Tensor]:
    """What the frozen base sees in the uncluttered renders (tokens, s_hat) and the tau
    the policy planned with, for every state."""
    tokens, scene, taus = [], [], []
    for i in range(0, len(states), chunk):
        idx = torch.arange(i, min(i + chunk, len(states)))
        clean = states.batch(idx)
        clean.images = states.clean[idx].float()
        vis, _, s_hat = policy.encode_vision(clean)
        tokens.append(vis.tokens)
        if s_hat is not None:
            scene.append(s_hat)
        taus.append(policy._encode(states.batch(idx), states.memory[idx])[0].tau)
    return torch.cat(tokens), torch.cat(scene) if scene else None, torch.cat(taus)


def declutter_loss(
    policy: SigmaPolicy,
    batch: SigmaBatch,
    tau: Tensor,
    target_tokens: Tensor,
    target_scene: Tensor | None,
) -> tuple[Tensor, dict[str, float]]:
    """``L_declutter`` (module docstring) on one batch of cluttered observations, with the
    tau they were planned with and the frozen base's view of their uncluttered renders."""
    with torch.no_grad():
        vis_base, vision_state, s_hat = policy.encode_vision(batch)
    vis_mod, s_tau = policy.telepathy_vision(batch, vis_base, vision_state, s_hat, tau)
    loss_tokens = (vis_mod.tokens - target_tokens).pow(2).mean()
    loss = loss_tokens
    parts = {"tokens": loss_tokens.item()}
    if target_scene is not None and s_tau is not None:
        loss_scene = (s_tau - target_scene).pow(2).mean()
        loss = loss + loss_scene
        parts["scene"] = loss_scene.item()
    return loss, parts


def fit_declutter(
    policy: SigmaPolicy,
    states: ClutteredStates,
    steps: int,
    seed: int = 0,
    lr: float = 3e-4,
    batch_size: int = 32,
    log_every: int = 100,
    extra_loss: Callable[[Tensor], Tensor] | None = None,
) -> list[dict[str, Any]]:
    """Train the vision's telepathy parameters on ``L_declutter`` over ``states``, in place.

    Adam at a constant ``lr``, ``batch_size`` states drawn per step from a generator
    seeded with ``seed`` (deterministic). Everything else stays frozen; the policy is
    left in eval mode with nothing trainable. ``extra_loss(idx)``, when given, is added
    to each step's loss after ``L_declutter``'s forward (logged as ``extra``). Returns
    the loss every ``log_every`` steps and at the last one.
    """
    check_declutter(policy, "the policy")
    if steps < 1 or len(states) == 0:
        raise SigmaUserError(f"declutter needs steps >= 1 and states; got {steps}, {len(states)}")
    policy.eval().requires_grad_(False)
    target_tokens, target_scene, taus = declutter_targets(policy, states)
    names = set(declutter_parameters(policy))
    params = [p for n, p in policy.named_parameters() if n in names]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=lr)
    gen = torch.Generator().manual_seed(seed)
    log: list[dict[str, Any]] = []
    try:
        for step in range(steps):
            idx = torch.randint(len(states), (batch_size,), generator=gen)
            scene = None if target_scene is None else target_scene[idx]
            loss, parts = declutter_loss(
                policy, states.batch(idx), taus[idx], target_tokens[idx], scene
            )
            if extra_loss is not None:
                extra = extra_loss(idx)
                loss = loss + extra
                parts["extra"] = extra.item()
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step % log_every == 0 or step == steps - 1:
                log.append({"step": step, **{k: round(v, 6) for k, v in parts.items()}})
    finally:
        policy.requires_grad_(False)
    return log
