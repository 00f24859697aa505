"""Component ABCs: one per kind, each a ``torch.nn.Module`` with declared shapes.

A component subclasses its kind's ABC and sets two class attributes::

    class MyChunk(ChunkBranch):
        name = "my-chunk"              # the spec's ``type``
        config_class = MyChunkConfig   # pydantic, extra="forbid"
        shape_symbols = {"N_q": "num_queries"}  # optional: symbol -> config field

``__init_subclass__`` checks these when the class is defined: the name, the
config class, and that every symbol used in the kind's ``inputs`` / ``outputs``
shape declarations is either a shared dimension (see :class:`Dims`) or mapped to
a field of the config. The contract kit (:mod:`sigma_core.testing`) then builds
inputs from those declarations and checks outputs against them.
"""

from __future__ import annotations

import re
from abc import ABCMeta, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import is_dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import BaseModel
from torch import Tensor, nn

from sigma_core.config import Dims
from sigma_core.kinds import KINDS
from sigma_core.types import (
    ActionSet,
    AdapterOutput,
    BackboneOutput,
    IntentOutput,
    QueryOutput,
    SigmaBatch,
    VisionOutput,
    tensors_of,
)

Shape = tuple[str | int, ...]
#: Symbols every component may use: batch, sequence length, backbone width, Dims symbols.
#: Symbols whose size the caller decides (sequence and token counts): the contract kit
#: draws each from more than one value, so a component hard-wired to one size fails it.
FREE_SYMBOLS: Mapping[str, tuple[int, ...]] = {
    "L": (7, 4),  # sequence length
    "N_q": (3, 6),  # action queries the branches read (query.num_queries in the model)
    "N_p": (5, 2),  # prefix tokens the backbone reads (vision + state tokens)
    "N_s": (3, 2),  # state tokens the query generator reads
    "N_v": (4, 6),  # vision tokens the query generator reads
}
#: The number of draws of :data:`FREE_SYMBOLS` (``example_inputs(draw=...)``).
FREE_DRAWS = 2
SHARED_SYMBOLS = frozenset({"B", "W", *FREE_SYMBOLS, *Dims().symbols()})
_BASES: dict[str, type[Component]] = {}
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.\-]*$")


class ComponentDefinitionError(TypeError):
    """A component class is missing or misdeclares a load-bearing attribute."""


