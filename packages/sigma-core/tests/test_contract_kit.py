"""The contract kit catches each kind's broken promise, and passes the sound versions.

Every class below is a deliberate breakage of one promise (or a sound control);
each test runs the kit's check on it directly, as the kit's pytest plugin would.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from sigma_core.components import (
    Fusion,
    IntentWorkspace,
    ResidualHead,
    SemanticMemory,
    VisionWorkspace,
)
from sigma_core.config import StrictModel
from sigma_core.plugins.registry import ComponentInfo
from sigma_core.testing import ComponentContract
from sigma_core.types import ActionSet, IntentOutput, VisionOutput


class Cfg(StrictModel):
    zero_init: bool = False


def info(cls: type) -> ComponentInfo:
    return ComponentInfo(cls.kind, cls.name, Cfg, f"{__name__}:{cls.__name__}", "test")


# -- memories --------------------------------------------------------------------
class Gated(SemanticMemory):
    """The paper's gated memory: sound."""

    name = "t-gated"
    config_class = Cfg

    def __init__(self, config: Cfg, dims) -> None:
        super().__init__(config, dims)
        d = dims.d_model
        self.w_u = nn.Linear(d, d)
        self.w_lambda = nn.Linear(2 * d, d)

    def gate(self, z_pool, m_prev):
        u = nn.functional.gelu(self.w_u(z_pool))
        lam = torch.sigmoid(self.w_lambda(torch.cat([m_prev, z_pool], dim=-1)))
        return lam, u

    def forward(self, z_pool, m_prev):
        lam, u = self.gate(z_pool, m_prev)
        return lam * m_prev + (1 - lam) * u


class IgnoresPrev(Gated):
    """Reads m_prev only through a zero: its recurrent weights get an all-zero gradient."""

    name = "t-ignores-prev"

    def forward(self, z_pool, m_prev):
        lam, u = self.gate(z_pool, m_prev * 0)
        return (1 - lam) * u


class FeedForward(Gated):
    """No recurrence at all, yet it does not declare ``recurrent = False``."""

    name = "t-feed-forward"

    def forward(self, z_pool, m_prev):
        lam, u = self.gate(z_pool, z_pool)
        return lam * u


class DetachesPrev(Gated):
    """No backpropagation through time."""

    name = "t-detaches"

    def forward(self, z_pool, m_prev):
        return super().forward(z_pool, m_prev.detach())


class Unstable(Gated):
    """``m_t = 1.1 m_{t-1} + u``: grows without bound."""

    name = "t-unstable"

    def forward(self, z_pool, m_prev):
        lam, u = self.gate(z_pool, m_prev)
        return 1.1 * m_prev + lam * u


class NanFromZero(Gated):
    """Normalises m_prev: 0 / 0 at the zero initial state."""

    name = "t-nan-zero"

    def forward(self, z_pool, m_prev):
        return super().forward(z_pool, m_prev / m_prev.norm(dim=-1, keepdim=True))


class NotRecurrentButDependsOnPrev(Gated):
    """Declares no recurrence but reads m_prev."""

    name = "t-liar"
    recurrent = False


class Memoryless(SemanticMemory):
    """``m_t = z_pool``, declared: sound (and parameter-free)."""

    name = "t-memoryless"
    config_class = Cfg
    recurrent = False

    def forward(self, z_pool, m_prev):
        return z_pool


class Ema(SemanticMemory):
    """A parameter-free recurrent memory: sound."""

    name = "t-ema"
    config_class = Cfg

    def forward(self, z_pool, m_prev):
        return 0.9 * m_prev + 0.1 * z_pool


@pytest.mark.parametrize("cls", [Gated, Memoryless, Ema])
def test_sound_memories_pass(cls):
    kit = ComponentContract()
    kit.test_memory_depends_on_m_prev_through_time(info(cls))
    kit.test_memory_is_finite_from_zero_and_bounded(info(cls))
    kit.test_gradients_reach_trainable_parameters_only(info(cls))
    kit.test_forward_shapes_and_dtypes(info(cls))


