"""The loss of a training stage as one module: ``forward(batch, step) -> (loss, terms)``."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from sigma_core.errors import SigmaUserError
from sigma_core.model.policy import SigmaPolicy
from sigma_core.train.losses import (
    LossConfig,
    per_sample_mse,
    sigma_objective,
    state_loss,
    traf,
    traf_columns,
    traf_from_losses,
)
from sigma_core.types import ActionSet, SigmaBatch, SigmaOutput


def scene_truth(batch: SigmaBatch, needed_by: str, switch_off: str) -> torch.Tensor:
    """The batch's normalized ``observation.environment_state``, the privileged target of a
    scene-state loss (training only).

    Raises:
        SigmaUserError: the data was recorded without it, naming what needs it and the
            setting that does without.
    """
    if batch.environment_state is None:
        raise SigmaUserError(
            f"{needed_by} trains on observation.environment_state, which this batch lacks"
            f" (data recorded without it: record with sigma data sim, or set {switch_off})"
        )
    return batch.environment_state


class StageObjective(nn.Module):
    """``forward(run, step) -> (loss, logged terms)`` of a stage, as one module.

    ``run`` is a list of K batches: row i of batch k is window k of run i, K
    consecutive windows of one episode ``data.run_stride`` frames apart (K = 1:
    windows on their own). Every term is averaged over the K windows.

    Stage ``base``: TRAF over the tau = 0 branches plus ``λ_fuse·L_fuse``
    (:meth:`fusion_loss`): by default TRAF takes the MSE of their
    decoded actions; with ``losses.base_loss: native`` each branch contributes its
    own per-sample training loss (``branch.loss``: token cross-entropy, flow
    matching, MSE for regression heads) to TRAF's weighting and hard set. On the
    simulated data native was worse for the token head (300 steps of base-tiny:
    val L_act 0.53 vs 0.22), so it is opt-in.
    With ``model.dims.auxiliary_state_dim`` > 0, stage base adds
    ``λ_state·L_state`` (:func:`state_loss`): the privileged scene state (normalized
    ``observation.environment_state``) predicted from the vision tokens, which only
    training reads.
    Stage ``sigma``: :func:`sigma_objective` with the semantic memory unrolled over
    the run: window 1 starts from ``m_0``, window k+1 reads ``m_prev = m_t`` of
    window k, and gradients flow back through the whole run (truncated
    back-propagation through time, truncated at the run's start); with
    ``model.scene_correction`` each window adds ``λ_state·L_state(s_tau, s)``
    (:meth:`scene_term`). This trains
    the ``m_{t-1}`` half of the memory's gate and makes ``L_time`` live.

    The loss is computed inside ``forward`` so that DDP sees the loss, not the
    policy's outputs: tensors that feed outputs but not the loss (the fused plan's
    weights in stage base) are then correctly found unused.
    """

    def __init__(
        self, policy: SigmaPolicy, stage: str, losses: LossConfig, total_steps: int
    ) -> None:
        super().__init__()
        self.policy, self.stage, self.losses = policy, stage, losses
        self.total_steps = total_steps

    def forward(self, run: list[SigmaBatch], step: int) -> tuple[torch.Tensor, dict[str, float]]:
        if self.stage == "sigma":
            terms = []
            m_prev = self.policy.memory.initial_state(run[0].batch_size, run[0].state.device)
            for batch in run:
                out = self.policy(batch, m_prev)
                terms.append(
                    sigma_objective(
                        out,
                        batch.targets,
                        m_prev,
                        step,
                        self.losses,
                        self.total_steps,
                        batch.target_valid,
                    )
                )
                if "corrected_state" in out.extras:
                    terms[-1] = self.scene_term(terms[-1], out, batch)
                m_prev = out.intent.m_t
        else:
            terms = [self.base_objective(batch) for batch in run]
        if len(terms) == 1:
            return terms[0]
        loss = torch.stack([t[0] for t in terms]).mean()
        row = {k: sum(t[1][k] for t in terms) / len(terms) for k in terms[0][1]}
        return loss, row | {"loss": loss.item()}

    def base_objective(self, batch: SigmaBatch) -> tuple[torch.Tensor, dict[str, float]]:
        """Stage base on one batch: TRAF on the tau = 0 branches plus ``λ_fuse·L_fuse``.

        Padded target steps (``batch.target_valid``) are left out of the MSEs; the
        branches' own losses (``base_loss: native``) see every step.
        """
        native = self.losses.base_loss == "native"
        auxiliary = self.policy.dims.auxiliary_state_dim > 0
        with torch.no_grad() if native and not auxiliary else contextlib.nullcontext():
            out = self.policy(batch, telepathy=False)
        actions = out.actions
        if native:
            actions = actions.map(torch.Tensor.detach)
            terms = traf_from_losses(self.branch_losses(batch), self.losses)
        else:
            terms = traf(actions, batch.targets, self.losses, batch.target_valid)
        l_fuse = self.fusion_loss(actions, batch.targets.chunk, batch.target_valid)
        total = terms.total + self.losses.lambda_fuse * l_fuse
        row = {**traf_columns(terms), "L_fuse": l_fuse.item()}
        if auxiliary:
            dim = self.policy.dims.auxiliary_state_dim
            truth = scene_truth(
                batch, f"model.dims.auxiliary_state_dim={dim}", "auxiliary_state_dim: 0"
            )
            l_state = state_loss(out.extras["auxiliary_state"], truth, self.losses.state_weights)
            total = total + self.losses.lambda_state * l_state
            row["L_state"] = l_state.item()
        return total, {"loss": total.item(), **row}

    def scene_term(
        self, term: tuple[torch.Tensor, dict[str, float]], out: SigmaOutput, batch: SigmaBatch
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Stage sigma with ``model.scene_correction``: ``+ λ_state·L_state(s_tau, s)``, the
        corrected scene estimate against the named cube's and the goal's truth (normalized
        ``observation.environment_state``, which only training reads)."""
        truth = scene_truth(batch, "model.scene_correction", "model.scene_correction: false")
        l_scene = state_loss(out.extras["corrected_state"], truth, self.losses.state_weights)
        loss, row = term
        loss = loss + self.losses.lambda_state * l_scene
        return loss, row | {"loss": loss.item(), "L_scene": l_scene.item()}

    def fusion_loss(
        self, actions: ActionSet, target_chunk: torch.Tensor, valid: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``L_fuse = mean_i MSE(fusion(sg(a_vec), sg(a_chk), sg(a_trj))_i, a*_chk,i)``.

        The branch outputs are detached, so only the fusion weights learn from it:
        TRAF is not in the paper's objective for them, and without this term the
        fused plan that the robot executes would keep its initial equal weights.
        """
        a = actions.map(torch.Tensor.detach)
        fused = self.policy.fusion(a.vector, a.chunk, a.trajectory)
        return per_sample_mse(fused, target_chunk, valid).mean()

    def branch_losses(self, batch: SigmaBatch) -> dict[str, torch.Tensor]:
        """Each tau = 0 branch's own per-sample loss against the targets (B,) per scale."""
        q0, target, p = self.policy.tau0_queries(batch), batch.targets, self.policy
        return {
            "vec": p.vector.loss(q0.queries, q0.c_act, target.vector),
            "chk": p.chunk.loss(q0.queries, q0.c_act, target.chunk),
            "trj": p.trajectory.loss(q0.queries, q0.c_act, target.trajectory),
        }