class Component(nn.Module, metaclass=ABCMeta):
    """Base of every component; subclass a kind ABC below, not this class.

    Attributes:
        kind: the spec slot kind (set by the kind ABC).
        name: the registered name, used as ``type:`` in specs.
        config_class: the pydantic model of the component's parameters.
        inputs / outputs: forward argument / result names -> shapes in symbols.
        shape_symbols: component-specific symbols -> config field names.
    """

    kind: ClassVar[str]
    name: ClassVar[str]
    config_class: ClassVar[type[BaseModel]]
    inputs: ClassVar[Mapping[str, Shape]] = {}
    outputs: ClassVar[Mapping[str, Shape]] = {}
    shape_symbols: ClassVar[Mapping[str, str]] = {}
    #: Parameter-name prefixes that belong to the telepathy pathway (trained in stage
    #: ``sigma``, frozen in stage ``base``); ``("",)`` marks the whole component.
    telepathy_params: ClassVar[tuple[str, ...]] = ()
    #: Prefixes, among ``telepathy_params``, of parameters trained only by their own
    #: distillation (e.g. ``sigma declutter``), never by a stage's objective: frozen in
    #: both stages, so stage sigma's losses cannot pull them away from their start.
    distilled_params: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, kind: str | None = None, abstract: bool = False, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if kind is not None:
            if kind not in KINDS:
                raise ComponentDefinitionError(f"{cls.__name__}: unknown kind {kind!r}")
            cls.kind = kind
            _BASES[kind] = cls
        if abstract:
            return
        _check_definition(cls)

    def __init__(self, config: BaseModel, dims: Dims) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(f"{self.name}: config must be {self.config_class.__name__}")
        self.config = config
        self.dims = dims

    @classmethod
    def contract_config(cls, workdir: Path | None = None, dims: Dims | None = None) -> BaseModel:
        """The config the contract kit builds with (default: the config's defaults).

        Override when the defaults cannot build offline (e.g. a required model path).
        The kit passes a scratch directory ``workdir`` and the ``dims`` it builds with,
        for configs that must point at files made for the test (an override may
        accept either, both or none of them).
        """
        return cls.config_class()

    def symbols(self, batch_size: int) -> dict[str, int]:
        """Sizes of every shape symbol for this instance (used to check shapes)."""
        sizes = {"B": batch_size, "W": self.dims.d_model, **self.dims.symbols()}
        sizes |= {sym: getattr(self.config, fld) for sym, fld in self.shape_symbols.items()}
        return sizes

    def free_sizes(self, draw: int = 0) -> dict[str, int]:
        """Draw ``draw`` of the free symbols' sizes (a component's own symbols win)."""
        free = {sym: sizes[draw % len(sizes)] for sym, sizes in FREE_SYMBOLS.items()}
        return {k: v for k, v in free.items() if k not in self.shape_symbols}

    def example_inputs(self, batch_size: int = 2, draw: int = 0) -> dict[str, Any]:
        """Fake forward arguments built from ``inputs`` (random normal, global RNG).

        ``draw`` picks the sizes of the free symbols (:data:`FREE_SYMBOLS`).
        """
        sizes = self.free_sizes(draw) | self.symbols(batch_size)
        return {k: torch.randn(resolve(shape, sizes)) for k, shape in self.inputs.items()}

    def check_outputs(self, out: Any, batch_size: int, seq_len: int | None = None) -> None:
        """Raise ``AssertionError`` unless ``out`` matches the declared ``outputs`` shapes."""
        sizes = self.symbols(batch_size) | ({"L": seq_len} if seq_len is not None else {})
        assert out is None or isinstance(out, Tensor) or is_dataclass(out), (
            f"{self.kind}:{self.name} forward returned a {type(out).__name__}; "
            f"{_BASES[self.kind].__name__}.forward's docstring names the type to return"
            " (e.g. a residual returns sigma_core.ActionSet(vector, chunk, trajectory))"
        )
        got = tensors_of(out)
        for key, shape in self.outputs.items():
            assert key in got, f"{self.kind}:{self.name} output lacks {key!r}"
            want = resolve(shape, sizes, partial=True)
            have = tuple(got[key].shape)
            ok = len(have) == len(want) and all(
                w is None or w == h for w, h in zip(want, have, strict=False)
            )
            assert ok, f"{self.kind}:{self.name} output {key}: shape {have}, declared {shape}"


def resolve(
    shape: Shape, sizes: Mapping[str, int], partial: bool = False
) -> tuple[int | None, ...]:
    """Turn a symbolic shape into sizes (``None`` for unknown symbols when ``partial``)."""
    out: list[int | None] = []
    for s in shape:
        if isinstance(s, int):
            out.append(s)
        elif s in sizes:
            out.append(int(sizes[s]))
        elif partial:
            out.append(None)
        else:
            raise KeyError(f"shape symbol {s!r} has no size")
    return tuple(out)


def _check_names(cls: type[Any]) -> type[BaseModel]:
    """Check ``name`` and ``config_class`` of a component or data source class.

    ``name`` must be set on the class itself (every registered class has its own);
    ``config_class`` may be inherited, so a subclass made only to rename a
    component keeps its parent's config.
    """
    where = f"{cls.__module__}.{cls.__qualname__}"
    name = cls.__dict__.get("name")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ComponentDefinitionError(
            f"{where}: set `name` to a lowercase registered name (letters, digits, - _ .)"
        )
    config = getattr(cls, "config_class", None)
    if not (isinstance(config, type) and issubclass(config, BaseModel)):
        raise ComponentDefinitionError(f"{where}: set `config_class` to a pydantic model class")
    if config.model_config.get("extra") != "forbid":
        raise ComponentDefinitionError(f"{where}: {config.__name__} must set extra='forbid'")
    return config


def _check_definition(cls: type[Component]) -> None:
    where = f"{cls.__module__}.{cls.__qualname__}"
    if not hasattr(cls, "kind"):
        raise ComponentDefinitionError(f"{where}: subclass a kind ABC (e.g. VisionWorkspace)")
    config = _check_names(cls)
    for sym, fld in cls.shape_symbols.items():
        if fld not in config.model_fields:
            raise ComponentDefinitionError(
                f"{where}: shape symbol {sym!r} maps to {fld!r}, not a field of {config.__name__}"
            )
    known = SHARED_SYMBOLS | set(cls.shape_symbols)
    for label, decl in (("inputs", cls.inputs), ("outputs", cls.outputs)):
        for key, shape in decl.items():
            bad = [s for s in shape if not isinstance(s, int) and s not in known]
            if bad:
                raise ComponentDefinitionError(
                    f"{where}: {label}[{key!r}] uses undeclared shape symbols {bad}; "
                    "map them in `shape_symbols`"
                )


