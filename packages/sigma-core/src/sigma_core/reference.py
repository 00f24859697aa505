"""The run spec described from its own models: a JSON Schema for editors, a Markdown reference.

Both are generated from the pydantic models (the sections in :mod:`sigma_core.spec`,
and every registered component's config), so they cannot drift from what
:func:`~sigma_core.spec.validate_spec` accepts. ``sigma spec --schema`` prints the
schema (YAML language servers read it: ``# yaml-language-server: $schema=...``);
``sigma spec --reference`` prints the Markdown that ``docs/spec.md`` holds (a
test fails when that file is stale).
"""

from __future__ import annotations

import json
import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from sigma_core.kinds import KINDS, MODEL_SLOTS
from sigma_core.plugins.registry import Registry
from sigma_core.spec import ModelSpec, SigmaSpec

SCHEMA_ID = "urn:sigma-vla:run-spec"


def _component_schemas(registry: Registry, kind: str, defs: dict[str, Any]) -> list[Any]:
    """One object schema per component of ``kind``: ``type`` fixed, its config's keys."""
    out = []
    for info in registry.components():
        if info.kind != kind:
            continue
        schema = info.config_class.model_json_schema(ref_template="#/$defs/{model}")
        defs.update(schema.pop("$defs", {}))
        props = {
            "type": {"const": info.name, "description": f"{kind} {info.name!r}"},
            "from": {"type": "string", "description": "pin the providing distribution"},
            **schema.get("properties", {}),
        }
        out.append(
            {
                "type": "object",
                "title": f"{kind}: {info.name}",
                "properties": props,
                "required": ["type", *schema.get("required", [])],
                "additionalProperties": False,
            }
        )
    return out


def spec_schema(registry: Registry) -> dict[str, Any]:
    """The JSON Schema of a run file, each slot a ``oneOf`` over its registered components."""
    schema = SigmaSpec.model_json_schema(ref_template="#/$defs/{model}")
    defs = schema.setdefault("$defs", {})
    model = defs["ModelSpec"]["properties"]
    for slot, kind in MODEL_SLOTS.items():
        model[slot] = {"oneOf": _component_schemas(registry, kind, defs)}
    schema["properties"]["base_policy"] = {
        "oneOf": _component_schemas(registry, "base_policy", defs)
    }
    defs.pop("ComponentRef", None)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _type_name(typing.get_args(annotation)[0])
    if origin is typing.Literal:
        return " \\| ".join(repr(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(annotation))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation))


def _default(field: FieldInfo) -> str:
    if field.default is not PydanticUndefined:
        value = field.default
    elif field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    else:
        return "required"
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json", exclude_defaults=False)
    return f"`{json.dumps(value)}`"


def _table(model: type[BaseModel], prefix: str) -> list[str]:
    rows = ["| key | type | default | description |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        desc = (field.description or "").replace("|", "\\|").replace("\n", " ")
        bounds = [
            f"{k} {getattr(m, k)}"
            for m in field.metadata
            for k in ("gt", "ge", "lt", "le")
            if getattr(m, k, None) is not None
        ]
        if bounds:
            desc = f"{desc} ({', '.join(bounds)})".strip()
        rows.append(
            f"| `{prefix}{name}` | {_type_name(field.annotation)} | {_default(field)} | {desc} |"
        )
    return rows


def _sections() -> list[tuple[str, type[BaseModel]]]:
    from sigma_core.config import Dims
    from sigma_core.spec import DataSpec, EvalSpec, LossConfig, ModelSpec, Ramp, TrainSpec

    return [
        ("model", ModelSpec),
        ("model.dims", Dims),
        ("data", DataSpec),
        ("train", TrainSpec),
        ("train.losses", LossConfig),
        ("train.losses.w_* (a Ramp)", Ramp),
        ("eval", EvalSpec),
    ]


def spec_reference(registry: Registry) -> str:
    """``docs/spec.md``: every section, key, type, default and description; every component."""
    lines = [
        "# The run spec, key by key",
        "",
        "Generated by `sigma spec --reference` from the pydantic models; do not edit",
        "(`tests/test_docs.py` fails when it is stale). Unknown keys are errors everywhere.",
        "`sigma spec --schema` prints the same as JSON Schema for editors.",
        "",
        "A slot is `{type: <name>, [from: <distribution>,] ...parameters}`; its parameters",
        "are the component's, listed under [Components](#components).",
        "",
    ]
    for title, model in _sections():
        prefix = "" if " " in title else f"{title}."
        lines += [f"## `{title}`", "", (model.__doc__ or "").strip().split("\n\n")[0], ""]
        if model.__name__ == "ModelSpec":
            slots = ", ".join(f"`{s}` ({k})" for s, k in MODEL_SLOTS.items())
            lines += [f"Slots: {slots}; `base_policy` is a top-level slot.", ""]
            lines += _table_of_dims_only(prefix)
        else:
            lines += _table(model, prefix)
        lines.append("")
    lines += ["## Components", ""]
    for kind in KINDS:
        for info in (c for c in registry.components() if c.kind == kind):
            where = f"{info.distribution} {info.version}" if info.distribution else info.plugin
            doc = (info.config_class.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
            lines += [f"### `{kind}: {info.name}`", "", f"From {where}. {doc}".strip(), ""]
            lines += (
                _table(info.config_class, "")
                if info.config_class.model_fields
                else ["No parameters."]
            )
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _table_of_dims_only(prefix: str) -> list[str]:
    defaults = SigmaSpec().model
    telepathy = ModelSpec.model_fields["telepathy"].description
    scene_state = ModelSpec.model_fields["scene_state"].description
    correction = ModelSpec.model_fields["scene_correction"].description
    route = ModelSpec.model_fields["tau_route"].description
    return [
        "| key | type | default | description |",
        "|---|---|---|---|",
        f"| `{prefix}dims` | Dims | see `model.dims` | shared sizes |",
        f"| `{prefix}telepathy` | bool | `true` | {telepathy} |",
        f"| `{prefix}scene_state` | 'observed' \\| 'estimated' | `\"observed\"` | {scene_state} |",
        f"| `{prefix}scene_correction` | bool | `false` | {correction} |",
        f"| `{prefix}tau_route` | 'all' \\| 'vision' | `\"all\"` | {route} |",
        *(
            f"| `{prefix}{slot}` | component | `{{type: {getattr(defaults, slot).type}}}` |"
            f" a registered {kind} |"
            for slot, kind in MODEL_SLOTS.items()
        ),
    ]
