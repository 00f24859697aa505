"""The contract-test kit (a pytest plugin, auto-loaded via the ``pytest11`` entry point).

Every registered thing, ours and third parties', passes the whole contract of
its kind; nothing opts out. To run it over your components, subclass the
contract classes in a test module::

    from sigma_core.testing import ComponentContract, DataSourceContract

    class TestMyChunk(ComponentContract):
        components = [("action.chunk", "my-chunk")]   # or "all": every torch component

    class TestMySim(DataSourceContract):
        data_sources = ["my-sim"]                      # or "all"

:class:`ComponentContract` checks each ``nn.Module`` component: it builds from
its contract config; forward outputs have the declared shapes, float32 dtype
and finite values on fake inputs at two batch sizes and two widths (``d_model``,
so a component hard-wired to one of them fails) and both draws of the free
symbols; gradients reach every trainable parameter and no frozen one, and each
trainable parameter gets a nonzero gradient on some batch; a safetensors
save/load round trip into a differently seeded instance reproduces the outputs;
building + running twice under one seed is bit-identical. Each kind's own
promise is checked too (:class:`MemoryChecks`, :class:`ResidualChecks`,
:class:`IntentChecks`, :class:`BranchChecks`, :class:`VisionChecks`); a check of a kind the class
selects no component of is not collected at all.

"Depends on x" means a nonzero gradient of the output with respect to x (under
a random projection of the output), measured with every parameter perturbed by
``perturb_scale`` x N(0, 1): a generic point, so a zero-initialised output layer
(a residual that starts from the base policy) passes while a component that
cannot depend on x fails.

:class:`DataSourceContract` checks each ``data_source``: it builds from its
contract config; what it writes is a dataset LeRobot reads back with the
episodes asked for; the same seed writes the same episodes and another seed
other ones; a run continued to more episodes equals one made in one go.

A component whose default config cannot build offline overrides
``contract_config(workdir, dims)``: the kit passes a per-session scratch
directory and the dims it builds with (an override may take either or none).

This module imports no torch at import time (pytest loads it in every session).
"""

from __future__ import annotations

import inspect
import os
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel

from sigma_core.config import Dims
from sigma_core.plugins.registry import ComponentInfo, Registry, get_registry

#: Small dimensions so that the whole contract suite runs in seconds on a CPU.
CONTRACT_DIMS = Dims(d_model=32, image_size=32, chunk_horizon=4, horizon=8)
DATA_SOURCE = "data_source"
BRANCH_KINDS = ("action.vector", "action.chunk", "action.trajectory")


def contract_config(cls: type[Any], workdir: Path, dims: Dims = CONTRACT_DIMS) -> BaseModel:
    """``cls.contract_config`` called with the arguments it accepts (``workdir``, ``dims``)."""
    accepted = inspect.signature(cls.contract_config).parameters
    offered = {"workdir": Path(workdir), "dims": dims}
    return cls.contract_config(**{k: v for k, v in offered.items() if k in accepted})


def build(info: ComponentInfo, workdir: Path, seed: int = 0, dims: Dims = CONTRACT_DIMS) -> Any:
    """Build ``info``'s component from its contract config under ``seed``."""
    import torch

    cls = info.load()
    torch.manual_seed(seed)
    return cls(contract_config(cls, workdir, dims), dims)


def example_inputs(component: Any, seed: int, batch_size: int = 2, draw: int = 0) -> dict[str, Any]:
    """The kind's fake forward inputs, drawn under ``seed`` (free symbol sizes: ``draw``)."""
    import torch

    torch.manual_seed(seed)
    return component.example_inputs(batch_size, draw=draw)


def run(component: Any, inputs: dict[str, Any], seed: int) -> Any:
    """Forward ``inputs`` under ``seed`` (stochastic components draw the same noise)."""
    import torch

    torch.manual_seed(seed)
    return component(**inputs)


def float_outputs(out: Any) -> dict[str, Any]:
    """Floating-point tensors of an output (dataclass, tensor or ``None``)."""
    from sigma_core.types import tensors_of

    return {k: v for k, v in tensors_of(out).items() if v.is_floating_point()}