def component_base(kind: str) -> type[Any]:
    """The ABC of a kind."""
    return _BASES[kind]


# -- kind ABCs -----------------------------------------------------------------


class VisionWorkspace(Component, kind="vision", abstract=True):
    """Vision workspace (paper §1): cameras + state (+ tau) -> vision and state tokens.

    ``forward(images (B,C,F,3,P,P), state (B,S_v), tau (B,E) | None) -> VisionOutput``
    where ``tau=None`` yields V_base and a tau yields V_mod. ``state`` is the robot
    state, followed by the privileged scene state when the spec's
    ``dims.environment_state_dim`` > 0 (``S_v = S + S_env``, ``dims.vision_state_dim``).
    """

    shape_symbols: ClassVar[Mapping[str, str]] = {
        "N_v": "num_queries",
        "N_s": "num_state_tokens",
    }
    inputs = {"images": ("B", "C", "F", 3, "P", "P"), "state": ("B", "S_v"), "tau": ("B", "E")}
    outputs = {"tokens": ("B", "N_v", "D"), "state_tokens": ("B", "N_s", "D")}

    @property
    def tau_sees_pixels(self) -> bool:
        """Whether tau enters the image encoding itself (not only the tokens after it): the
        tau pass then looks at the scene anew, and a policy that estimates its scene state
        estimates it again from the tau pass's tokens. Default False (the paper's FiLM)."""
        return False

    @abstractmethod
    def forward(self, images: Tensor, state: Tensor, tau: Tensor | None = None) -> VisionOutput:
        """Encode cameras and state; modulate vision tokens by ``tau`` when given."""

    def modulate(
        self, base: VisionOutput, images: Tensor, state: Tensor, tau: Tensor
    ) -> VisionOutput:
        """V_mod for ``tau`` given this workspace's tau = None output ``base`` (pass 2).

        Must equal ``forward(images, state, tau)``. The default recomputes it; a
        workspace whose tau only enters late (the paper's: modulator + block)
        overrides it to reuse ``base.reuse`` and skip the encoder.
        """
        return self(images, state, tau)

    def restate(self, base: VisionOutput, images: Tensor, state: Tensor) -> VisionOutput:
        """V_base for a new ``state`` given this workspace's tau = None output ``base``.

        Must equal ``forward(images, state)``. A spec whose scene state is estimated
        from the vision tokens (``model.scene_state: estimated``) encodes the images
        once, estimates the scene state from ``base.tokens``, then asks for the state
        tokens of [state; estimate]. The default recomputes everything; a workspace
        whose vision tokens do not read the state overrides it to re-encode the state only.
        """
        return self(images, state)

    def example_inputs(self, batch_size: int = 2, draw: int = 0) -> dict[str, Any]:
        inputs = super().example_inputs(batch_size, draw)
        inputs["images"] = inputs["images"].sigmoid()  # pixels live in [0, 1]
        return inputs


class Backbone(Component, kind="backbone", abstract=True):
    """Language backbone (paper §2): [text tokens; prefix tokens] -> hidden sequence.

    ``forward(input_ids (B,L_t) long, attention_mask (B,L_t), prefix (B,N_p,D))``
    returns hidden states (B, L_t + N_p, W) and their mask. The backbone owns the
    projection of D-wide prefix tokens into its width W and its LoRA adapter.
    """

    inputs = {"input_ids": ("B", "L"), "attention_mask": ("B", "L"), "prefix": ("B", "N_p", "D")}
    outputs = {"hidden": ("B", "L", "W"), "mask": ("B", "L")}

    @property
    @abstractmethod
    def hidden_size(self) -> int:
        """The backbone width W."""

    @abstractmethod
    def tokenize(self, texts: list[str]) -> tuple[Tensor, Tensor]:
        """Texts -> (input_ids (B, L_t) long, attention_mask (B, L_t) long) on this device."""

    @abstractmethod
    def forward(self, input_ids: Tensor, attention_mask: Tensor, prefix: Tensor) -> BackboneOutput:
        """Run the backbone over [embedded text; projected prefix]."""

    def symbols(self, batch_size: int) -> dict[str, int]:
        return super().symbols(batch_size) | {"W": self.hidden_size}

    def example_inputs(self, batch_size: int = 2, draw: int = 0) -> dict[str, Any]:
        ids, mask = self.tokenize([f"pick up cube {i}" * (i + 1) for i in range(batch_size)])
        prefix = torch.randn(batch_size, self.free_sizes(draw)["N_p"], self.dims.d_model)
        return {"input_ids": ids, "attention_mask": mask, "prefix": prefix}