@pytest.mark.parametrize(
    ("cls", "message"),
    [
        (IgnoresPrev, r"t-ignores-prev at B=2, D=32: m_t does not depend on m_prev"),
        (FeedForward, r"t-feed-forward at B=2, D=32: m_t does not depend on m_prev"),
        (DetachesPrev, r"t-detaches at B=2, D=32: m_t does not depend on m_prev .*detached"),
        (NotRecurrentButDependsOnPrev, r"declares recurrent = False but m_t depends on m_prev"),
    ],
)
def test_memory_dependence_check_catches(cls, message):
    with pytest.raises(AssertionError, match=message):
        ComponentContract().test_memory_depends_on_m_prev_through_time(info(cls))


@pytest.mark.parametrize(
    ("cls", "message"),
    [
        (Unstable, r"t-unstable at B=2, D=32: \|m_t\| reached .* after \d+ steps .*unstable"),
        (NanFromZero, r"t-nan-zero at B=2, D=32: non-finite m_1 from the zero state"),
    ],
)
def test_memory_stability_check_catches(cls, message):
    with pytest.raises(AssertionError, match=message):
        ComponentContract().test_memory_is_finite_from_zero_and_bounded(info(cls))


def test_the_unstable_memory_passes_the_dependence_check():
    """Each check catches its own breakage: the unstable one does depend on m_prev."""
    ComponentContract().test_memory_depends_on_m_prev_through_time(info(Unstable))


# -- residual heads ----------------------------------------------------------------
class Residual(ResidualHead):
    """``delta_a = g([high_level_rep; tau])``: sound (zero_init: starts at delta_a = 0)."""

    name = "t-residual"
    config_class = Cfg

    def __init__(self, config: Cfg, dims) -> None:
        super().__init__(config, dims)
        d, a = dims.d_model, dims.action_dim
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(2 * d, d), nn.GELU(), nn.Linear(d, n * a))
            for n in (1, dims.chunk_horizon, dims.horizon)
        )
        if config.zero_init:
            for h in self.heads:
                nn.init.zeros_(h[-1].weight)
                nn.init.zeros_(h[-1].bias)

    def inputs_of(self, high_level_rep, tau):
        return torch.cat([high_level_rep, tau], dim=-1)

    def forward(self, high_level_rep, tau):
        x = self.inputs_of(high_level_rep, tau)
        a = self.dims.action_dim
        v, c, t = (h(x) for h in self.heads)
        return ActionSet(
            vector=v, chunk=c.unflatten(-1, (-1, a)), trajectory=t.unflatten(-1, (-1, a))
        )


class ZeroInitResidual(Residual):
    name = "t-zero-init"

    @classmethod
    def contract_config(cls, workdir=None, dims=None):
        return Cfg(zero_init=True)


class IgnoresTau(Residual):
    name = "t-ignores-tau"

    def inputs_of(self, high_level_rep, tau):
        return torch.cat([high_level_rep, tau * 0], dim=-1)


class IgnoresRep(Residual):
    name = "t-ignores-rep"

    def inputs_of(self, high_level_rep, tau):
        return torch.cat([high_level_rep.detach() * 0, tau], dim=-1)


class ExpTau(Residual):
    name = "t-exp-tau"

    def inputs_of(self, high_level_rep, tau):
        return torch.cat([high_level_rep, torch.exp(tau)], dim=-1)


class TupleResidual(Residual):
    name = "t-tuple"

    def forward(self, high_level_rep, tau):
        out = super().forward(high_level_rep, tau)
        return out.vector, out.chunk, out.trajectory


class Width32(Residual):
    """Hard-wired to d_model = 32."""

    name = "t-width-32"

    def __init__(self, config: Cfg, dims) -> None:
        super().__init__(config, dims.model_copy(update={"d_model": 32}))
        self.dims = dims


@pytest.mark.parametrize("cls", [Residual, ZeroInitResidual])
def test_sound_residuals_pass(cls):
    kit = ComponentContract()
    kit.test_residual_depends_on_tau_and_high_level_rep(info(cls))
    kit.test_residual_is_finite_for_large_tau(info(cls))
    kit.test_gradients_reach_trainable_parameters_only(info(cls))
    kit.test_forward_shapes_and_dtypes(info(cls))


@pytest.mark.parametrize(
    ("cls", "message"),
    [
        (IgnoresTau, r"t-ignores-tau at B=2, D=32: delta_a.vector does not depend on tau"),
        (IgnoresRep, r"delta_a.vector does not depend on high_level_rep"),
        (TupleResidual, r"forward must return sigma_core.ActionSet\(.*\), got tuple"),
    ],
)
def test_residual_dependence_check_catches(cls, message):
    with pytest.raises(AssertionError, match=message):
        ComponentContract().test_residual_depends_on_tau_and_high_level_rep(info(cls))


