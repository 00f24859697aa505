"""Every shipped spec validates, and the controls differ from sigma-tiny only where they say."""

from __future__ import annotations

from pathlib import Path

import pytest

from sigma_core import get_registry, load_spec, validate_spec

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_config_validates(path):
    load_spec(path)


def test_controls_and_ablations_change_one_thing():
    tiny = load_spec(REPO / "configs" / "sigma-tiny.yaml").model_dump(mode="json")

    def diff(name: str) -> dict:
        other = load_spec(REPO / "configs" / name).model_dump(mode="json")
        out = {}
        for section in ("model", "train", "data", "base_policy"):
            a, b = tiny[section], other[section]
            out |= {f"{section}.{k}": b[k] for k in a if a[k] != b[k]}
        return out

    lora = diff("control-lora-only.yaml")
    assert set(lora) == {"model.telepathy", "model.memory", "train.losses"}
    assert lora["model.telepathy"] is False and lora["model.memory"] == {"type": "none"}
    assert set(diff("ablation-no-film.yaml")) == {"model.vision"}
    assert diff("ablation-no-film.yaml")["model.vision"]["film"] is False
    assert set(diff("ablation-memory-none.yaml")) == {"model.memory"}
    assert set(diff("ablation-curriculum-off.yaml")) == {"train.losses"}
    assert diff("ablation-identity-adapter.yaml") == {"model.adapter": {"type": "identity"}}
    base = load_spec(REPO / "configs" / "base-tiny.yaml").model_dump(mode="json")
    longer = load_spec(REPO / "configs" / "control-base-longer.yaml").model_dump(mode="json")
    sigma = load_spec(REPO / "configs" / "sigma-tiny.yaml").model_dump(mode="json")
    # compute-matched: the base continued for as many steps as Sigma trains on top of it
    assert longer["train"] == base["train"] | {
        "init_from": "runs/base-tiny/policy",
        "steps": sigma["train"]["steps"],
    }


def test_quickstart_trains_what_the_shipped_configs_say(tmp_path):
    """sigma quickstart reads the configs shipped in sigma_cli/configs (the repository's
    configs/ is that folder): its base is configs/base-estimated.yaml (the shipped
    base was trained with it, continued, then refitted by sigma dagger), and Sigma and
    LoRA-only are sigma-tiny.yaml and control-lora-only.yaml on that base's architecture,
    changing only sizes and paths."""
    import json
    from importlib.resources import files

    shipped = files("sigma_cli") / "configs"
    assert sorted(p.name for p in CONFIGS) == sorted(
        p.name for p in shipped.iterdir() if p.name.endswith(".yaml")
    )
    from sigma_cli.quickstart import FULL, base_spec, continued_spec, shipped_base, specs

    base = load_spec(REPO / "configs" / "base-estimated.yaml")
    trained = json.loads((shipped_base() / "sigma.json").read_text())["spec"]
    for slot in trained["model"].values():  # a saved spec pins each slot's distribution
        if isinstance(slot, dict):
            slot.pop("from", None)
    built = specs(FULL, tmp_path, trained)
    made = validate_spec(base_spec(FULL), get_registry())
    assert made.model == base.model and made.train == base.train
    # the shipped base is the config trained, then continued (lr 3e-4 from its weights),
    # then refitted by sigma dagger (which keeps the spec): its spec is the continuation's
    assert built["base"].model == base.model
    more = continued_spec(base_spec(FULL), FULL, Path(trained["train"]["init_from"]))
    assert built["base"].train == validate_spec(more, get_registry()).train
    assert built["base"].data.batch_size == base.data.batch_size
    pathway = ("telepathy", "memory", "intent", "residual", "fusion", "controller", "adapter")
    for name, config in (("sigma", "sigma-tiny.yaml"), ("lora-only", "control-lora-only.yaml")):
        want, got = load_spec(REPO / "configs" / config), built[name]
        for key in pathway:
            assert getattr(got.model, key) == getattr(want.model, key), (name, key)
        frozen = set(type(base.model).model_fields) - set(pathway)
        for key in frozen:  # the tau = 0 path is the base's
            assert getattr(got.model, key) == getattr(base.model, key), (name, key)
        assert got.train.model_dump(exclude={"losses"}) == want.train.model_dump(
            exclude={"losses"}
        ), name
        assert got.train.losses.model_dump(exclude={"state_weights"}) == (
            want.train.losses.model_dump(exclude={"state_weights"})
        ), name
        assert got.train.losses.state_weights == base.train.losses.state_weights, name
        assert (got.data.batch_size, got.data.run_length) == (
            want.data.batch_size,
            want.data.run_length,
        ), name
        assert got.base_policy.type == want.base_policy.type == "checkpoint", name
        assert got.base_policy.path == str(tmp_path / "runs" / "base" / "policy")
    # the declutter run: sigma-declutter.yaml's pathway, and the base's own vision with
    # tau in the stem instead of FiLM on the tokens
    want, got = load_spec(REPO / "configs" / "sigma-declutter.yaml"), built["sigma-declutter"]
    for key in (*pathway, "tau_route"):
        assert getattr(got.model, key) == getattr(want.model, key), key
    assert got.model.tau_route == "vision" and got.model.adapter.type == "identity"
    vision = base.model.vision.model_dump() | {"film": False, "tau_stem": True}
    assert got.model.vision.model_dump() == vision
    longer = built["base-longer"]
    assert longer.model == base.model and longer.train.stage == "base"
    assert longer.train.steps == FULL.sigma_steps and longer.data.batch_size == FULL.batch_size
    assert longer.train.init_from == str(tmp_path / "runs" / "base" / "policy")
