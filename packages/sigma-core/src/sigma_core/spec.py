"""The run spec: one YAML file -> pydantic models -> (later) a model.

Layout::

    model:                  # one entry per slot: {type: <registered name>, ...params}
      dims: {d_model: 64, action_dim: 6, ...}
      vision: {type: perceiver, num_queries: 16}
      ...
    base_policy: {type: internal}
    data: {...}
    train: {...}
    eval: {...}

Unknown keys are errors everywhere, including inside component parameters
(every registered config forbids extras). :func:`validate_spec` collects *every*
problem before raising, each with its dotted key path and YAML line, and never
imports torch, so ``sigma build --dry-run`` stays light.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveInt,
    ValidationError,
    model_validator,
)

from sigma_core import config
from sigma_core._deprecated import moved_names
from sigma_core.errors import SigmaUserError, SpecError, SpecProblem
from sigma_core.kinds import MODEL_SLOTS
from sigma_core.plugins.registry import (
    Registry,
    closest,
    get_registry,
    unknown_component_message,
)

# StrictModel and Dims live in sigma_core.config since 0.2
__getattr__ = moved_names(
    __name__, {"StrictModel": "sigma_core.config", "Dims": "sigma_core.config"}
)


class ComponentRef(BaseModel):
    """A slot entry ``{type: name, [from: distribution,] ...params}``.

    ``params`` are validated by the component's config. ``from`` picks the
    provider when two installed plugins register the same name (a clash); the
    resolved spec records it for every clashed name.
    """

    model_config = ConfigDict(extra="allow")

    type: str

    @property
    def params(self) -> dict[str, Any]:
        """The component parameters (everything but ``type`` and ``from``)."""
        return {k: v for k, v in (self.model_extra or {}).items() if k != "from"}

    @property
    def provider(self) -> str | None:
        """The ``from:`` distribution, if the spec pins one."""
        return (self.model_extra or {}).get("from")


def _ref(name: str) -> Any:
    return Field(default_factory=lambda: ComponentRef(type=name))


class ModelSpec(config.StrictModel):
    """The ``model:`` section: shared dims and one component per slot."""

    dims: config.Dims = Field(default_factory=config.Dims)
    telepathy: bool = Field(
        True,
        description="the telepathy pathway; false: tau = 0 everywhere (no FiLM, no"
        " tau-conditioned queries), so a = a_base + g([high_level_rep, 0]): the LoRA-only"
        " control (LoRA + residual heads, configs/control-lora-only.yaml)",
    )
    scene_state: Literal["observed", "estimated"] = Field(
        "observed",
        description="where the scene state that the vision's state encoder reads"
        " (dims.environment_state_dim > 0) comes from: observed = observation.environment_state"
        " (an oracle: privileged at inference); estimated = s_hat = head(mean V_base), the"
        " auxiliary head's estimate from the cameras (needs dims.auxiliary_state_dim equal to"
        " it; the truth supervises s_hat and, with probability train.teacher_forcing, stands"
        " in for it while the base trains; inference reads the cameras only)",
    )
    scene_correction: bool = Field(
        False,
        description="with scene_state: estimated, the telepathy path corrects the frozen"
        " base's scene estimate: s_tau = s_hat + C([attn(W_q tau, V_mod); tau; s_hat]), trained"
        " in stage sigma by lambda_state * L_state(s_tau, observation.environment_state) (the"
        " named cube's truth, training only) and L_act; the tau pass's state tokens read"
        " s_tau, so the instruction selects the cube in the base's own state space"
        " (docs/paper.md, deviations); the tau = 0 path stays the base's",
    )
    tau_route: Literal["all", "vision"] = Field(
        "all",
        description="how tau reaches the actions. all (the paper): through the vision"
        " (FiLM / tau stem), the tau-conditioned queries (high_level_rep, tau) and the"
        " residual heads, delta_a = (a_tau - a_0) + g([high_level_rep, tau]). vision: through"
        " the vision only: the tau pass's queries read (c_text, tau = 0) as a_0's do and the"
        " residual heads are not used, delta_a = a_tau - a_0, so a_tau is the base's own"
        " policy reading the tau pass's vision (configs/sigma-declutter.yaml; docs/paper.md)",
    )
    vision: ComponentRef = _ref("perceiver")
    backbone: ComponentRef = _ref("tiny")
    memory: ComponentRef = _ref("gated")
    intent: ComponentRef = _ref("sigma")
    query: ComponentRef = _ref("sigma")
    vector: ComponentRef = _ref("token")
    chunk: ComponentRef = _ref("chunk-pooling")
    trajectory: ComponentRef = _ref("mlp")
    residual: ComponentRef = _ref("mlp")
    fusion: ComponentRef = _ref("weighted")
    controller: ComponentRef = _ref("clip")
    adapter: ComponentRef = _ref("risk")

    @model_validator(mode="after")
    def _estimated_scene_state(self) -> ModelSpec:
        e, a = self.dims.environment_state_dim, self.dims.auxiliary_state_dim
        if self.scene_state == "estimated" and not (e and a):
            raise ValueError(
                "model.scene_state: estimated feeds the auxiliary head's estimate to the"
                " vision's state encoder: it needs model.dims.environment_state_dim and"
                f" auxiliary_state_dim, equal and > 0 (got {e} and {a})"
            )
        if self.tau_route == "vision" and not self.telepathy:
            raise ValueError(
                "model.tau_route: vision routes tau through the vision on the telepathy path:"
                " it needs model.telepathy: true"
            )
        if self.scene_correction and not (self.scene_state == "estimated" and self.telepathy):
            raise ValueError(
                "model.scene_correction corrects the estimated scene state on the telepathy"
                " path: it needs model.scene_state: estimated and model.telepathy: true (got"
                f" {self.scene_state} and {self.telepathy})"
            )
        return self

    @property
    def observed_scene_state_dim(self) -> int:
        """Width of observation.environment_state the policy reads at inference (0 when
        it reads none, or estimates it from its cameras)."""
        return self.dims.environment_state_dim if self.scene_state == "observed" else 0


class DataSpec(config.StrictModel):
    """The ``data:`` section (preprocessed shards)."""

    path: str | None = Field(None, description="directory of preprocessed shards")
    batch_size: PositiveInt = Field(8, description="windows per micro-batch and process")
    num_workers: int = Field(
        0,
        ge=0,
        description="DataLoader worker processes for training and validation; 0 loads"
        " in the training process",
    )
    run_length: PositiveInt = Field(
        1,
        description="K: each batch row is a run of K consecutive windows of one episode, the"
        " memory unrolled across them (m_t of window k is m_prev of window k+1); 1 = windows"
        " on their own, from m_0",
    )
    run_stride: PositiveInt | None = Field(
        None,
        description="frames between the windows of a run: the replanning stride (default"
        " model.dims.chunk_horizon, what SigmaPolicy.step executes per plan); at most H_c",
    )
    actions: Literal["absolute", "relative"] = Field(
        "absolute",
        description="what the policy predicts: absolute joint targets (the paper's), or"
        " relative = targets minus the observation's state, normalized by their own"
        " statistics (sigma_core.data.actions); executed actions are absolute either way",
    )


class Ramp(config.StrictModel):
    """A weight that goes linearly from ``start`` to ``target``, then stays there.

    The ramp lasts ``until`` x ``train.steps`` optimizer steps (a fraction of the
    run, so it scales with ``--steps``), or ``steps`` steps when ``until`` is
    not set; 0 steps means ``target`` from the start.
    ``w(t) = start + (target − start)·min(t / n, 1)``.
    """

    start: float = 0.0
    target: float = 1.0
    steps: NonNegativeInt = Field(0, description="ramp length in steps (when until is unset)")
    until: float | None = Field(
        None, ge=0, le=1, description="ramp length as a fraction of train.steps"
    )

    def length(self, total_steps: int) -> int:
        """The ramp's length in optimizer steps for a run of ``total_steps``."""
        return self.steps if self.until is None else round(self.until * total_steps)

    def __call__(self, step: int, total_steps: int) -> float:
        n = self.length(total_steps)
        if n == 0 or step >= n:
            return self.target
        return self.start + (self.target - self.start) * max(step, 0) / n