MemoryFn = Callable[[Tensor, Tensor], Tensor]


class SemanticMemory(Component, kind="memory", abstract=True):
    """Semantic memory (paper §2): ``m_t = f(z_pool (B,D), m_{t-1} (B,D))``.

    The contract kit holds a memory to its promise: ``m_t`` depends on ``m_prev``
    and gradients flow through time, it is finite from :meth:`initial_state`
    and bounded over many steps. A memory without recurrence (an ablation)
    declares ``recurrent = False`` and is then checked to ignore ``m_prev``.
    """

    telepathy_params = ("",)
    #: ``m_t`` depends on ``m_prev`` (checked either way by the contract kit).
    recurrent: ClassVar[bool] = True

    inputs = {"z_pool": ("B", "D"), "m_prev": ("B", "D")}
    outputs = {"return": ("B", "D")}

    @abstractmethod
    def forward(self, z_pool: Tensor, m_prev: Tensor) -> Tensor:
        """Update the memory state."""

    def initial_state(self, batch_size: int, device: torch.device | str = "cpu") -> Tensor:
        """m_0: zeros (B, D)."""
        return torch.zeros(batch_size, self.dims.d_model, device=device)


class IntentWorkspace(Component, kind="intent", abstract=True):
    """Intent workspace (paper §2): hidden sequence -> Z_sem, m_t, z_intent, tau, high_level_rep.

    ``forward(hidden (B,L,W), mask (B,L), m_prev (B,D), memory)`` where ``memory``
    is the memory slot's component (called as ``memory(z_pool, m_prev)``).
    """

    shape_symbols: ClassVar[Mapping[str, str]] = {"K": "num_factors"}
    inputs = {"hidden": ("B", "L", "W"), "mask": ("B", "L"), "m_prev": ("B", "D")}
    outputs = {
        "z_sem": ("B", "K", "D"),
        "z_pool": ("B", "D"),
        "m_t": ("B", "D"),
        "c_env": ("B", "D"),
        "c_beh": ("B", "D"),
        "c_text": ("B", "D"),
        "z_intent": ("B", "D"),
        "tau": ("B", "E"),
        "high_level_rep": ("B", "D"),
    }

    @abstractmethod
    def forward(
        self, hidden: Tensor, mask: Tensor, m_prev: Tensor, memory: MemoryFn
    ) -> IntentOutput:
        """Read the backbone's hidden states into intent, memory and tau."""

    def __init__(self, config: BaseModel, dims: Dims, backbone_width: int | None = None) -> None:
        super().__init__(config, dims)
        #: W, the width of the hidden states this workspace reads (set by the assembler).
        self.backbone_width = backbone_width or dims.d_model

    def symbols(self, batch_size: int) -> dict[str, int]:
        return super().symbols(batch_size) | {"W": self.backbone_width}

    def example_inputs(self, batch_size: int = 2, draw: int = 0) -> dict[str, Any]:
        inputs = super().example_inputs(batch_size, draw)
        inputs["mask"] = torch.ones(batch_size, self.free_sizes(draw)["L"], dtype=torch.long)
        inputs["mask"][0, -2:] = 0  # exercise padding
        inputs["memory"] = lambda z, m: 0.5 * (z + m)
        return inputs


class ActionQuery(Component, kind="action.query", abstract=True):
    """Condition projector + query generator (paper §3).

    ``c_act = P(high_level_rep, tau)``; queries from learnable seeds that attend to
    the state (and vision) tokens, biased by c_act.
    """

    shape_symbols: ClassVar[Mapping[str, str]] = {"N_q": "num_queries"}
    inputs = {
        "high_level_rep": ("B", "D"),
        "tau": ("B", "E"),
        "state_tokens": ("B", "N_s", "D"),
        "vision_tokens": ("B", "N_v", "D"),
    }
    outputs = {"queries": ("B", "N_q", "D"), "c_act": ("B", "D")}

    @abstractmethod
    def forward(
        self, high_level_rep: Tensor, tau: Tensor, state_tokens: Tensor, vision_tokens: Tensor
    ) -> QueryOutput:
        """Project the condition and generate action queries."""