def test_a_tuple_from_a_residual_is_named_by_the_shape_check():
    with pytest.raises(AssertionError, match=r"residual:t-tuple forward returned a tuple; "):
        ComponentContract().test_forward_shapes_and_dtypes(info(TupleResidual))


def test_residual_large_tau_check_catches_overflow():
    kit = ComponentContract()
    kit.test_residual_depends_on_tau_and_high_level_rep(info(ExpTau))  # fine at tau ~ 1
    with pytest.raises(AssertionError, match=r"non-finite delta_a.vector for \|tau\| ~ 10000"):
        kit.test_residual_is_finite_for_large_tau(info(ExpTau))


# -- intent workspaces -------------------------------------------------------------
class IntentCfg(StrictModel):
    num_factors: int = 2


class Intent(IntentWorkspace):
    """z_pool = masked mean of the hidden states; tau = P([m_t; z_pool]): sound."""

    name = "t-intent"
    config_class = IntentCfg
    shape_symbols = {"K": "num_factors"}

    def __init__(self, config: IntentCfg, dims, backbone_width=None) -> None:
        super().__init__(config, dims, backbone_width)
        d = dims.d_model
        self.read = nn.Linear(self.backbone_width, d)
        self.tau_head = nn.Linear(2 * d, d)

    def tau_of(self, m_t, z_pool):
        return self.tau_head(torch.cat([m_t, z_pool], dim=-1))

    def forward(self, hidden, mask, m_prev, memory):
        w = mask[..., None].float()
        z_pool = (self.read(hidden) * w).sum(1) / w.sum(1).clamp(min=1)
        m_t = self.step(memory, z_pool, m_prev)
        tau = self.tau_of(m_t, z_pool)
        k = self.config.num_factors
        return IntentOutput(
            z_sem=z_pool[:, None].expand(-1, k, -1),
            z_pool=z_pool,
            m_t=m_t,
            c_env=z_pool,
            c_beh=z_pool,
            c_text=z_pool,
            z_intent=m_t,
            tau=tau,
            high_level_rep=z_pool + tau,
        )

    def step(self, memory, z_pool, m_prev):
        return memory(z_pool, m_prev)


class SkipsMemory(Intent):
    name = "t-skips-memory"

    def step(self, memory, z_pool, m_prev):
        return 0.5 * (z_pool + m_prev)


class TauIgnoresMemory(Intent):
    name = "t-tau-ignores-memory"

    def tau_of(self, m_t, z_pool):
        return self.tau_head(torch.cat([z_pool, z_pool], dim=-1))


class TauIgnoresText(Intent):
    name = "t-tau-ignores-text"

    def tau_of(self, m_t, z_pool):
        return self.tau_head(torch.cat([m_t, m_t], dim=-1))


def intent_info(cls: type) -> ComponentInfo:
    return ComponentInfo("intent", cls.name, IntentCfg, f"{__name__}:{cls.__name__}", "test")


def test_a_sound_intent_passes():
    kit = ComponentContract()
    kit.test_intent_tau_depends_on_memory_and_text(intent_info(Intent))
    kit.test_forward_shapes_and_dtypes(intent_info(Intent))


@pytest.mark.parametrize(
    ("cls", "message"),
    [
        (SkipsMemory, r"t-skips-memory at B=2, D=32: calls the memory 0 times"),
        (TauIgnoresMemory, r"tau does not depend on the memory state m_t"),
        (TauIgnoresText, r"tau does not depend on the hidden sequence \(text\)"),
    ],
)
def test_intent_check_catches(cls, message):
    with pytest.raises(AssertionError, match=message):
        ComponentContract().test_intent_tau_depends_on_memory_and_text(intent_info(cls))


# -- vision workspaces --------------------------------------------------------------
class VisionCfg(StrictModel):
    num_queries: int = 2
    num_state_tokens: int = 1
    film: bool = True


