"""Sigma's training objectives (paper §4): TRAF action losses and TSAC alignment losses.

TRAF (residual learning on the base actions), per sample i and scale s:
``mse_s,i = mean((a_s,i − a*_s,i)²)``; ``L_act = α_a·mean_i mse_vec + α_b·mean_i mse_chk
+ α_c·mean_i mse_trj``; difficulty ``h_i = mse_vec,i + mse_chk,i + mse_trj,i``; the
hard set H is the ``ceil(ρ·B)`` samples with the largest h_i;
``L_hard = mean_{i∈H} (α_a mse_vec,i + α_b mse_chk,i + α_c mse_trj,i)``;
``L_act,total = L_act + λ_hard·L_hard``.

TSAC (semantic alignment and telepathy regularisation):
``L_sem = L_time(z_pool, m_prev) + β_mi·InfoNCE(z_pool, text+vision)`` with
``L_time = mean_i (1 − cos(z_pool,i, m_prev,i))`` over samples whose m_prev is
non-zero (none on an episode's first step), and InfoNCE against the keys
``k_i = c_text,i + c_env,i`` with in-batch negatives at temperature T:
``−mean_i log softmax_j(ẑ_i·k̂_j / T)_i`` (hat: L2-normalized);
``L_intent = −mean_i cos(z_intent,i, m_t,i)``;
``L_τ = mean_i [c_2‖τ_i‖² + λ_collapse·max(0, τ0 − ‖τ_i‖)² + η·(1 − cos(τ_i, c_act,i))]``
with c_2 = 0.01 (``tau_l2_reduction: mean`` uses ``mean_d τ_d²`` for ``‖τ‖²``). The
weights ``w_sem(t)``, ``w_intent(t)``, ``w_τ(t)`` ramp linearly from ``start`` to
``target`` (:class:`Ramp`; by default Table 1's 0.1→1.0, 0.1→0.8, 0→0.03 over
the first 27.5% of the run).

Log columns (:data:`LOG_COLUMNS`), as in Table 1: ``L_act`` is ``L_act,total``
(so ``loss − L_act = Σ w·L``, as in the paper's table), ``L_act_hard`` is
``L_hard``, ``hard_ratio`` is the realized hard-set fraction ``|H| / B`` (ρ up
to rounding); beyond the paper: ``L_act_mean`` (``L_act`` before the hard term),
``L_time``, ``hard_excess`` (``mean_H h / mean h``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# defined with the spec (train.losses), re-exported here
from sigma_core.spec import LossConfig as LossConfig
from sigma_core.spec import Ramp as Ramp
from sigma_core.types import ActionSet, SigmaOutput


def per_sample_mse(
    pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """(B, ...) -> (B,) mean squared error per sample.

    ``valid`` (B, L') bool, for (B, L, A) actions: only steps ``t < L`` with
    ``valid[:, t]`` count (the mean is over the valid steps and A; padding past an
    episode's end is left out). A sample with no valid step contributes 0.
    """
    err = (pred - target).pow(2)
    if valid is None or err.ndim != 3:
        return err.flatten(1).mean(1)
    w = valid[:, : err.shape[1]].to(err.dtype).unsqueeze(-1)  # (B, L, 1)
    return (err * w).sum((1, 2)) / (w.sum((1, 2)) * err.shape[2]).clamp_min(1)


def state_loss(
    estimate: torch.Tensor, target: torch.Tensor, weights: list[float] | None = None
) -> torch.Tensor:
    """``L_state = sum_i w_i MSE_i / sum_i w_i`` over the scene state's entries ``i``, with
    ``MSE_i = mean_b (s_hat_b,i - s_b,i)^2``; all ``w_i = 1`` (``weights`` None) is the plain
    mean squared error."""
    mse = (estimate - target).pow(2).mean(0)
    if weights is None:
        return mse.mean()
    w = torch.as_tensor(weights, dtype=mse.dtype, device=mse.device)
    return (w * mse).sum() / w.sum()


@dataclass
class TrafTerms:
    """TRAF outputs: the losses, per-sample difficulty and the hard set."""

    l_act: torch.Tensor
    l_hard: torch.Tensor
    total: torch.Tensor
    difficulty: torch.Tensor  # h (B,)
    hard: torch.Tensor  # bool (B,)
    mse: dict[str, torch.Tensor]  # per scale, (B,)


def hard_set(difficulty: torch.Tensor, ratio: float) -> torch.Tensor:
    """Boolean mask of the ``ceil(ratio·B)`` largest difficulties (lower index wins ties)."""
    b = difficulty.shape[0]
    k = min(b, max(1, math.ceil(ratio * b - 1e-9)))
    # stable descending sort: among equal h the earlier sample is taken first
    order = torch.sort(difficulty.detach(), descending=True, stable=True).indices
    mask = torch.zeros(b, dtype=torch.bool, device=difficulty.device)
    mask[order[:k]] = True
    return mask


def traf(
    pred: ActionSet, target: ActionSet, cfg: LossConfig, valid: torch.Tensor | None = None
) -> TrafTerms:
    """TRAF on residual-corrected actions ``pred = a_base + Δa`` (module docstring).

    ``valid`` (B, T) bool marks the target steps that are real; padded steps
    (LeRobot's ``action_is_pad``) are left out of the chunk and trajectory MSEs.
    """
    return traf_from_losses(
        {
            "vec": per_sample_mse(pred.vector, target.vector),
            "chk": per_sample_mse(pred.chunk, target.chunk, valid),
            "trj": per_sample_mse(pred.trajectory, target.trajectory, valid),
        },
        cfg,
    )


def traf_from_losses(per_sample: dict[str, torch.Tensor], cfg: LossConfig) -> TrafTerms:
    """TRAF's weighting, difficulty ``h_i`` and hard set over per-sample losses per scale.

    ``per_sample`` maps ``vec``, ``chk``, ``trj`` to (B,) losses: the MSEs for
    :func:`traf`, or each branch's own training loss (token cross-entropy,
    flow matching) for stage ``base`` with ``base_loss: native``.
    """
    vec, chk, trj = per_sample["vec"], per_sample["chk"], per_sample["trj"]
    weighted = cfg.alpha_vec * vec + cfg.alpha_chk * chk + cfg.alpha_trj * trj
    difficulty = vec + chk + trj
    hard = hard_set(difficulty, cfg.hard_ratio)
    l_act = weighted.mean()
    l_hard = weighted[hard].mean()
    return TrafTerms(l_act, l_hard, l_act + cfg.lambda_hard * l_hard, difficulty, hard, per_sample)


def l_time(z_pool: torch.Tensor, m_prev: torch.Tensor) -> torch.Tensor:
    """``mean(1 − cos(z_pool, m_prev))`` over samples with a non-zero memory (else 0)."""
    has_memory = m_prev.norm(dim=-1) > 0
    if not has_memory.any():
        return z_pool.sum() * 0.0
    cos = F.cosine_similarity(z_pool[has_memory], m_prev[has_memory], dim=-1)
    return (1 - cos).mean()


def info_nce(z: torch.Tensor, keys: torch.Tensor, temperature: float) -> torch.Tensor:
    """InfoNCE with in-batch negatives: ``CE(ẑ k̂ᵀ / T, arange(B))``."""
    logits = F.normalize(z, dim=-1) @ F.normalize(keys, dim=-1).T / temperature
    return F.cross_entropy(logits, torch.arange(z.shape[0], device=z.device))


def l_intent(z_intent: torch.Tensor, m_t: torch.Tensor) -> torch.Tensor:
    """``−mean cos(z_intent, m_t)``."""
    return -F.cosine_similarity(z_intent, m_t, dim=-1).mean()


def l_tau(tau: torch.Tensor, c_act: torch.Tensor, cfg: LossConfig) -> torch.Tensor:
    """``mean[c_2‖τ‖² + λ_collapse·max(0, τ0 − ‖τ‖)² + η(1 − cos(τ, c_act))]``.

    With ``tau_l2_reduction: mean`` the first term is ``c_2·mean_d τ_d²``.
    """
    norm = tau.norm(dim=-1)
    sq = norm.pow(2) if cfg.tau_l2_reduction == "sum" else tau.pow(2).mean(-1)
    collapse = (cfg.tau0 - norm).clamp_min(0).pow(2)
    align = 1 - F.cosine_similarity(tau, c_act, dim=-1)
    return (cfg.tau_l2 * sq + cfg.lambda_collapse * collapse + cfg.eta * align).mean()


#: The per-step log columns: Table 1's (first eleven, same meaning), then Sigma's own.
TABLE1_COLUMNS = (
    "loss",
    "L_act",
    "L_sem",
    "L_int",
    "L_tau",
    "L_act_hard",
    "w_sem",
    "w_int",
    "w_tau",
    "hard_ratio",
    "tau_rms",
)
LOG_COLUMNS = (*TABLE1_COLUMNS, "L_act_mean", "L_time", "hard_excess")


def traf_columns(act: TrafTerms) -> dict[str, float]:
    """TRAF's log columns: ``L_act`` (= L_act,total), ``L_act_mean``, ``L_act_hard``,
    ``hard_ratio`` (``|H| / B``) and ``hard_excess`` (``mean_H h / mean h``)."""
    h = act.difficulty.detach()
    return {
        "L_act": act.total.item(),
        "L_act_mean": act.l_act.item(),
        "L_act_hard": act.l_hard.item(),
        "hard_ratio": act.hard.float().mean().item(),
        "hard_excess": (h[act.hard].mean() / h.mean().clamp_min(1e-12)).item(),
    }


def sigma_objective(
    out: SigmaOutput,
    target: ActionSet,
    m_prev: torch.Tensor,
    step: int,
    cfg: LossConfig,
    total_steps: int,
    valid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The full stage-``sigma`` loss of one window and its log row (:data:`LOG_COLUMNS`).

    ``loss = L_act,total + w_sem(t)·L_sem + w_int(t)·L_int + w_τ(t)·L_τ`` with the
    ramps evaluated at step ``t`` of ``total_steps``; ``tau_rms = sqrt(mean τ²)``;
    ``valid`` (B, T) leaves padded target steps out of TRAF.
    """
    act = traf(out.actions, target, cfg, valid)
    it = out.intent
    time = l_time(it.z_pool, m_prev)
    sem = time + cfg.beta_mi * info_nce(it.z_pool, it.c_text + it.c_env, cfg.temperature)
    intent = l_intent(it.z_intent, it.m_t)
    tau = l_tau(out.tau, out.c_act, cfg)
    w_sem = cfg.w_sem(step, total_steps)
    w_int = cfg.w_intent(step, total_steps)
    w_tau = cfg.w_tau(step, total_steps)
    loss = act.total + w_sem * sem + w_int * intent + w_tau * tau
    row = {
        "loss": loss.item(),
        "L_sem": sem.item(),
        "L_int": intent.item(),
        "L_tau": tau.item(),
        "w_sem": w_sem,
        "w_int": w_int,
        "w_tau": w_tau,
        "tau_rms": out.tau.detach().pow(2).mean().sqrt().item(),
        "L_time": time.item(),
        **traf_columns(act),
    }
    return loss, {k: row[k] for k in LOG_COLUMNS}