class _Branch(Component, kind=None, abstract=True):
    """Shared signature of the three action branches: (queries, c_act) -> actions."""

    shape_symbols: ClassVar[Mapping[str, str]] = {}
    inputs = {"queries": ("B", "N_q", "D"), "c_act": ("B", "D")}

    @abstractmethod
    def forward(self, queries: Tensor, c_act: Tensor) -> Tensor:
        """Predict actions from the action queries and condition."""

    def loss(self, queries: Tensor, c_act: Tensor, target: Tensor) -> Tensor:
        """Per-sample training loss (B,) of this branch alone (default: MSE).

        Stage ``base`` with ``train.losses.base_loss: native`` trains the branch by
        it (token cross-entropy, flow matching ...); the contract kit checks it is
        (B,), finite, reaches every trainable parameter and lowers on a toy target.
        """
        pred = self(queries, c_act)
        return (pred - target).pow(2).flatten(1).mean(1)

    def example_target(self, batch_size: int = 2) -> Tensor:
        """A random target shaped like the branch's output, for :meth:`loss`."""
        return torch.randn(resolve(self.outputs["return"], self.symbols(batch_size)))


class VectorBranch(_Branch, kind="action.vector", abstract=True):
    """Vector branch: one-step action (B, A)."""

    outputs = {"return": ("B", "A")}


class ChunkBranch(_Branch, kind="action.chunk", abstract=True):
    """Chunk branch: short-horizon chunk (B, H, A)."""

    outputs = {"return": ("B", "H", "A")}


class TrajectoryBranch(_Branch, kind="action.trajectory", abstract=True):
    """Trajectory branch: full-horizon trajectory (B, T, A).

    Stochastic samplers take ``noise`` (B, T, A) so that the tau and tau=0 passes
    can share it (the model always passes it); deterministic ones ignore it.
    """

    inputs = {"queries": ("B", "N_q", "D"), "c_act": ("B", "D"), "noise": ("B", "T", "A")}
    outputs = {"return": ("B", "T", "A")}

    @abstractmethod
    def forward(self, queries: Tensor, c_act: Tensor, noise: Tensor | None = None) -> Tensor:
        """Predict (or sample) the trajectory."""


class ResidualHead(Component, kind="residual", abstract=True):
    """Residual heads (paper §3): ``delta_a = g([high_level_rep, tau])`` for each branch."""

    telepathy_params = ("",)

    inputs = {"high_level_rep": ("B", "D"), "tau": ("B", "E")}
    outputs = {"vector": ("B", "A"), "chunk": ("B", "H", "A"), "trajectory": ("B", "T", "A")}

    @abstractmethod
    def forward(self, high_level_rep: Tensor, tau: Tensor) -> ActionSet:
        """Residual corrections at the three scales."""


class Fusion(Component, kind="fusion", abstract=True):
    """Fusion phi (paper §3): vector, chunk and trajectory -> one (B, H, A) plan."""

    inputs = {"vector": ("B", "A"), "chunk": ("B", "H", "A"), "trajectory": ("B", "T", "A")}
    outputs = {"return": ("B", "H", "A")}

    @abstractmethod
    def forward(self, vector: Tensor, chunk: Tensor, trajectory: Tensor) -> Tensor:
        """Fuse the three scales into an executable plan."""


class Controller(Component, kind="controller", abstract=True):
    """Low-level controller (paper §3): plan -> motor commands within joint limits."""

    inputs = {"plan": ("B", "H", "A")}
    outputs = {"return": ("B", "H", "A")}

    @abstractmethod
    def forward(self, plan: Tensor, previous: Tensor | None = None) -> Tensor:
        """Limit (and optionally smooth from ``previous`` (B, A)) the plan."""