def perturbed(module: Any, seed: int, scale: float) -> Any:
    """``module`` with ``scale`` x N(0, 1) added to every floating parameter (in place)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if p.is_floating_point():
                p.add_(scale * torch.randn(p.shape, generator=g).to(p))
    return module


def projected(outputs: dict[str, Any]) -> Any:
    """A scalar with a nonzero gradient into every output: ``sum_k <out_k, r_k>``, r ~ N(0, 1).

    (A squared loss would give a zero-valued output, e.g. a zero-initialised
    head, a zero gradient and hide what the output depends on.)
    """
    import torch

    return sum((t.float() * torch.randn_like(t.float())).sum() for t in outputs.values())


def _nonzero(grad: Any) -> bool:
    return grad is not None and bool(grad.abs().sum() > 0)


def _seq_len(inputs: dict[str, Any]) -> int | None:
    for key in ("input_ids", "hidden"):
        if key in inputs:
            extra = inputs["prefix"].shape[1] if "prefix" in inputs else 0
            return inputs[key].shape[1] + extra
    return None


def select(spec: str | list[tuple[str, str]], registry: Registry) -> list[ComponentInfo]:
    """Torch components named by ``spec`` ("all": every kind but data sources)."""
    if spec == "all":
        return [c for c in registry.components() if c.kind != DATA_SOURCE]
    return [registry.get(kind, name) for kind, name in spec]


def select_data_sources(spec: str | list[str], registry: Registry) -> list[ComponentInfo]:
    """Data sources named by ``spec`` ("all" or a list of names)."""
    names = registry.names(DATA_SOURCE) if spec == "all" else spec
    return [registry.get(DATA_SOURCE, name) for name in names]


@pytest.fixture(scope="session")
def sigma_contract_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch directory shared by the contract tests of one session."""
    return tmp_path_factory.mktemp("sigma-contract")


class BranchChecks:
    """Checks of an action branch's own training loss (mixed into :class:`ComponentContract`).

    Every ``action.vector`` / ``action.chunk`` / ``action.trajectory`` component:
    ``loss(queries, c_act, target)`` is (B,), float32, finite and reaches every
    trainable parameter; and it *learns*: ``learn_steps`` Adam steps (lr
    ``learn_lr``) of its own mean loss on one fixed toy batch bring the loss
    (evaluated under a fixed seed, so a stochastic loss compares like with like)
    below ``learn_ratio`` x its starting value. A plugin asks for a stricter or
    longer check by setting these on its contract class.
    """

    learn_steps: ClassVar[int] = 40
    learn_lr: ClassVar[float] = 1e-2
    learn_ratio: ClassVar[float] = 0.9

    def _branch_batch(self, module: Any, seed: int) -> tuple[Any, Any, Any]:
        import torch

        inputs = example_inputs(module, seed, self.batch_size)  # type: ignore[attr-defined]
        torch.manual_seed(seed)
        return inputs["queries"], inputs["c_act"], module.example_target(self.batch_size)  # type: ignore[attr-defined]

    def test_own_loss_is_per_sample_and_reaches_trainable_parameters(
        self, sigma_branch: ComponentInfo
    ) -> None:
        import torch

        module = self._build(sigma_branch).train()  # type: ignore[attr-defined]
        queries, c_act, target = self._branch_batch(module, self.seed)  # type: ignore[attr-defined]
        torch.manual_seed(self.seed)  # type: ignore[attr-defined]
        loss = module.loss(queries, c_act, target)
        b = self.batch_size  # type: ignore[attr-defined]
        assert loss.shape == (b,), f"loss() must be per sample ({b},), got {tuple(loss.shape)}"
        assert loss.dtype == torch.float32 and torch.isfinite(loss).all(), loss
        loss.mean().backward()
        trainable = {n: p for n, p in module.named_parameters() if p.requires_grad}
        missing = [n for n, p in trainable.items() if p.grad is None]
        assert not missing, f"loss() reaches no gradient to: {missing[:5]}"

    def test_own_loss_learns_a_toy_target(self, sigma_branch: ComponentInfo) -> None:
        import torch

        module = self._build(sigma_branch).train()  # type: ignore[attr-defined]
        queries, c_act, target = self._branch_batch(module, self.seed)  # type: ignore[attr-defined]

        def evaluate() -> float:
            with torch.no_grad(), torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                return module.loss(queries, c_act, target).mean().item()

        before = evaluate()
        opt = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], self.learn_lr)
        for _ in range(self.learn_steps):
            opt.zero_grad()
            module.loss(queries, c_act, target).mean().backward()
            opt.step()
        after = evaluate()
        assert after < self.learn_ratio * before, (
            f"{sigma_branch.kind}:{sigma_branch.name}: {self.learn_steps} steps of its own loss"
            f" took it from {before:.4g} to {after:.4g}, not below {self.learn_ratio} x"
        )