class Vision(VisionWorkspace):
    """V_base = a linear read of the pixels; V_mod = V_base + film(tau) when FiLM is on."""

    name = "t-vision"
    config_class = VisionCfg
    telepathy_params = ("film.",)

    def __init__(self, config: VisionCfg, dims) -> None:
        super().__init__(config, dims)
        d, n_v, n_s = dims.d_model, config.num_queries, config.num_state_tokens
        pixels = len(dims.cameras) * dims.frame_history * 3 * dims.image_size**2
        self.read = nn.Linear(pixels, n_v * d)
        self.state_read = nn.Linear(dims.state_dim, n_s * d)
        self.film = nn.Linear(d, d)
        self.film.requires_grad_(config.film)

    def forward(self, images, state, tau=None):
        b, d = images.shape[0], self.dims.d_model
        tokens = self.read(images.flatten(1)).view(b, -1, d)
        if tau is not None and self.config.film:
            tokens = tokens + self.apply_tau(tau)[:, None]
        return VisionOutput(tokens, self.state_read(state).view(b, -1, d))

    def apply_tau(self, tau):
        return self.film(tau)


class NoFilmVision(Vision):
    name = "t-no-film"

    @classmethod
    def contract_config(cls, workdir=None, dims=None):
        return VisionCfg(film=False)


class FilmIgnoresTau(Vision):
    """Trains its FiLM weights, yet tau never reaches the tokens."""

    name = "t-film-ignores-tau"

    def apply_tau(self, tau):
        return self.film(torch.zeros_like(tau))


def vision_info(cls: type) -> ComponentInfo:
    return ComponentInfo("vision", cls.name, VisionCfg, f"{__name__}:{cls.__name__}", "test")


@pytest.mark.parametrize("cls", [Vision, NoFilmVision])
def test_sound_visions_pass(cls):
    kit = ComponentContract()
    kit.test_tau_modulates_the_vision_tokens(vision_info(cls))
    kit.test_modulate_equals_forward_with_tau(vision_info(cls))


def test_vision_check_catches_a_tau_path_that_does_not_modulate():
    with pytest.raises(AssertionError, match=r"modulate\(tau\) does not change the vision"):
        ComponentContract().test_tau_modulates_the_vision_tokens(vision_info(FilmIgnoresTau))


# -- every kind: batch sizes, widths, zero gradients ----------------------------------
class Batch2(Fusion):
    """Hard-wired to a batch of 2."""

    name = "t-batch-2"
    config_class = Cfg

    def forward(self, vector, chunk, trajectory):
        return chunk.reshape(2, -1, self.dims.action_dim)


class ZeroGrad(Fusion):
    """A weight that can never learn: its gradient is exactly zero."""

    name = "t-zero-grad"
    config_class = Cfg

    def __init__(self, config: Cfg, dims) -> None:
        super().__init__(config, dims)
        self.w = nn.Parameter(torch.ones(1))
        self.dead = nn.Parameter(torch.ones(1))

    def forward(self, vector, chunk, trajectory):
        return chunk * self.w + 0 * self.dead


def test_hard_wired_batch_size_is_caught():
    with pytest.raises(AssertionError, match=r"(?s)t-batch-2 output return: shape \(2, .*'B': 3"):
        ComponentContract().test_forward_shapes_and_dtypes(info(Batch2))


def test_hard_wired_width_is_caught():
    with pytest.raises(AssertionError, match=r"t-width-32: forward fails at .*'D': 48"):
        ComponentContract().test_forward_shapes_and_dtypes(info(Width32))


def test_exactly_zero_gradients_are_caught():
    with pytest.raises(AssertionError, match=r"exactly zero on every batch .*\['dead'\]"):
        ComponentContract().test_gradients_reach_trainable_parameters_only(info(ZeroGrad))


def test_kind_checks_without_a_component_of_their_kind_are_not_collected(tmp_path):
    """A class that checks one residual head shows no skipped branch/vision/memory tests."""
    (tmp_path / "test_one.py").write_text(
        textwrap.dedent(
            """
            from sigma_core.testing import ComponentContract

            class TestOne(ComponentContract):
                components = [("residual", "mlp")]
            """
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    collected = [line for line in result.stdout.splitlines() if "::" in line]
    assert any("test_residual_depends_on_tau_and_high_level_rep" in c for c in collected)
    dropped = ("branch", "modulate", "memory", "intent")
    assert not [c for c in collected if any(word in c for word in dropped)]
    assert "empty parameter set" not in result.stdout