def _paper_ramp(start: float, target: float) -> Any:
    # Table 1 (300 steps): the weights reach their targets at about global step 82
    return Field(default_factory=lambda: Ramp(start=start, target=target, until=0.275))


class LossConfig(config.StrictModel):
    """Weights and constants of TRAF and TSAC (defaults: the paper's where it gives them)."""

    alpha_vec: float = Field(1.0, ge=0, description="α_a")
    alpha_chk: float = Field(1.0, ge=0, description="α_b")
    alpha_trj: float = Field(1.0, ge=0, description="α_c")
    hard_ratio: float = Field(0.3, gt=0, le=1, description="ρ, the hard-set fraction")
    lambda_hard: float = Field(0.5, ge=0, description="λ_hard")
    beta_mi: float = Field(0.1, ge=0, description="β_mi, the InfoNCE weight in L_sem")
    temperature: float = Field(0.1, gt=0, description="InfoNCE temperature T")
    tau_l2: float = Field(0.01, ge=0, description="c_2 on ‖τ‖²")
    tau_l2_reduction: Literal["sum", "mean"] = Field(
        "sum",
        description="‖τ‖² as printed (sum over dimensions), or its mean over dimensions,"
        " which fits Table 1's L_tau magnitudes better (docs/paper.md)",
    )
    lambda_collapse: float = Field(1.0, ge=0, description="λ_collapse")
    tau0: float = Field(1.0, ge=0, description="τ0, the minimum norm before collapse is penalised")
    eta: float = Field(0.1, ge=0, description="η on 1 − cos(τ, c_act)")
    lambda_fuse: float = Field(
        1.0,
        ge=0,
        description="stage base: weight of L_fuse = MSE(fusion(sg(a)), a*_chunk), which fits"
        " the fusion weights on the detached branch outputs (the branches' losses are unchanged)",
    )
    lambda_state: float = Field(
        1.0,
        ge=0,
        description="stage base, with model.dims.auxiliary_state_dim > 0: weight of L_state ="
        " MSE(head(mean V_base), s_env), the privileged scene state predicted from the vision"
        " tokens (normalized)",
    )
    state_weights: list[float] | None = Field(
        None,
        description="stage base, with model.dims.auxiliary_state_dim > 0: per-entry weights"
        " w of L_state = sum_i w_i MSE_i / sum_i w_i (default all 1: the plain mean); with"
        " model.scene_state: estimated, an entry of weight 0 is not read (0, its mean)",
    )
    base_loss: Literal["mse", "native"] = Field(
        "mse",
        description="stage base: mse = TRAF on the decoded actions (the paper); native ="
        " each branch's own per-sample loss (token cross-entropy, flow matching) in TRAF's"
        " weighting and hard set",
    )
    w_sem: Ramp = _paper_ramp(0.1, 1.0)
    w_intent: Ramp = _paper_ramp(0.1, 0.8)
    w_tau: Ramp = _paper_ramp(0.0, 0.03)