class VisionChecks:
    """Checks of a vision workspace's pass 2 (mixed into :class:`ComponentContract`).

    ``modulate(forward(x, None), x, tau)`` must equal ``forward(x, tau)``: the
    policy computes V_mod through ``modulate`` so that a workspace can reuse its
    tau-free encoding, which must not change the result. Likewise
    ``restate(forward(x, s), x, s')`` must equal ``forward(x, s')`` (an estimated scene
    state re-encodes the state only). Where the workspace has a trainable tau path
    (``telepathy_params``; FiLM on), V_mod depends on tau.
    """

    def test_restate_equals_forward_with_the_new_state(self, sigma_vision: ComponentInfo) -> None:
        import torch

        module = self._build(sigma_vision).eval()  # type: ignore[attr-defined]
        inputs = example_inputs(module, self.seed, self.batch_size)  # type: ignore[attr-defined]
        images, state = inputs["images"], inputs["state"]
        other = state + torch.linspace(-1.0, 1.0, state.shape[-1])
        with torch.no_grad():
            want = module(images, other)
            got = module.restate(module(images, state), images, other)
        torch.testing.assert_close(got.tokens, want.tokens, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(got.state_tokens, want.state_tokens, rtol=1e-5, atol=1e-5)

    def test_modulate_equals_forward_with_tau(self, sigma_vision: ComponentInfo) -> None:
        import torch

        module = self._build(sigma_vision).eval()  # type: ignore[attr-defined]
        inputs = example_inputs(module, self.seed, self.batch_size)  # type: ignore[attr-defined]
        images, state, tau = inputs["images"], inputs["state"], inputs["tau"]
        with torch.no_grad():
            want = module(images, state, tau)
            got = module.modulate(module(images, state, None), images, state, tau)
        torch.testing.assert_close(got.tokens, want.tokens, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(got.state_tokens, want.state_tokens, rtol=1e-5, atol=1e-5)

    def test_tau_modulates_the_vision_tokens(self, sigma_vision: ComponentInfo) -> None:
        """Where the tau path is on (trainable ``telepathy_params``), V_mod depends on tau."""
        import torch

        for b, dims in self._grid():  # type: ignore[attr-defined]
            where = f"{sigma_vision.kind}:{sigma_vision.name} at B={b}, D={dims.d_model}"
            module = self._build(sigma_vision, dims=dims).train()  # type: ignore[attr-defined]
            prefixes = type(module).telepathy_params
            if not any(
                p.requires_grad and any(n.startswith(x) for x in prefixes)
                for n, p in module.named_parameters()
            ):
                continue  # no tau path (FiLM off): V_mod = V_base by design
            perturbed(module, self.seed, self.perturb_scale)  # type: ignore[attr-defined]
            inputs = example_inputs(module, self.seed, b)  # type: ignore[attr-defined]
            images, state, tau = inputs["images"], inputs["state"], inputs["tau"]
            tau.requires_grad_(True)
            tokens = module.modulate(module(images, state, None), images, state, tau).tokens
            (g,) = torch.autograd.grad(
                (tokens * torch.randn_like(tokens)).sum(), [tau], allow_unused=True
            )
            assert _nonzero(g), (
                f"{where}: its telepathy parameters train, but modulate(tau) does not change "
                "the vision tokens"
            )


class MemoryChecks:
    """Checks of a semantic memory's promise (mixed into :class:`ComponentContract`).

    At every batch size and width: a recurrent memory's ``m_t`` depends on
    ``m_prev`` (a nonzero gradient into ``m_prev`` through two chained steps) and
    backpropagates through time (the parameters' gradients of ``m_2`` change when
    ``m_1`` is detached); a memory that declares ``recurrent = False`` must not
    depend on ``m_prev``. From the zero initial state the output and its
    gradients are finite, and ``memory_steps`` steps of N(0, 1) inputs keep
    ``|m_t|`` finite and below ``memory_bound``.
    """

    memory_steps: ClassVar[int] = 200
    memory_bound: ClassVar[float] = 1e3

    def test_memory_depends_on_m_prev_through_time(self, sigma_memory: ComponentInfo) -> None:
        import torch

        for b, dims in self._grid():  # type: ignore[attr-defined]
            where = f"{sigma_memory.kind}:{sigma_memory.name} at B={b}, D={dims.d_model}"
            module = self._build(sigma_memory, dims=dims).train()  # type: ignore[attr-defined]
            perturbed(module, self.seed, self.perturb_scale)  # type: ignore[attr-defined]
            params = [p for p in module.parameters() if p.requires_grad]
            torch.manual_seed(self.seed)  # type: ignore[attr-defined]
            d = dims.d_model
            z1, z2, m0 = torch.randn(b, d), torch.randn(b, d), torch.randn(b, d)
            for t in (z1, z2, m0):  # inputs with gradients: a loss even without parameters
                t.requires_grad_(True)
            m1 = module(z1, m0)
            m2 = module(z2, m1)
            r = torch.randn_like(m2)
            (g_m0, *g_chained) = torch.autograd.grad(
                (m2 * r).sum(), [m0, *params], allow_unused=True, retain_graph=True
            )
            if not getattr(module, "recurrent", True):
                assert not _nonzero(g_m0), (
                    f"{where}: declares recurrent = False but m_t depends on m_prev"
                )
                continue
            assert _nonzero(g_m0), (
                f"{where}: m_t does not depend on m_prev (the gradient of m_2 into m_0 through "
                "two chained steps is zero or absent: is m_prev ignored or detached? a memory "
                "without recurrence declares recurrent = False)"
            )
            if not params:
                continue
            g_cut = torch.autograd.grad(
                (module(z2, m1.detach()) * r).sum(), params, allow_unused=True
            )
            same = all(
                (a is None and c is None) or (a is not None and c is not None and torch.equal(a, c))
                for a, c in zip(g_chained, g_cut, strict=True)
            )
            assert not same, (
                f"{where}: no gradient flows back through time into the parameters (their "
                "gradients of m_2 are the same with m_1 detached)"
            )

    def test_memory_is_finite_from_zero_and_bounded(self, sigma_memory: ComponentInfo) -> None:
        import torch

        for b, dims in self._grid():  # type: ignore[attr-defined]
            where = f"{sigma_memory.kind}:{sigma_memory.name} at B={b}, D={dims.d_model}"
            module = self._build(sigma_memory, dims=dims).train()  # type: ignore[attr-defined]
            torch.manual_seed(self.seed)  # type: ignore[attr-defined]
            m0 = module.initial_state(b)
            assert tuple(m0.shape) == (b, dims.d_model), f"{where}: initial_state {m0.shape}"
            z = torch.randn(b, dims.d_model, requires_grad=True)
            m1 = module(z, m0)
            assert torch.isfinite(m1).all(), f"{where}: non-finite m_1 from the zero state"
            params = [p for p in module.parameters() if p.requires_grad]
            grads = torch.autograd.grad(
                (m1 * torch.randn_like(m1)).sum(), [z, *params], allow_unused=True
            )
            bad = [g for g in grads if g is not None and not torch.isfinite(g).all()]
            assert not bad, f"{where}: non-finite gradients from the zero state"
            m, peak = m0, 0.0
            with torch.no_grad():
                for step in range(1, self.memory_steps + 1):
                    m = module(torch.randn(b, dims.d_model), m)
                    peak = max(peak, m.abs().max().item())
                    assert torch.isfinite(m).all() and peak <= self.memory_bound, (
                        f"{where}: |m_t| reached {peak:.4g} after {step} steps of N(0, 1) "
                        f"inputs (bound {self.memory_bound:g}): the recurrence is unstable"
                    )


class ResidualChecks:
    """Checks of a residual head's promise (mixed into :class:`ComponentContract`).

    At every batch size and width it returns an
    :class:`~sigma_core.types.ActionSet`; every scale of Δa depends on ``tau``
    and on ``high_level_rep``; Δa is finite for a large ``tau``
    (``residual_large_tau`` x N(0, 1)).
    """

    residual_large_tau: ClassVar[float] = 1e4

    def test_residual_depends_on_tau_and_high_level_rep(
        self, sigma_residual: ComponentInfo
    ) -> None:
        import torch

        from sigma_core.types import ActionSet

        for b, dims in self._grid():  # type: ignore[attr-defined]
            where = f"{sigma_residual.kind}:{sigma_residual.name} at B={b}, D={dims.d_model}"
            module = self._build(sigma_residual, dims=dims).train()  # type: ignore[attr-defined]
            perturbed(module, self.seed, self.perturb_scale)  # type: ignore[attr-defined]
            inputs = example_inputs(module, self.seed, b)  # type: ignore[attr-defined]
            for t in inputs.values():
                t.requires_grad_(True)
            out = run(module, inputs, self.seed)  # type: ignore[attr-defined]
            assert isinstance(out, ActionSet), (
                f"{where}: forward must return sigma_core.ActionSet(vector, chunk, trajectory),"
                f" got {type(out).__name__}"
            )
            for scale, delta in float_outputs(out).items():
                grads = torch.autograd.grad(
                    (delta * torch.randn_like(delta)).sum(),
                    list(inputs.values()),
                    allow_unused=True,
                    retain_graph=True,
                )
                for name, g in zip(inputs, grads, strict=True):
                    assert _nonzero(g), f"{where}: delta_a.{scale} does not depend on {name}"

    def test_residual_is_finite_for_large_tau(self, sigma_residual: ComponentInfo) -> None:
        import torch

        for b, dims in self._grid():  # type: ignore[attr-defined]
            module = self._build(sigma_residual, dims=dims).eval()  # type: ignore[attr-defined]
            perturbed(module, self.seed, self.perturb_scale)  # type: ignore[attr-defined]
            inputs = example_inputs(module, self.seed, b)  # type: ignore[attr-defined]
            inputs["tau"] = inputs["tau"] * self.residual_large_tau
            with torch.no_grad():
                out = float_outputs(run(module, inputs, self.seed))  # type: ignore[attr-defined]
            bad = [k for k, t in out.items() if not torch.isfinite(t).all()]
            assert not bad, (
                f"{sigma_residual.kind}:{sigma_residual.name} at B={b}, D={dims.d_model}: "
                f"non-finite delta_a.{bad[0]} for |tau| ~ {self.residual_large_tau:g}"
            )


def _probed_memory(probe: Any, returned: list[Any]) -> Any:
    """A memory ``m_t = (sg(z_pool) + m_prev) / 2 + probe`` that records what it returns."""

    def memory(z_pool: Any, m_prev: Any) -> Any:
        m_t = 0.5 * (z_pool.detach() + m_prev) + probe  # text reaches tau only directly
        returned.append(m_t)
        return m_t

    return memory


class IntentChecks:
    """Checks of an intent workspace's promise (mixed into :class:`ComponentContract`).

    At every batch size and width: ``m_t`` is what the memory it is given
    returned, and ``tau`` depends on that memory state and on the hidden
    sequence (the text, read through the backbone) directly: the check's memory
    stops the gradient of ``z_pool``, so the text cannot count through ``m_t``.
    """

    def test_intent_tau_depends_on_memory_and_text(self, sigma_intent: ComponentInfo) -> None:
        import torch

        for b, dims in self._grid():  # type: ignore[attr-defined]
            where = f"{sigma_intent.kind}:{sigma_intent.name} at B={b}, D={dims.d_model}"
            module = self._build(sigma_intent, dims=dims).train()  # type: ignore[attr-defined]
            perturbed(module, self.seed, self.perturb_scale)  # type: ignore[attr-defined]
            inputs = example_inputs(module, self.seed, b)  # type: ignore[attr-defined]
            probe = torch.zeros(b, dims.d_model, requires_grad=True)
            returned: list[Any] = []
            inputs["memory"] = _probed_memory(probe, returned)
            inputs["hidden"].requires_grad_(True)
            out = run(module, inputs, self.seed)  # type: ignore[attr-defined]
            assert len(returned) == 1, f"{where}: calls the memory {len(returned)} times, not once"
            assert out.m_t is returned[0] or torch.equal(out.m_t, returned[0]), (
                f"{where}: m_t is not what the memory returned"
            )
            g_memory, g_text = torch.autograd.grad(
                (out.tau * torch.randn_like(out.tau)).sum(),
                [probe, inputs["hidden"]],
                allow_unused=True,
            )
            assert _nonzero(g_memory), f"{where}: tau does not depend on the memory state m_t"
            assert _nonzero(g_text), f"{where}: tau does not depend on the hidden sequence (text)"


class ComponentContract(BranchChecks, VisionChecks, MemoryChecks, ResidualChecks, IntentChecks):
    """The contract every Sigma component must pass; subclass it and set ``components``.

    Action branches also pass :class:`BranchChecks` (their own ``loss()``), vision
    workspaces :class:`VisionChecks` (pass 2 from pass 1), memories
    :class:`MemoryChecks`, residual heads :class:`ResidualChecks` and intent
    workspaces :class:`IntentChecks`.
    """

    #: "all" registered components, or a list of (kind, name).
    components: ClassVar[str | list[tuple[str, str]]] = "all"
    #: the dimensions the components are built with.
    dims: ClassVar[Dims] = CONTRACT_DIMS
    batch_size: ClassVar[int] = 2
    #: the batch sizes and widths (d_model) the shape and kind checks run at (a grid);
    #: widths default to ``dims.d_model`` and ``dims.d_model + 16``.
    batch_sizes: ClassVar[tuple[int, ...]] = (2, 3)
    widths: ClassVar[tuple[int, ...] | None] = None
    seed: ClassVar[int] = 1234
    #: the parameter noise of the dependence checks (see the module docstring).
    perturb_scale: ClassVar[float] = 1e-2

    def _grid(self) -> list[tuple[int, Dims]]:
        widths = self.widths or (self.dims.d_model, self.dims.d_model + 16)
        return [
            (b, self.dims.model_copy(update={"d_model": w}))
            for w in widths
            for b in self.batch_sizes
        ]

    #: scratch directory for contract configs (pytest sets the session's; else a new one).
    workdir: Path | None = None

    @pytest.fixture(autouse=True)
    def _workdir(self, sigma_contract_dir: Path) -> None:
        self.workdir = sigma_contract_dir

    def _build(self, info: ComponentInfo, seed: int | None = None, dims: Dims | None = None) -> Any:
        if self.workdir is None:  # used outside pytest's fixtures
            self.workdir = Path(tempfile.mkdtemp(prefix="sigma-contract-"))
        return build(info, self.workdir, self.seed if seed is None else seed, dims or self.dims)

    def test_builds_from_default_config(self, sigma_component: ComponentInfo) -> None:
        from sigma_core.components import component_base

        module = self._build(sigma_component)
        assert isinstance(module, component_base(sigma_component.kind))
        assert module.name == sigma_component.name
        assert isinstance(module.config, sigma_component.config_class)

    def test_forward_shapes_and_dtypes(self, sigma_component: ComponentInfo) -> None:
        import torch

        from sigma_core.components import FREE_DRAWS

        built: dict[int, Any] = {}
        for b, dims in self._grid():  # two batch sizes x two widths
            if dims.d_model not in built:
                built[dims.d_model] = self._build(sigma_component, dims=dims).eval()
            module = built[dims.d_model]
            for draw in range(FREE_DRAWS):  # every free symbol (L, N_q ...) at two sizes
                inputs = example_inputs(module, self.seed, b, draw)
                sizes = module.free_sizes(draw) | {"B": b, "D": dims.d_model}
                try:
                    with torch.no_grad():
                        out = run(module, inputs, self.seed)
                except Exception as exc:
                    raise AssertionError(
                        f"{sigma_component.kind}:{sigma_component.name}: forward fails at "
                        f"{sizes}: {type(exc).__name__}: {exc}"
                    ) from exc
                try:
                    module.check_outputs(out, b, _seq_len(inputs))
                except AssertionError as exc:
                    raise AssertionError(f"{exc} (at {sizes})") from exc
                for key, t in float_outputs(out).items():
                    assert t.dtype == torch.float32, (
                        f"{key}: dtype {t.dtype}, expected float32 ({sizes})"
                    )
                    assert torch.isfinite(t).all(), f"{key}: non-finite values ({sizes})"

    def test_gradients_reach_trainable_parameters_only(
        self, sigma_component: ComponentInfo
    ) -> None:
        import torch

        module = self._build(sigma_component).train()
        trainable = {n: p for n, p in module.named_parameters() if p.requires_grad}
        frozen = {n: p for n, p in module.named_parameters() if not p.requires_grad}
        if not trainable:
            # Parameter-free (or all frozen): nothing to train, so nothing to check here;
            # the kind's own checks still run on its outputs.
            assert not any(p.grad is not None for p in frozen.values()), "frozen got gradients"
            return
        zero = set(trainable)
        # Some batch must move every parameter: the as-built one on two batches, then
        # (a zero-initialised layer blocks the gradient of the layers before it) a
        # perturbed copy.
        for attempt, seed in enumerate((self.seed, self.seed + 1, self.seed + 2)):
            if attempt == 2:
                perturbed(module, self.seed, self.perturb_scale)
            module.zero_grad(set_to_none=True)
            outputs = float_outputs(run(module, example_inputs(module, seed), seed))
            loss = projected(outputs)
            assert isinstance(loss, torch.Tensor) and loss.requires_grad, "outputs carry no graph"
            loss.backward()
            missing = [n for n, p in trainable.items() if p.grad is None]
            assert not missing, f"trainable parameters without gradient: {missing[:5]}"
            bad = [n for n, p in trainable.items() if not torch.isfinite(p.grad).all()]
            assert not bad, f"non-finite gradients: {bad[:5]}"
            leaked = [n for n, p in frozen.items() if p.grad is not None]
            assert not leaked, f"frozen parameters received gradients: {leaked[:5]}"
            zero -= {n for n, p in trainable.items() if _nonzero(p.grad)}
            if not zero:
                return
        raise AssertionError(
            f"trainable parameters whose gradient is exactly zero on every batch (also with "
            f"perturbed parameters), so they cannot learn: {sorted(zero)[:5]}"
        )

    def test_save_load_round_trip(self, sigma_component: ComponentInfo) -> None:
        import torch
        from safetensors.torch import load_model, save_model

        original = self._build(sigma_component).eval()
        restored = self._build(sigma_component, seed=self.seed + 1).eval()
        inputs = example_inputs(original, self.seed, self.batch_size)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "component.safetensors")
            save_model(original, path)
            load_model(restored, path)
        for (name, a), (_, b) in zip(
            original.state_dict().items(), restored.state_dict().items(), strict=True
        ):
            assert torch.equal(a, b), f"{name} differs after the round trip"
        with torch.no_grad():
            want = float_outputs(run(original, inputs, self.seed))
            got = float_outputs(run(restored, inputs, self.seed))
        for key in want:
            assert torch.equal(want[key], got[key]), f"output {key} differs after reload"

    def test_deterministic_under_seed(self, sigma_component: ComponentInfo) -> None:
        import torch

        outs = []
        for _ in range(2):
            module = self._build(sigma_component).eval()
            with torch.no_grad():
                outs.append(float_outputs(run(module, example_inputs(module, 7), 7)))
        for key in outs[0]:
            assert torch.equal(outs[0][key], outs[1][key]), f"output {key} is not deterministic"


class DataSourceContract:
    """The contract every ``data_source`` must pass; subclass it and set ``data_sources``.

    Writes 6 episodes per data source in all (2 + 2 + 1 + 1), at its contract config.
    """

    #: "all" registered data sources, or a list of names.
    data_sources: ClassVar[str | list[str]] = "all"

    @pytest.fixture(autouse=True)
    def _workdir(self, sigma_contract_dir: Path) -> None:
        self.workdir = sigma_contract_dir

    def _written(self, info: ComponentInfo) -> dict[str, Any]:
        """Write (once per session) the runs the checks compare; see the class docstring."""
        root = self.workdir / f"data_source-{info.name}"
        if (root / "done").is_file():
            return {k: root / k for k in ("resumed", "whole", "again", "other")}
        cls = info.load()
        config = contract_config(cls, self.workdir)
        source = cls(config)
        runs = {k: root / k for k in ("resumed", "whole", "again", "other")}
        first = source.write(runs["resumed"], 1, seed=0, progress=False)
        assert first["episodes"] == 1, f"asked for 1 episode, summary says {first['episodes']}"
        source.write(runs["resumed"], 2, seed=0, progress=False)
        whole = source.write(runs["whole"], 2, seed=0, progress=False)
        assert whole["episodes"] == 2, f"asked for 2 episodes, summary says {whole['episodes']}"
        source.write(runs["again"], 1, seed=0, progress=False)
        source.write(runs["other"], 1, seed=1, progress=False)
        (root / "repo_id").write_text(whole["repo_id"])
        (root / "done").write_text("")
        return runs

    def test_builds_from_contract_config(self, sigma_data_source: ComponentInfo) -> None:
        from sigma_core.components import DataSource

        cls = sigma_data_source.load()
        source = cls(contract_config(cls, self.workdir))
        assert isinstance(source, DataSource)
        assert source.name == sigma_data_source.name
        assert isinstance(source.config, sigma_data_source.config_class)

    def test_lerobot_reads_what_it_writes(self, sigma_data_source: ComponentInfo) -> None:
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        runs = self._written(sigma_data_source)
        repo_id = (runs["whole"].parent / "repo_id").read_text()
        ds = LeRobotDataset(repo_id, root=runs["whole"])
        assert ds.meta.total_episodes == 2
        item = ds[len(ds) - 1]
        for key in ("action", "observation.state", "task"):
            assert key in item, f"{sigma_data_source.name}: frames lack {key!r}"

    def test_same_seed_same_episodes(self, sigma_data_source: ComponentInfo) -> None:
        import numpy as np

        runs = self._written(sigma_data_source)
        whole, again, other = (_episodes(runs[k]) for k in ("whole", "again", "other"))
        np.testing.assert_array_equal(again[0], whole[0])
        assert other[0].shape != whole[0].shape or not np.array_equal(other[0], whole[0]), (
            "seed 1 wrote the same episode as seed 0"
        )

    def test_resumes_to_the_same_dataset(self, sigma_data_source: ComponentInfo) -> None:
        import numpy as np

        runs = self._written(sigma_data_source)
        resumed, whole = _episodes(runs["resumed"]), _episodes(runs["whole"])
        assert len(resumed) == len(whole) == 2
        for a, b in zip(resumed, whole, strict=True):
            np.testing.assert_array_equal(a, b)


def _episodes(root: Path) -> list[Any]:
    """Per-episode [state | action] arrays of a LeRobot v3 dataset's parquet files."""
    import numpy as np
    import pandas as pd

    cols = ["episode_index", "observation.state", "action"]
    frames = pd.concat([pd.read_parquet(p, columns=cols) for p in sorted(root.glob("data/*/*"))])
    return [
        np.concatenate([np.stack(g["observation.state"]), np.stack(g["action"])], axis=1)
        for _, g in frames.groupby("episode_index")
    ]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``sigma_component`` / ``sigma_data_source`` over the class's selection."""
    registry = get_registry()
    if "sigma_component" in metafunc.fixturenames:
        infos = select(getattr(metafunc.cls, "components", "all"), registry)
        metafunc.parametrize("sigma_component", infos, ids=[f"{i.kind}:{i.name}" for i in infos])
    if "sigma_branch" in metafunc.fixturenames:
        infos = [
            i
            for i in select(getattr(metafunc.cls, "components", "all"), registry)
            if i.kind in BRANCH_KINDS
        ]
        if infos:
            metafunc.parametrize("sigma_branch", infos, ids=[f"{i.kind}:{i.name}" for i in infos])
    for fixture, kind in KIND_FIXTURES.items():
        if fixture in metafunc.fixturenames:
            infos = [
                i
                for i in select(getattr(metafunc.cls, "components", "all"), registry)
                if i.kind == kind
            ]
            if infos:  # none: the check is dropped at collection (no "empty parameter set")
                metafunc.parametrize(fixture, infos, ids=[f"{i.kind}:{i.name}" for i in infos])

    if "sigma_data_source" in metafunc.fixturenames:
        infos = select_data_sources(getattr(metafunc.cls, "data_sources", "all"), registry)
        metafunc.parametrize("sigma_data_source", infos, ids=[i.name for i in infos])


#: the fixtures of the kind-specific checks -> the kind they run over
KIND_FIXTURES = {
    "sigma_vision": "vision",
    "sigma_memory": "memory",
    "sigma_residual": "residual",
    "sigma_intent": "intent",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Drop kind checks that have no component of their kind to run over.

    A class that checks only a residual head then shows no skipped branch,
    vision or memory tests (pytest's "got empty parameter set").
    """
    fixtures = {"sigma_branch", *KIND_FIXTURES}
    items[:] = [
        item
        for item in items
        if not (
            fixtures & set(getattr(item, "fixturenames", ()))
            and not (fixtures & set(getattr(getattr(item, "callspec", None), "params", {})))
        )
    ]
