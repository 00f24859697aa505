"""Contract-test kit for Sigma components (a pytest plugin, auto-loaded via ``pytest11``).

Every component, ours and third parties', must pass the same contract. To run
it over your components, subclass :class:`ComponentContract` in a test module::

    from sigma_core.testing import ComponentContract

    class TestMyChunk(ComponentContract):
        components = [("action.chunk", "my-chunk")]   # or "all" for every registered one

The kit checks, for each component: it builds from its default config; forward
outputs have the declared shapes, float32 dtype and finite values on a fake
input; gradients reach every trainable parameter and no frozen one; a
safetensors save/load round trip into a differently seeded instance reproduces
the outputs; and building + running twice under one seed is bit-identical.

This module imports no torch at import time (pytest loads it in every session).
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, ClassVar

import pytest

from sigma_core.registry import ComponentInfo, Registry, get_registry
from sigma_core.spec import Dims

#: Small dimensions so that the whole contract suite runs in seconds on a CPU.
CONTRACT_DIMS = Dims(d_model=32, image_size=32, chunk_horizon=4, horizon=8)


def build(info: ComponentInfo, seed: int = 0, dims: Dims = CONTRACT_DIMS) -> Any:
    """Build ``info``'s component from its default config under ``seed``."""
    import torch

    cls = info.load()
    torch.manual_seed(seed)
    return cls(cls.contract_config(), dims)


def example_inputs(component: Any, seed: int, batch_size: int = 2) -> dict[str, Any]:
    """The kind's fake forward inputs, drawn under ``seed``."""
    import torch

    torch.manual_seed(seed)
    return component.example_inputs(batch_size)


def run(component: Any, inputs: dict[str, Any], seed: int) -> Any:
    """Forward ``inputs`` under ``seed`` (stochastic components draw the same noise)."""
    import torch

    torch.manual_seed(seed)
    return component(**inputs)


def float_outputs(out: Any) -> dict[str, Any]:
    """Floating-point tensors of an output (dataclass, tensor or ``None``)."""
    from sigma_core.types import tensors_of

    return {k: v for k, v in tensors_of(out).items() if v.is_floating_point()}


def _seq_len(inputs: dict[str, Any]) -> int | None:
    for key in ("input_ids", "hidden"):
        if key in inputs:
            extra = inputs["prefix"].shape[1] if "prefix" in inputs else 0
            return inputs[key].shape[1] + extra
    return None


def select(spec: str | list[tuple[str, str]], registry: Registry) -> list[ComponentInfo]:
    """Components named by ``spec`` ("all" or a list of (kind, name))."""
    if spec == "all":
        return registry.components()
    return [registry.get(kind, name) for kind, name in spec]


class ComponentContract:
    """The contract every Sigma component must pass; subclass it and set ``components``."""

    #: "all" registered components, or a list of (kind, name).
    components: ClassVar[str | list[tuple[str, str]]] = "all"
    #: the dimensions the components are built with.
    dims: ClassVar[Dims] = CONTRACT_DIMS
    batch_size: ClassVar[int] = 2
    seed: ClassVar[int] = 1234

    def _build(self, info: ComponentInfo, seed: int | None = None) -> Any:
        return build(info, self.seed if seed is None else seed, self.dims)

    def _tensor_component(self, info: ComponentInfo) -> None:
        if not info.load().tensor_forward:
            pytest.skip(f"{info.kind}:{info.name} has no tensor forward (it writes files)")

    def test_builds_from_default_config(self, sigma_component: ComponentInfo) -> None:
        from sigma_core.components import component_base

        module = self._build(sigma_component)
        assert isinstance(module, component_base(sigma_component.kind))
        assert module.name == sigma_component.name
        assert isinstance(module.config, sigma_component.config_class)

    def test_forward_shapes_and_dtypes(self, sigma_component: ComponentInfo) -> None:
        self._tensor_component(sigma_component)
        import torch

        module = self._build(sigma_component).eval()
        inputs = example_inputs(module, self.seed, self.batch_size)
        with torch.no_grad():
            out = run(module, inputs, self.seed)
        module.check_outputs(out, self.batch_size, _seq_len(inputs))
        for key, t in float_outputs(out).items():
            assert t.dtype == torch.float32, f"{key}: dtype {t.dtype}, expected float32"
            assert torch.isfinite(t).all(), f"{key}: non-finite values"

    def test_gradients_reach_trainable_parameters_only(
        self, sigma_component: ComponentInfo
    ) -> None:
        self._tensor_component(sigma_component)
        import torch

        module = self._build(sigma_component).train()
        outputs = float_outputs(run(module, example_inputs(module, self.seed), self.seed))
        trainable = {n: p for n, p in module.named_parameters() if p.requires_grad}
        frozen = {n: p for n, p in module.named_parameters() if not p.requires_grad}
        if trainable:
            loss = sum(t.float().square().mean() for t in outputs.values())
            assert isinstance(loss, torch.Tensor) and loss.requires_grad, "outputs carry no graph"
            loss.backward()
        missing = [n for n, p in trainable.items() if p.grad is None]
        assert not missing, f"trainable parameters without gradient: {missing[:5]}"
        bad = [n for n, p in trainable.items() if not torch.isfinite(p.grad).all()]
        assert not bad, f"non-finite gradients: {bad[:5]}"
        leaked = [n for n, p in frozen.items() if p.grad is not None]
        assert not leaked, f"frozen parameters received gradients: {leaked[:5]}"

    def test_save_load_round_trip(self, sigma_component: ComponentInfo) -> None:
        self._tensor_component(sigma_component)
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
        self._tensor_component(sigma_component)
        import torch

        outs = []
        for _ in range(2):
            module = self._build(sigma_component).eval()
            with torch.no_grad():
                outs.append(float_outputs(run(module, example_inputs(module, 7), 7)))
        for key in outs[0]:
            assert torch.equal(outs[0][key], outs[1][key]), f"output {key} is not deterministic"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``sigma_component`` over the class's ``components``."""
    if "sigma_component" not in metafunc.fixturenames:
        return
    spec = getattr(metafunc.cls, "components", "all")
    infos = select(spec, get_registry())
    metafunc.parametrize("sigma_component", infos, ids=[f"{i.kind}:{i.name}" for i in infos])