class TrainSpec(config.StrictModel):
    """The ``train:`` section."""

    stage: Literal["base", "sigma"] = "sigma"
    steps: PositiveInt = 300
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    grad_accum: PositiveInt = 1
    max_grad_norm: float = Field(1.0, gt=0)
    warmup_steps: int = Field(10, ge=0, description="linear warm-up, then cosine decay")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="cosine floor, fraction of lr")
    seed: int = 0
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="bf16 autocast; auto = bf16 on a GPU that supports it, else fp32"
    )
    losses: LossConfig = Field(default_factory=LossConfig, description="TRAF/TSAC weights")
    teacher_forcing: float = Field(
        0.5,
        ge=0,
        le=1,
        description="stage base with model.scene_state: estimated: probability, per window,"
        " that the vision's state encoder reads the observed scene state instead of the"
        " (detached) estimate s_hat; 1: the policy learns from the truth only, 0: from its"
        " own estimates only",
    )
    teacher_noise: float = Field(
        0.0,
        ge=0,
        description="stage base with model.scene_state: estimated: standard deviation"
        " (normalized units) of Gaussian noise added to the observed scene state where it"
        " stands in for s_hat (train.teacher_forcing), so that a policy that learns from the"
        " truth also learns to act on an imprecise estimate (noise injection, as DART does"
        " for actions); 0: the exact truth",
    )
    init_from: str | None = Field(
        None,
        description="saved policy whose tensors initialise every parameter of the same name"
        " and shape; stage sigma defaults to the base_policy checkpoint's path",
    )
    allow_random_base: bool = Field(
        False,
        description="let stage sigma train on a frozen tau = 0 path that no trained weights"
        " initialise (no init_from, base_policy internal): only for smoke tests and for"
        " recipes waiting for their base's weights",
    )


