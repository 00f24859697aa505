"""Spec: defaults, resolution, and every error reported at once with its line."""

from __future__ import annotations

import pytest

from sigma_core.errors import SigmaUserError, SpecError
from sigma_core.plugins.registry import get_registry
from sigma_core.spec import SigmaSpec, load_spec, load_yaml, validate_spec


def write(tmp_path, text: str):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def problems(path) -> dict[str, tuple[int | None, str]]:
    return problems_with(path, None)


def problems_with(path, registry) -> dict[str, tuple[int | None, str]]:
    with pytest.raises(SpecError) as exc:
        load_spec(path, registry)
    return {p.path: (p.line, p.message) for p in exc.value.problems}


def test_empty_spec_resolves_every_slot_with_defaults(tmp_path):
    spec = load_spec(write(tmp_path, ""))
    assert isinstance(spec, SigmaSpec)
    assert spec.model.vision.type == "perceiver"
    assert spec.model.vision.params["num_queries"] == 16  # default filled in
    assert set(spec.slots()) >= {"model.vision", "model.trajectory", "base_policy"}


def test_params_are_validated_and_coerced(tmp_path):
    spec = load_spec(write(tmp_path, "model:\n  vision: {type: perceiver, num_queries: '8'}\n"))
    assert spec.model.vision.params["num_queries"] == 8


def test_all_errors_reported_at_once_with_lines(tmp_path):
    path = write(
        tmp_path,
        "model:\n"
        "  vision: {type: perciever}\n"  # line 2
        "  chunk:\n"
        "    type: chunk-pooling\n"
        "    pooling: max\n"  # line 5
        "  memroy: {type: gated}\n"  # line 6
        "train:\n"
        "  steps: many\n",  # line 8
    )
    found = problems(path)
    assert found["model.vision.type"][0] == 2
    assert "Did you mean 'perceiver'" in found["model.vision.type"][1]
    assert found["model.chunk.pooling"][0] == 5
    assert found["model.memroy"] == (6, "unknown key")
    assert found["train.steps"][0] == 8 and "'many'" in found["train.steps"][1]
    assert len(found) == 4


def test_unknown_component_param_is_an_error(tmp_path):
    found = problems(
        write(tmp_path, "model:\n  memory:\n    type: ema\n    decay: 0.5\n    rate: 2\n")
    )
    assert found == {"model.memory.rate": (5, "unknown key")}
    typo = problems(write(tmp_path, "model:\n  memory:\n    type: ema\n    decai: 0.5\n"))
    assert typo == {"model.memory.decai": (4, "unknown key; did you mean 'decay'?")}


def test_a_clash_explains_itself_and_from_pins_the_provider(tmp_path):
    import types

    from sigma_core.config import StrictModel
    from sigma_core.plugins.hookspecs import hookimpl
    from sigma_core.plugins.registry import load_registry

    class Steps(StrictModel):
        sample_steps: int = 10

    def plugin(name, config):
        module = types.ModuleType(name)

        @hookimpl
        def sigma_register_components(register):
            register(kind="fusion", name="ddim", config=config, impl=f"{name}:X")

        module.sigma_register_components = sigma_register_components
        return module

    class Plain(StrictModel):
        pass

    reg = load_registry(plugins=[plugin("first", Plain), plugin("second", Steps)])
    path = write(tmp_path, "model:\n  fusion:\n    type: ddim\n    sample_steps: 4\n")
    with pytest.raises(SpecError) as exc:
        load_spec(path, reg)
    (problem,) = exc.value.problems
    assert problem.path == "model.fusion.sample_steps"
    assert "unknown key (fusion 'ddim' is provided by plugin 'first' (used by default)" in (
        problem.message
    )
    assert "`from: second`" in problem.message
    pinned = write(
        tmp_path, "model:\n  fusion:\n    type: ddim\n    from: second\n    sample_steps: 4\n"
    )
    spec = load_spec(pinned, reg)
    assert spec.model.fusion.provider == "second" and spec.model.fusion.params == {
        "sample_steps": 4
    }
    # the resolved spec records the provider of a clashed name, pinned or not
    assert (
        load_spec(write(tmp_path, "model:\n  fusion: {type: ddim}\n"), reg).model.fusion.provider
        == "first"
    )
    again = validate_spec(spec.model_dump(mode="json"), reg)
    assert again.model.fusion.provider == "second"
    bad = write(tmp_path, "model:\n  fusion: {type: ddim, from: third}\n")
    assert (
        "from 'third': not installed; provided by: first, second"
        in problems_with(bad, reg)["model.fusion.from"][1]
    )


def test_missing_type_and_non_mapping_slot(tmp_path):
    found = problems(write(tmp_path, "model:\n  fusion: {weights: 1}\n  chunk: 3\n"))
    assert found["model.fusion.type"][1] == "Field required"
    assert found["model.fusion.type"][0] == 2
    assert "model.chunk" in found


def test_yaml_syntax_error_names_line(tmp_path):
    with pytest.raises(SpecError) as exc:
        load_yaml(write(tmp_path, "model:\n  vision: {type: perceiver\n  backbone: x\n"))
    assert exc.value.problems[0].line == 3
    assert "YAML syntax error" in str(exc.value)


def test_missing_file_and_non_mapping(tmp_path):
    with pytest.raises(SigmaUserError, match="spec file not found"):
        load_spec(tmp_path / "nope.yaml")
    with pytest.raises(SpecError, match="must be a mapping"):
        validate_spec([1, 2], get_registry())


def test_resolved_spec_round_trips(tmp_path):
    spec = load_spec(write(tmp_path, "model:\n  memory: {type: ema}\n"))
    again = validate_spec(spec.model_dump(mode="json"), get_registry())
    assert again.model_dump() == spec.model_dump()
    assert again.model.memory.params == {"decay": 0.9}


def test_a_duplicate_key_is_an_error_not_a_silent_override(tmp_path):
    found = problems(write(tmp_path, "model:\n  memory: {type: none}\n  memory: {type: gated}\n"))
    assert found == {
        "model.memory": (3, "duplicate key (also on line 2); YAML would keep this one")
    }
