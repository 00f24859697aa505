"""Model assembly (spec -> components) and the two-pass telepathy forward.

Forward for one batch (paper §1-3; symbols as in the paper):

1. ``V_base, S_tok = vision(images, state)`` (pass 1, no tau).
2. ``hidden = backbone([text; V_base; S_tok])``.
3. ``Z_sem, m_t, z_intent, tau, high_level_rep = intent(hidden, m_{t-1}, memory)``.
4. ``V_mod, S_tok = vision(images, state, tau)`` (pass 2: tau fed back to vision),
   computed as ``vision.modulate(pass 1, tau)``, which reuses pass 1's encoding
   where tau does not enter (the paper's stack: all but the modulator and block).
   Where tau enters the image encoding (``vision.tau_stem``, not in the paper) and the
   scene state is estimated, the tau pass estimates it again from V_mod
   (:meth:`SigmaPolicy.telepathy_vision`).
   With ``model.scene_correction`` (a camera-only base, not in the paper) the tau pass's
   state tokens read the corrected estimate ``s_tau = s_hat + C([Attn(W_q tau, V_mod);
   tau; s_hat])`` (:class:`sigma_core.layers.SceneCorrection`) instead of ``s_hat``.
5. Telepathy path: ``Q, c_act = query(high_level_rep, tau, S_tok, V_mod)`` and
   ``a_tau = branches(Q, c_act)`` (with ``model.tau_route: vision``, not in the paper,
   ``query(c_text, 0, S_tok, V_mod)``: tau reaches a_tau through the vision only).
   Baseline path: the same with ``tau = 0``, V_base and ``c_text`` (= high_level_rep
   at tau = 0), giving ``c_act_base`` and ``a_0``; no telepathy parameter (see
   :mod:`sigma_core.train.stages`) reaches it. Both paths run as one batch of 2B
   through the query and the branches (heads are per-sample functions), so each
   head's weights are read once per forward.
6. ``a_base`` = the batch's ``base_actions`` (precomputed by ``sigma preprocess
   --base-policy``), else the ``base_policy`` slot's actions, else ``a_0``.
7. ``delta_a = (a_tau - a_0) + g([high_level_rep, tau])`` (residual heads; with
   ``model.tau_route: vision`` ``delta_a = a_tau - a_0``, no residual heads), and
   ``a = a_base + delta_a`` at each scale. With the telepathy path disabled,
   ``delta_a = 0`` and ``a = a_base``.
8. ``plan = controller(fusion(a.vector, a.chunk, a.trajectory))``.

Inference (:meth:`SigmaPolicy.act`, :meth:`SigmaPolicy.step`) adds the adapter
(paper §5): ``a = a_base + s · delta_a`` with the per-sample risk scale
``s = adapter(a_base, delta_a, tau, c_act)``, then the controller. ``step`` keeps
``m_t`` across control steps and serves actions from a queue of planned chunks.

Choice (the paper is vague here): tau reaches the actions both through the
frozen base's conditioning (c_act, V_mod, the ``a_tau - a_0`` term) and through
the residual heads, so the ``tau = 0`` path is exactly the base.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from sigma_core._fileio import atomic_dir
from sigma_core.components import Component
from sigma_core.config import Dims
from sigma_core.errors import SigmaUserError
from sigma_core.kinds import MODEL_SLOTS
from sigma_core.layers import SceneCorrection, scene_head
from sigma_core.model.bundle import BUNDLED, resolve_bundled
from sigma_core.model.checkpoint import (
    META,
    WEIGHTS,
    check_pretrained,
    check_versions,
    pin_providers,
    policy_meta,
    read_meta,
    weights_file,
    write_meta,
)
from sigma_core.model.noise import sampler_noise
from sigma_core.plugins.registry import Registry, get_registry
from sigma_core.pretrained import sharing
from sigma_core.spec import ComponentRef, SigmaSpec, validate_spec
from sigma_core.types import (
    ActionSet,
    AdapterOutput,
    IntentOutput,
    QueryOutput,
    SigmaBatch,
    SigmaOutput,
    VisionOutput,
)


def build_component(
    kind: str, ref: ComponentRef, dims: Dims, registry: Registry | None = None, **context: Any
) -> Component:
    """Instantiate one registered component from a spec entry ``{type, ...params}``."""
    registry = registry or get_registry()
    cls = registry.get(kind, ref.type, ref.provider).load()
    config = cls.config_class.model_validate(ref.params)
    return cls(config, dims, **context)


def slot_seed(seed: int, slot: str) -> int:
    """The initialisation seed of one slot: a stable function of ``train.seed`` and the slot."""
    return (seed * 1_000_003 + zlib.crc32(slot.encode())) % 2**63


def parameter_counts(module: nn.Module) -> tuple[int, int]:
    """(trainable, frozen) parameter counts, shared tensors counted once."""
    seen: set[int] = set()
    trainable = frozen = 0
    for p in module.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        if p.requires_grad:
            trainable += p.numel()
        else:
            frozen += p.numel()
    return trainable, frozen


class SigmaPolicy(nn.Module):
    """The assembled Sigma model: one submodule per spec slot (attribute = slot name)."""

    def __init__(self, spec: SigmaSpec, registry: Registry | None = None) -> None:
        super().__init__()
        registry = registry or get_registry()
        self.spec = spec
        dims = spec.model.dims
        self.slots: dict[str, str] = {**MODEL_SLOTS, "base_policy": "base_policy"}
        # One sharing scope for the whole build: components that ask for the same
        # pretrained model (e.g. pi0.5 as base policy, backbone and vision) get one copy.
        with sharing():
            # The backbone first: the intent workspace reads its width W.
            for slot in ("backbone", *(s for s in self.slots if s != "backbone")):
                kind = self.slots[slot]
                ref = spec.base_policy if slot == "base_policy" else getattr(spec.model, slot)
                context = {"backbone_width": self.backbone.hidden_size} if slot == "intent" else {}
                # Each slot initialises from its own seed (train.seed, slot name), so that
                # swapping one component in the spec leaves every other one bit-identical.
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(slot_seed(spec.train.seed, slot))
                    self.add_module(slot, build_component(kind, ref, dims, registry, **context))
        if dims.auxiliary_state_dim:
            # privileged supervision (stage base only): the scene state from V_base
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(slot_seed(spec.train.seed, "auxiliary_state"))
                self.auxiliary_state = scene_head(dims.d_model, dims.auxiliary_state_dim)
        if spec.model.scene_correction:
            # the telepathy path's correction of s_hat (trained in stage sigma)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(slot_seed(spec.train.seed, "scene_correction"))
                self.scene_correction = SceneCorrection(dims.d_model, dims.auxiliary_state_dim)
        #: The normalisation statistics the policy was trained with (meta.json's ``stats``
        #: layout, the keys of :data:`sigma_core.data.processor.POLICY_STATS`): saved in
        #: sigma.json, so that deployment needs no dataset; None when unknown.
        self.stats: dict[str, Any] | None = None
        #: Parameters trainable when built (frozen-by-construction ones, e.g. a backbone's
        #: base weights or a frozen base policy, are not): the only ones a stage may train.
        self.trainable_at_build = frozenset(
            n for n, p in self.named_parameters() if p.requires_grad
        )

    @property
    def dims(self) -> Dims:
        return self.spec.model.dims

    def named_components(self) -> list[tuple[str, Component]]:
        """(slot, component) in spec order."""
        return [(slot, getattr(self, slot)) for slot in self.slots]

    def pretrained_sources(self) -> dict[str, dict[str, Any]]:
        """``{"slot.module": {source, revision, sha256}}`` of weights loaded from outside.

        These tensors are not in :meth:`state_dict` (see :mod:`sigma_core.pretrained`):
        a checkpoint references them by source and fingerprint instead of copying them.
        """
        return {
            f"{slot}.{name}": record
            for slot, component in self.named_components()
            for name, record in getattr(component, "pretrained_sources", {}).items()
        }

    def save_pretrained(
        self,
        directory: str | Path,
        registry: Registry | None = None,
        trained_on: dict[str, Any] | None = None,
        stats: dict[str, Any] | None = None,
    ) -> Path:
        """Save weights (safetensors), the resolved spec and component versions, atomically.

        The directory is written under a temporary name and renamed into place
        (see :mod:`sigma_core.model.checkpoint` for the layout), so a crash never
        leaves a half-written checkpoint that looks complete. ``trained_on`` (the
        trainer's record of its shards: dataset fingerprint, train episodes) goes
        into ``sigma.json`` so that ``sigma eval`` can refuse windows it trained on.
        Pretrained weights (a backbone's base, pi0.5) are not copied: ``sigma.json``
        records their source and sha256 (:meth:`pretrained_sources`). ``stats`` (the
        training shards' normalisation statistics; default :attr:`stats`) are saved
        too, so that deployment (the closed loop, LeRobot) needs no dataset.
        """
        from safetensors.torch import save_model

        meta = policy_meta(self.spec, registry) | {"pretrained": self.pretrained_sources()}
        if trained_on:
            meta["trained_on"] = trained_on
        stats = stats if stats is not None else self.stats
        if stats:
            from sigma_core.data.processor import policy_stats

            meta["stats"] = policy_stats(stats)
        with atomic_dir(directory) as tmp:
            save_model(self, str(tmp / WEIGHTS))
            write_meta(tmp, meta)
        return Path(directory)

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, registry: Registry | None = None, strict_versions: bool = True
    ) -> SigmaPolicy:
        """Rebuild a policy saved by :meth:`save_pretrained` from its resolved spec and weights.

        Pretrained weights are loaded by the build from the sources the spec names
        and must have the fingerprint recorded at save time; a base bundled in the
        folder (``sigma export``, see :mod:`sigma_core.model.bundle`) is read from
        it, whatever the current directory. Each slot is built
        from the distribution recorded in ``sigma.json`` (whatever the clash rule
        would pick today), and ``strict_versions=False`` does not relax that.

        Raises:
            SigmaUserError: not a checkpoint, a recorded provider that is not
                installed (before any tensor is read), a missing weights file, or (with
                ``strict_versions``) components installed at other versions or
                pretrained weights whose sha256 differs from the saved one.
        """
        from safetensors.torch import load_model

        registry = registry or get_registry()
        meta = read_meta(directory)
        pinned = pin_providers(meta, registry, str(directory))  # before any build or tensor
        # a base bundled in the folder (sigma export) resolves against the folder itself
        pinned = resolve_bundled(pinned, meta.get(BUNDLED, {}), directory)
        if strict_versions:
            check_versions(meta, registry, str(directory))
        spec = validate_spec(pinned, registry, source=f"{directory}/{META}")
        policy = cls(spec, registry)
        if strict_versions:
            check_pretrained(meta, policy.pretrained_sources(), str(directory))
        load_model(policy, str(weights_file(directory)), strict=True)
        policy.stats = meta.get("stats")
        return policy

    def act(self, batch: SigmaBatch, m_prev: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Inference for one observation batch: ``(plan (B, H_c, A), m_t (B, D))``.

        ``plan = controller(fusion(a_base + s · delta_a))`` with the adapter's
        per-sample risk scale ``s`` in [min_scale, max_scale]; a sample whose
        residual, tau or c_act is not finite executes exactly its base actions.
        """
        out = self(batch, m_prev)
        a, _ = self.adapt(out)
        return self.controller(self.fusion(a.vector, a.chunk, a.trajectory)), out.intent.m_t

    def adapt(self, out: SigmaOutput) -> tuple[ActionSet, AdapterOutput]:
        """The adapter on a forward's output: adapted actions and the scale/risk diagnostics."""
        return self.adapter.apply(out.base, out.residual, out.tau, out.c_act)

    def reset(self, n_action_steps: int | None = None) -> None:
        """Start an episode: clear m_t and the action queue.

        Args:
            n_action_steps: actions executed from each plan before replanning
                (1..H_c); default the spec's replanning stride (``data.run_stride``,
                else H_c), so that the memory is updated at inference exactly as
                it was unrolled in training.
        """
        h = self.dims.chunk_horizon
        n = n_action_steps or self.spec.run_stride()
        if not 1 <= n <= h:
            raise ValueError(f"n_action_steps must be in [1, {h}], got {n}")
        self._n_action_steps = n
        self._memory: Tensor | None = None
        self._queue: list[Tensor] = []

    @torch.no_grad()
    def step(self, observation: SigmaBatch) -> Tensor:
        """One control step: the next action (B, A).

        When the queue is empty, plans with :meth:`act` from the current
        observation and the memory ``m_{t-1}`` kept since :meth:`reset`, stores
        ``m_t`` and queues the plan's first ``n_action_steps`` actions.
        """
        if not hasattr(self, "_queue"):
            self.reset()
        if not self._queue:
            plan, self._memory = self.act(observation, self._memory)
            self._queue = list(plan[:, : self._n_action_steps].unbind(1))
        return self._queue.pop(0)

    def vision_state(self, batch: SigmaBatch) -> Tensor:
        """(B, S_v) what the vision's state encoder reads: ``batch.state``, then
        ``batch.environment_state`` when ``dims.environment_state_dim`` > 0 (an oracle)."""
        n = self.dims.environment_state_dim
        if n == 0:
            return batch.state
        env = batch.environment_state
        if env is None or env.shape[-1] != n:
            got = None if env is None else tuple(env.shape)
            raise SigmaUserError(
                f"this policy reads observation.environment_state ({n} values: "
                f"model.dims.environment_state_dim), but the batch has {got}"
            )
        return torch.cat([batch.state, env.to(batch.state.dtype)], dim=-1)

    def encode_vision(self, batch: SigmaBatch) -> tuple[VisionOutput, Tensor, Tensor | None]:
        """Pass 1: ``(V_base, the state S_v it read, s_hat or None)``.

        With ``model.scene_state: estimated`` the cameras are encoded once with a blank
        scene state, the scene state is estimated from the vision tokens,
        ``s_hat = head(mean_n V_base,n)`` (the auxiliary head), and the state tokens are
        re-encoded from ``[state; sg(s_hat)]`` (``vision.restate``). While the base
        trains, each window reads the observed truth instead with probability
        ``train.teacher_forcing`` (plus Gaussian noise of standard deviation
        ``train.teacher_noise``); everywhere else (stage sigma, inference) ``s_hat``:
        the policy never reads the privileged state at inference. Entries of weight 0
        in ``train.losses.state_weights`` (never estimated) are read as 0.
        """
        if self.spec.model.scene_state == "observed":
            state = self.vision_state(batch)
            return self.vision(batch.images, state, None), state, None
        b, n = batch.batch_size, self.dims.environment_state_dim
        vis, s_hat = self.estimate_scene(batch.images, batch.state)
        scene = s_hat.detach()
        forcing = self.spec.train.teacher_forcing
        if self.training and self.spec.train.stage == "base" and forcing > 0:
            truth = self.vision_state(batch)[:, -n:]  # the checked observation
            if self.spec.train.teacher_noise > 0:  # the truth as an imprecise estimate
                truth = truth + self.spec.train.teacher_noise * torch.randn_like(truth)
            pick = torch.rand(b, 1, device=scene.device) < forcing
            scene = torch.where(pick, truth, scene)
        state = self._with_scene(batch.state, scene)
        return self.vision.restate(vis, batch.images, state), state, s_hat

    def estimate_scene(self, images: Tensor, state: Tensor) -> tuple[VisionOutput, Tensor]:
        """``(V_base, s_hat)``: the cameras encoded with a blank scene state (the joints
        ``state`` and zeros) and the auxiliary head's estimate ``s_hat = head(mean_n
        V_base,n)``: the first pass of ``model.scene_state: estimated``."""
        n = self.dims.environment_state_dim
        blank = torch.cat([state, state.new_zeros(state.shape[0], n)], dim=-1)
        vis = self.vision(images, blank, None)
        return vis, self.auxiliary_state(vis.tokens.mean(dim=1))

    def _with_scene(self, state: Tensor, scene: Tensor) -> Tensor:
        """``[state; scene]`` as the vision's state encoder reads it: entries of weight 0
        in ``train.losses.state_weights`` (never estimated) are read as 0."""
        weights = self.spec.train.losses.state_weights
        if weights is not None:
            scene = scene * torch.tensor([w > 0 for w in weights], device=scene.device)
        return torch.cat([state, scene.to(state.dtype)], dim=-1)

    def _encode(
        self, batch: SigmaBatch, m_prev: Tensor
    ) -> tuple[IntentOutput, VisionOutput, Tensor, Tensor | None]:
        """Vision at tau = 0 (V_base), backbone and intent; also the state the vision
        read and the scene estimate (:meth:`encode_vision`)."""
        vis_base, state, s_hat = self.encode_vision(batch)
        ids, mask = self.backbone.tokenize(batch.texts)
        prefix = torch.cat([vis_base.tokens, vis_base.state_tokens], dim=1)
        bb = self.backbone(ids, mask, prefix)
        return self.intent(bb.hidden, bb.mask, m_prev, self.memory), vis_base, state, s_hat

    def _tau0_query(self, intent: IntentOutput, vis_base: VisionOutput) -> QueryOutput:
        """The tau = 0 queries: they read c_text, which is high_level_rep at tau = 0 (the
        language modulator is the identity there), so a_0 never depends on the pathway."""
        zero_tau = torch.zeros_like(intent.tau)
        return self.query(intent.c_text, zero_tau, vis_base.state_tokens, vis_base.tokens)

    def tau0_queries(self, batch: SigmaBatch) -> QueryOutput:
        """The action queries and condition ``c_act`` the branches read at tau = 0.

        Stage ``base`` trains each branch on them with its own loss (token
        cross-entropy, flow matching) instead of decoding actions first.
        """
        m0 = self.memory.initial_state(batch.batch_size, batch.state.device)
        return self._tau0_query(*self._encode(batch, m0)[:2])

    def telepathy_vision(
        self,
        batch: SigmaBatch,
        vis_base: VisionOutput,
        vision_state: Tensor,
        s_hat: Tensor | None,
        tau: Tensor,
    ) -> tuple[VisionOutput, Tensor | None]:
        """Pass 2: ``(V_mod, s_tau)``, the vision the tau path reads and its scene estimate.

        ``V_mod = vision.modulate(V_base, tau)``, which reuses pass 1's encoding where tau
        does not enter. Where tau enters the image encoding (``vision.tau_sees_pixels``,
        e.g. ``vision.tau_stem``) and the scene state is estimated, the tau pass estimates
        it again from its own tokens, ``s_tau = head(mean_n V_mod,n)``, and its state
        tokens read ``[state; sg(s_tau)]``; else ``s_tau = s_hat``. With
        ``model.scene_correction``, ``s_tau <- s_tau + C([Attn(W_q tau, V_mod); tau;
        s_tau])`` and the state tokens read that.
        """
        vis_mod = self.vision.modulate(vis_base, batch.images, vision_state, tau)
        s_tau = s_hat
        if self.vision.tau_sees_pixels and s_hat is not None:
            # the tau pass looked at the scene anew: its own estimate of it
            s_tau = self.auxiliary_state(vis_mod.tokens.mean(dim=1))
            state_tau = self._with_scene(batch.state, s_tau.detach())
            vis_mod = self.vision.restate(vis_mod, batch.images, state_tau)
        if self.spec.model.scene_correction:
            # the tau pass reads the corrected scene estimate (model.scene_correction)
            assert s_tau is not None
            s_tau = self.scene_correction(s_tau.detach(), tau, vis_mod.tokens)
            state_tau = self._with_scene(batch.state, s_tau)
            vis_mod = self.vision.restate(vis_mod, batch.images, state_tau)
        return vis_mod, s_tau

    def _branches(self, queries: Tensor, c_act: Tensor, noise: Tensor) -> ActionSet:
        return ActionSet(
            self.vector(queries, c_act),
            self.chunk(queries, c_act),
            self.trajectory(queries, c_act, noise=noise),
        )

    def forward(
        self, batch: SigmaBatch, m_prev: Tensor | None = None, telepathy: bool | None = None
    ) -> SigmaOutput:
        """Two-pass telepathy forward (see the module docstring for the formulas).

        Args:
            batch: observations; ``batch.base_actions`` is used as a_base when set.
            m_prev: semantic memory m_{t-1} (B, D); zeros when ``None``.
            telepathy: ``False`` disables the pathway (tau = 0, delta_a = 0). With
                ``model.telepathy: false`` in the spec, ``delta_a = g([c_text, 0])``.
                Default: on for a policy trained in stage sigma, off for one trained
                in stage base (whose telepathy heads were never trained), so that
                ``act``/``step`` of a saved base policy run its tau = 0 path.
        """
        if telepathy is None:
            telepathy = self.spec.train.stage == "sigma"
        b = batch.batch_size
        device = batch.state.device
        if m_prev is None:
            m_prev = self.memory.initial_state(b, device)
        intent, vis_base, vision_state, s_hat = self._encode(batch, m_prev)
        pathway = telepathy and self.spec.model.telepathy
        tau = intent.tau if pathway else torch.zeros_like(intent.tau)
        noise = sampler_noise(b, self.dims.horizon, self.dims.action_dim, device)
        extras: dict[str, Tensor] = {}
        if pathway:
            vis_mod, s_tau = self.telepathy_vision(batch, vis_base, vision_state, s_hat, tau)
            if self.spec.model.scene_correction and self.training:
                extras["corrected_state"] = s_tau  # the target only training reads
            # the tau = 0 and tau passes of the query and branches run as one batch of 2B:
            # each head's weights are read once, and the flow sampler loops once, not twice
            vision_only = self.spec.model.tau_route == "vision"
            rep = intent.c_text if vision_only else intent.high_level_rep
            both_q = self.query(
                torch.cat([intent.c_text, rep]),
                torch.cat([torch.zeros_like(tau), torch.zeros_like(tau) if vision_only else tau]),
                torch.cat([vis_base.state_tokens, vis_mod.state_tokens]),
                torch.cat([vis_base.tokens, vis_mod.tokens]),
            )
            both = self._branches(both_q.queries, both_q.c_act, torch.cat([noise, noise]))
            q0 = QueryOutput(both_q.queries[:b], both_q.c_act[:b])
            q = QueryOutput(both_q.queries[b:], both_q.c_act[b:])
            a_0, a_tau = both.map(lambda x: x[:b]), both.map(lambda x: x[b:])
        else:
            q0 = self._tau0_query(intent, vis_base)
            a_0 = self._branches(q0.queries, q0.c_act, noise)
        # precomputed a_base (sigma preprocess --base-policy) spares running the base policy
        a_base = batch.base_actions or self.base_policy(batch) or a_0

        if pathway:
            delta = a_tau - a_0
            if self.spec.model.tau_route == "all":
                delta = delta + self.residual(intent.high_level_rep, tau)
            c_act = q.c_act
        elif telepathy:
            # model.telepathy false, the LoRA-only control: the residual heads read
            # high_level_rep at tau = 0, which is c_text (the modulator is the identity
            # there); no FiLM, no tau-conditioned queries
            delta = self.residual(intent.c_text, tau)
            c_act = q0.c_act
        else:
            delta = a_base.map(torch.zeros_like)
            c_act = q0.c_act
        actions = a_base + delta
        plan = self.controller(self.fusion(actions.vector, actions.chunk, actions.trajectory))
        if self.dims.auxiliary_state_dim and self.training:  # the target only training reads
            if s_hat is None:
                s_hat = self.auxiliary_state(vis_base.tokens.mean(dim=1))
            extras["auxiliary_state"] = s_hat
        return SigmaOutput(
            actions=actions,
            base=a_base,
            residual=delta,
            plan=plan,
            tau=tau,
            c_act=c_act,
            c_act_base=q0.c_act,
            intent=intent,
            extras=extras,
        )


def build_policy(spec: SigmaSpec, registry: Registry | None = None) -> SigmaPolicy:
    """Assemble a :class:`SigmaPolicy` from a validated spec."""
    return SigmaPolicy(spec, registry)
