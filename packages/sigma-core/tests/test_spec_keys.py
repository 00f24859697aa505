"""Every key of the run spec has code that reads it (a key nothing reads is a bug).

For each field of the spec's section models, the sources of every package must
read it through that section (``train.lr``, ``data.num_workers``, ``cfg.eta``,
``spec.eval.split`` ...). A key listed as pending must stay unread: the test
fails once it is read, so the list cannot go stale.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel

from sigma_core.config import Dims
from sigma_core.kinds import MODEL_SLOTS
from sigma_core.spec import DataSpec, EvalSpec, LossConfig, ModelSpec, Ramp, SigmaSpec, TrainSpec

REPO = Path(__file__).resolve().parents[3]
SOURCES = "\n".join(p.read_text() for p in sorted(REPO.glob("packages/*/src/**/*.py")))

#: section model -> the names code reads it through
ACCESSORS: dict[type[BaseModel], tuple[str, ...]] = {
    SigmaSpec: ("spec",),
    ModelSpec: ("model",),
    Dims: ("dims",),
    DataSpec: ("data",),
    TrainSpec: ("train",),
    LossConfig: ("cfg", "losses"),
    Ramp: ("self",),
    EvalSpec: ("eval",),
}
PENDING: set[str] = set()


def unread() -> set[str]:
    missing = set()
    for model, names in ACCESSORS.items():
        for field in model.model_fields:
            if model is ModelSpec and field in MODEL_SLOTS:
                continue  # slots are read by name through MODEL_SLOTS (checked below)
            pattern = rf"\b(?:{'|'.join(names)})\.{field}\b"
            if not re.search(pattern, SOURCES):
                missing.add(f"{model.__name__}.{field}")
    return missing


def test_every_spec_key_is_read() -> None:
    assert unread() == PENDING


def test_model_slots_are_the_model_sections_components() -> None:
    flags = {"dims", "telepathy", "scene_state", "scene_correction", "tau_route"}
    assert set(ModelSpec.model_fields) - flags == set(MODEL_SLOTS)


def test_every_section_model_is_checked() -> None:
    def sections(model: type[BaseModel]) -> set[type[BaseModel]]:
        out = {model}
        for info in model.model_fields.values():
            t = info.annotation
            if isinstance(t, type) and issubclass(t, BaseModel) and t.__name__ != "ComponentRef":
                out |= sections(t)
        return out

    assert sections(SigmaSpec) == set(ACCESSORS)