class InferenceAdapter(Component, kind="adapter", abstract=True):
    """Inference adapter (paper §5): ``a = a_base + scale · Δa`` with a per-sample scale.

    ``forward(base, residual, tau, c_act) -> AdapterOutput(scale (B,), risk (B,))``
    on finite inputs. :meth:`apply` is what inference calls: it applies the scale
    to every action scale, and any sample whose Δa (at any scale), τ or c_act
    holds NaN/inf gets exactly its base action (the other samples are unaffected),
    counted in ``AdapterOutput.fallback``.
    """

    inputs = {
        "base": ("B", "A"),
        "residual": ("B", "A"),
        "tau": ("B", "E"),
        "c_act": ("B", "D"),
    }
    outputs = {"scale": ("B",), "risk": ("B",)}

    @abstractmethod
    def forward(self, base: Tensor, residual: Tensor, tau: Tensor, c_act: Tensor) -> AdapterOutput:
        """The per-sample residual scale in [min_scale, max_scale] and its risk."""

    def apply(
        self, base: ActionSet, residual: ActionSet, tau: Tensor, c_act: Tensor
    ) -> tuple[ActionSet, AdapterOutput]:
        """``a = a_base + scale · Δa`` at every scale; non-finite samples get ``a_base``."""

        def finite(x: Tensor) -> Tensor:
            return torch.isfinite(x).flatten(1).all(1)

        ok = finite(tau) & finite(c_act)
        for r in (residual.vector, residual.chunk, residual.trajectory):
            ok = ok & finite(r)

        def clean(x: Tensor) -> Tensor:
            return torch.where(_rows(ok, x), x, torch.zeros_like(x))

        out = self(base.vector, clean(residual.vector), clean(tau), clean(c_act))
        scale = torch.where(ok, out.scale, torch.zeros_like(out.scale))

        def adapt(a: Tensor, r: Tensor) -> Tensor:
            scaled = a + scale.view(-1, *([1] * (r.ndim - 1))) * clean(r)
            return torch.where(_rows(ok, a), scaled, a)  # the base, bit for bit

        actions = ActionSet(
            adapt(base.vector, residual.vector),
            adapt(base.chunk, residual.chunk),
            adapt(base.trajectory, residual.trajectory),
        )
        return actions, AdapterOutput(scale, out.risk, ~ok)


def _rows(mask: Tensor, like: Tensor) -> Tensor:
    """A (B,) mask broadcast over the trailing dimensions of ``like``."""
    return mask.view(-1, *([1] * (like.ndim - 1)))


class BasePolicy(Component, kind="base_policy", abstract=True):
    """Source of a_base. Returns ``None`` to use the model's own tau=0 path."""

    inputs = {}
    outputs = {}

    @abstractmethod
    def forward(self, batch: SigmaBatch) -> ActionSet | None:
        """Base actions for ``batch``, or ``None`` for the internal tau=0 path."""

    def set_data_stats(self, stats: Mapping[str, Mapping[str, Sequence[float]]]) -> None:
        """Receive the data's statistics (meta.json ``stats``) before the first batch.

        Sigma's batches and actions are normalised ``(x − mean) / std``; a base
        policy that works in dataset units (an external policy such as π0.5)
        keeps the ``"observation.state"`` and ``"action"`` statistics it needs in
        buffers, so that checkpoints carry them. Default: nothing.
        """

    def example_inputs(self, batch_size: int = 2, draw: int = 0) -> dict[str, Any]:
        d = self.dims
        p = d.image_size
        images = torch.rand(batch_size, len(d.cameras), d.frame_history, 3, p, p)
        state = torch.randn(batch_size, d.state_dim)
        return {"batch": SigmaBatch(images, state, ["task"] * batch_size)}


class DataSource(metaclass=ABCMeta):
    """A producer of LeRobot datasets (kind ``data_source``), e.g. a simulator with an expert.

    Not a torch module: it writes files rather than mapping tensors, so it has a
    contract of its own (:class:`sigma_core.testing.DataSourceContract`): it
    builds from its contract config, the same seed writes the same episodes, the
    result is a dataset LeRobot reads back, and a second call with more episodes
    resumes the first one's output instead of starting over.

    Subclasses set ``name`` and ``config_class`` (checked at definition, like
    components) and implement :meth:`write`.
    """

    kind: ClassVar[str] = "data_source"
    name: ClassVar[str]
    config_class: ClassVar[type[BaseModel]]

    def __init_subclass__(cls, abstract: bool = False, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if not abstract:
            _check_names(cls)

    def __init__(self, config: BaseModel) -> None:
        if not isinstance(config, self.config_class):
            raise TypeError(f"{self.name}: config must be {self.config_class.__name__}")
        self.config = config

    @classmethod
    def contract_config(cls, workdir: Path | None = None) -> BaseModel:
        """The config the contract kit writes with (default: the config's defaults)."""
        return cls.config_class()

    @abstractmethod
    def write(
        self, out_dir: str | Path, episodes: int, seed: int = 0, progress: bool = True
    ) -> dict[str, Any]:
        """Make ``out_dir`` hold ``episodes`` episodes (resuming what is there); summary dict.

        The summary has at least ``episodes`` (the count now in ``out_dir``) and
        ``repo_id`` (to open it with ``LeRobotDataset(repo_id, root=out_dir)``).
        """


_BASES["data_source"] = DataSource