def example_batch(dims: Dims, batch_size: int = 4, seed: int = 0, targets: bool = True) -> Any:
    """A random :class:`~sigma_core.types.SigmaBatch` at ``dims`` (with targets), seeded."""
    import torch

    from sigma_core.types import ActionSet, SigmaBatch

    g = torch.Generator().manual_seed(seed)
    p, c, f = dims.image_size, len(dims.cameras), dims.frame_history
    texts = ["pick up the red cube", "place it on the blue circle", "go", "stop"]
    return SigmaBatch(
        torch.rand(batch_size, c, f, 3, p, p, generator=g),
        torch.randn(batch_size, dims.state_dim, generator=g),
        [texts[i % len(texts)] for i in range(batch_size)],
        targets=ActionSet(
            torch.randn(batch_size, dims.action_dim, generator=g),
            torch.randn(batch_size, dims.chunk_horizon, dims.action_dim, generator=g),
            torch.randn(batch_size, dims.horizon, dims.action_dim, generator=g),
        )
        if targets
        else None,
    )


def write_synthetic_shards(
    out: str | os.PathLike[str],
    dims: Dims | None = None,
    episodes: int = 4,
    frames: int = 24,
    tasks: tuple[str, ...] = ("pick up the red cube", "pick up the green cube"),
    **options: Any,
) -> Any:
    """Preprocess random-walk episodes at ``dims`` into shards at ``out``; return ``out``.

    Actions and states are random walks (so no window is static), images are
    uniform noise; ``options`` override :class:`PreprocessOptions` fields (e.g.
    ``val_fraction``). For tests and benchmarks that need real shards offline.
    """
    from pathlib import Path

    import numpy as np

    from sigma_core.data import Episode, InMemorySource, PreprocessOptions, SourceInfo, preprocess

    d = dims or Dims()
    rng = np.random.default_rng(0)
    size = (frames, 3, d.image_size, d.image_size)
    eps = [
        Episode(
            i,
            tasks[i % len(tasks)],
            np.cumsum(rng.normal(size=(frames, d.action_dim)), 0).astype(np.float32),
            np.cumsum(rng.normal(size=(frames, d.state_dim)), 0).astype(np.float32),
            {c: rng.integers(0, 256, size, dtype=np.uint8) for c in d.cameras},
        )
        for i in range(episodes)
    ]
    info = SourceInfo(
        "synthetic", "random walks", 30, d.action_dim, d.state_dim, {c: c for c in d.cameras}, {}
    )
    opts = PreprocessOptions(
        cameras=list(d.cameras),
        image_size=d.image_size,
        horizon=d.horizon,
        chunk=d.chunk_horizon,
        min_action_norm=0,
        **options,
    )
    preprocess(InMemorySource(eps, info), out, opts)
    return Path(out)