class EvalSpec(config.StrictModel):
    """The ``eval:`` section: defaults of ``sigma eval`` (the first policy's spec is read)."""

    split: Literal["val", "test"] = Field("test", description="held-out split to replay")
    batch_size: PositiveInt = Field(16, description="windows per batch of the CHECK B table")


class SigmaSpec(config.StrictModel):
    """A whole run file."""

    model: ModelSpec = Field(default_factory=ModelSpec)
    base_policy: ComponentRef = _ref("internal")
    data: DataSpec = Field(default_factory=DataSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
    eval: EvalSpec = Field(default_factory=EvalSpec)

    @model_validator(mode="after")
    def _run_stride_fits_a_chunk(self) -> SigmaSpec:
        stride, horizon = self.data.run_stride, self.model.dims.chunk_horizon
        if stride is not None and stride > horizon:
            raise ValueError(
                f"data.run_stride {stride} exceeds model.dims.chunk_horizon {horizon}:"
                " a plan holds H_c actions, so replanning cannot wait longer"
            )
        return self

    @model_validator(mode="after")
    def _state_weights_fit(self) -> SigmaSpec:
        weights, width = self.train.losses.state_weights, self.model.dims.auxiliary_state_dim
        if weights is not None and (len(weights) != width or min(weights) < 0 or not any(weights)):
            raise ValueError(
                f"train.losses.state_weights: {len(weights)} weights for"
                f" model.dims.auxiliary_state_dim={width}; give one weight >= 0 per entry,"
                " not all 0"
            )
        return self

    def run_stride(self) -> int:
        """Frames between the windows of a training run (``data.run_stride`` or H_c)."""
        return self.data.run_stride or self.model.dims.chunk_horizon

    def slots(self) -> dict[str, tuple[str, ComponentRef]]:
        """Every component slot: slot path -> (kind, ref), in model order."""
        out = {f"model.{s}": (k, getattr(self.model, s)) for s, k in MODEL_SLOTS.items()}
        out["base_policy"] = ("base_policy", self.base_policy)
        return out


# -- YAML with line numbers ---------------------------------------------------
Path_ = tuple[str | int, ...]


def _node_lines(node: yaml.Node, path: Path_, lines: dict[Path_, int]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            sub = (*path, key.value)
            lines[sub] = key.start_mark.line + 1
            _node_lines(value, sub, lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _node_lines(item, (*path, i), lines)


def load_yaml(path: str | Path) -> tuple[Any, dict[Path_, int]]:
    """Read a YAML file, returning the data and a map from key path to line number.

    Raises:
        SigmaUserError: the file is missing or unreadable.
        SpecError: the YAML does not parse (with the line of the syntax error).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SigmaUserError(f"spec file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SigmaUserError(f"cannot read spec file {path}: {exc}") from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        line = mark.line + 1 if mark is not None else None
        raise SpecError(
            str(path), [SpecProblem("", f"YAML syntax error: {problem}", line)]
        ) from exc
    lines: dict[Path_, int] = {}
    if node is not None:
        _node_lines(node, (), lines)
        duplicates = _duplicate_keys(node, ())
        if duplicates:  # YAML keeps the last silently; a spec that says two things is an error
            raise SpecError(str(path), duplicates)
    return data, lines


def _duplicate_keys(node: yaml.Node, path: Path_) -> list[SpecProblem]:
    """Every key that appears twice in one mapping, at its second line."""
    out: list[SpecProblem] = []
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key, value in node.value:
            line = key.start_mark.line + 1
            if key.value in seen:
                message = (
                    f"duplicate key (also on line {seen[key.value]}); YAML would keep this one"
                )
                out.append(SpecProblem(_dotted((*path, key.value)), message, line))
            seen.setdefault(key.value, line)
            out += _duplicate_keys(value, (*path, key.value))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out += _duplicate_keys(item, (*path, i))
    return out


def _line_for(loc: Path_, lines: Mapping[Path_, int]) -> int | None:
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None


def _dotted(loc: Path_) -> str:
    return ".".join(str(p) for p in loc)


def _pydantic_problems(
    exc: ValidationError,
    prefix: Path_,
    lines: Mapping[Path_, int],
    fields: list[str] | None = None,
) -> list[SpecProblem]:
    """Problems of a pydantic error; ``fields``: the known keys, for a did-you-mean."""
    out = []
    for err in exc.errors(include_url=False):
        loc = (*prefix, *err["loc"])
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
            best = closest(str(err["loc"][-1]), fields) if fields and len(err["loc"]) == 1 else None
            if best:
                msg += f"; did you mean {best!r}?"
        elif err["type"] != "missing" and "input" in err and not isinstance(err["input"], dict):
            msg = f"{msg} (got {err['input']!r})"
        out.append(SpecProblem(_dotted(loc), msg, _line_for(loc, lines)))
    return out


def _component_problems(
    raw: Mapping[str, Any], registry: Registry, lines: Mapping[Path_, int]
) -> tuple[list[SpecProblem], dict[Path_, ComponentRef]]:
    """Check every slot's ``type`` against the registry and its params against the config."""
    problems: list[SpecProblem] = []
    resolved: dict[Path_, ComponentRef] = {}
    defaults = SigmaSpec()
    model = raw.get("model") if isinstance(raw.get("model"), Mapping) else {}
    for slot_path, (kind, default) in defaults.slots().items():
        loc: Path_ = tuple(slot_path.split("."))
        container = model if loc[0] == "model" else raw
        entry = container.get(loc[-1], {"type": default.type})  # omitted slot: its default
        if not isinstance(entry, Mapping) or not isinstance(entry.get("type"), str):
            continue  # structural validation reports this one
        name = entry["type"]
        if (kind, name) not in registry:
            problems.append(
                SpecProblem(
                    _dotted((*loc, "type")),
                    unknown_component_message(registry, kind, name),
                    _line_for((*loc, "type"), lines),
                )
            )
            continue
        provider = entry.get("from")
        try:
            info = registry.get(kind, name, provider)
        except SigmaUserError as exc:
            problems.append(SpecProblem(_dotted((*loc, "from")), str(exc), _line_for(loc, lines)))
            continue
        params = {k: v for k, v in entry.items() if k not in ("type", "from")}
        try:
            config = info.config_class.model_validate(params)
        except ValidationError as exc:
            found = _pydantic_problems(exc, loc, lines, fields=list(info.config_class.model_fields))
            clash = registry.clash(kind, name)
            if clash is not None and provider is None:  # the error may come from the clash
                for p in found:
                    p.message += f" ({clash.message()})"
            problems += found
            continue
        pin = (
            {"from": info.distribution or info.plugin}
            if provider or registry.clash(kind, name)
            else {}
        )
        resolved[loc] = ComponentRef(type=name, **pin, **config.model_dump(mode="json"))
    return problems, resolved


def validate_spec(
    raw: Any,
    registry: Registry,
    *,
    source: str = "<spec>",
    lines: Mapping[Path_, int] | None = None,
) -> SigmaSpec:
    """Validate a parsed spec and resolve every component's parameters (defaults filled).

    Raises:
        SpecError: listing every problem found, each with key path and line.
    """
    lines = lines or {}
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise SpecError(source, [SpecProblem("", "the spec must be a mapping of sections", 1)])
    problems: list[SpecProblem] = []
    spec: SigmaSpec | None = None
    try:
        spec = SigmaSpec.model_validate(raw)
    except ValidationError as exc:
        problems += _pydantic_problems(exc, (), lines)
    comp_problems, resolved = _component_problems(raw, registry, lines)
    seen = {p.path for p in problems}
    problems += [p for p in comp_problems if p.path not in seen]
    if problems or spec is None:
        problems.sort(key=lambda p: (p.line or 0, p.path))
        raise SpecError(source, problems)
    for loc, ref in resolved.items():
        owner = spec.model if loc[0] == "model" else spec
        setattr(owner, loc[-1], ref)
    return spec


def load_spec(path: str | Path, registry: Registry | None = None) -> SigmaSpec:
    """Read, validate and resolve a spec file against the (installed) registry."""
    if registry is None:
        registry = get_registry()
    raw, lines = load_yaml(path)
    return validate_spec(raw, registry, source=str(path), lines=lines)
