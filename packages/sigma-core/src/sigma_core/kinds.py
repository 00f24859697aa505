"""The component kinds (spec slots) Sigma knows, with what each one does.

Kinds are part of the plugin contract and only ever grow (additive evolution).
This module imports nothing heavy: the CLI reads it without torch.
"""

from __future__ import annotations

from types import MappingProxyType

#: kind -> one-line description (paper section in brackets).
KINDS: MappingProxyType[str, str] = MappingProxyType(
    {
        "vision": "vision workspace: cameras + state -> V_base / V_mod and state tokens [§1]",
        "backbone": "language backbone: token ids + prefix embeddings -> hidden sequence [§2]",
        "memory": "semantic memory: (z_pool, m_{t-1}) -> m_t [§2]",
        "intent": "intent workspace: hidden -> Z_sem, m_t, z_intent, tau, high_level_rep [§2]",
        "action.query": "condition projector c_act = P(high_level_rep, tau) + query generator [§3]",
        "action.vector": "vector branch: queries -> one-step action [§3]",
        "action.chunk": "chunk branch: queries -> H_c-step action chunk [§3]",
        "action.trajectory": "trajectory branch: queries -> T-step trajectory [§3]",
        "residual": "residual heads g([high_level_rep, tau]) -> delta actions per branch [§3]",
        "fusion": "fusion phi: vector, chunk, trajectory -> executable plan [§3]",
        "controller": "low-level controller: plan -> motor commands (limits, smoothing) [§3]",
        "adapter": "inference adapter: risk-scaled residual a = a_base + scale * delta_a [§5]",
        "base_policy": "source of the base actions a_base (tau=0 path, checkpoint, shards) [§3-4]",
        "data_source": "producer of LeRobot datasets (e.g. SO-101 simulation) [data]",
    }
)

#: spec slot under ``model:`` -> kind. ``base_policy`` is a top-level slot.
MODEL_SLOTS: MappingProxyType[str, str] = MappingProxyType(
    {
        "vision": "vision",
        "backbone": "backbone",
        "memory": "memory",
        "intent": "intent",
        "query": "action.query",
        "vector": "action.vector",
        "chunk": "action.chunk",
        "trajectory": "action.trajectory",
        "residual": "residual",
        "fusion": "fusion",
        "controller": "controller",
        "adapter": "adapter",
    }
)
