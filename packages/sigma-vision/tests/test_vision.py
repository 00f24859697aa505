"""Values of the vision workspace: gate identities and configuration errors."""

from __future__ import annotations

import pytest
import torch

from sigma_core import Dims
from sigma_vision.config import PerceiverVisionConfig
from sigma_vision.perceiver import PerceiverVision, VisionModulator

DIMS = Dims(d_model=32, image_size=32)


def test_theta_mod_to_minus_infinity_gives_v_base():
    mod = VisionModulator(8, 8, theta_t=0.0, theta_mod=0.0)
    v, tau = torch.randn(2, 5, 8), torch.randn(2, 8)
    with torch.no_grad():
        mod.theta_mod.fill_(float("-inf"))
    torch.testing.assert_close(mod(v, tau), v)


def test_modulator_formula():
    torch.manual_seed(0)
    mod = VisionModulator(8, 8, theta_t=0.3, theta_mod=-0.5)
    v, tau = torch.randn(2, 5, 8), torch.randn(2, 8)
    gamma, beta = mod.film(torch.exp(torch.tensor(0.3)) * tau).unsqueeze(1).chunk(2, -1)
    v_film = v * (1 + gamma) + beta
    want = v + torch.exp(torch.tensor(-0.5)) * (v_film - v)
    torch.testing.assert_close(mod(v, tau), want)


def test_tau_changes_vision_tokens_and_none_does_not():
    torch.manual_seed(0)
    vis = PerceiverVision(PerceiverVisionConfig(), DIMS).eval()
    images, state = torch.rand(2, 2, 1, 3, 32, 32), torch.randn(2, 6)
    base = vis(images, state).tokens
    with torch.no_grad():
        vis.modulator.theta_mod.fill_(float("-inf"))
    torch.testing.assert_close(vis(images, state, torch.randn(2, 32)).tokens, base)


def test_patch_size_must_divide_image():
    with pytest.raises(ValueError, match="patch_size=7 must divide"):
        PerceiverVision(PerceiverVisionConfig(patch_size=7), DIMS)


def test_a_cnn_stem_keeps_the_token_grid_and_is_trained():
    """stem_channels [8, 16]: two stride-2 convs, then a (16/4)-px patch conv: the same
    2x2 grid per camera as the linear 16-px patch conv, and gradients reach the stem."""
    torch.manual_seed(0)
    plain = PerceiverVision(PerceiverVisionConfig(patch_size=16), DIMS)
    stem = PerceiverVision(PerceiverVisionConfig(patch_size=16, stem_channels=[8, 16]), DIMS)
    assert len(plain.stem) == 0 and [type(m).__name__ for m in stem.stem] == [
        "Conv2d",
        "GELU",
        "Conv2d",
        "GELU",
    ]
    assert stem.patch.kernel_size == stem.patch.stride == (4, 4) and stem.patch.in_channels == 16
    images = torch.rand(2, 2, 1, 3, 32, 32)
    assert stem.patch_features(images).shape == plain.patch_features(images).shape == (2, 8, 32)
    stem(images, torch.randn(2, 6)).tokens.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in stem.stem.parameters())
    with pytest.raises(
        ValueError, match=r"patch_size=4 must be divisible by 2\*\*len\(stem_channels\)=8"
    ):
        PerceiverVision(PerceiverVisionConfig(patch_size=4, stem_channels=[4, 4, 4]), DIMS)


def test_state_dropout_zeroes_whole_samples_in_training_only():
    torch.manual_seed(0)
    vis = PerceiverVision(PerceiverVisionConfig(state_dropout=0.5), DIMS)
    images, state = torch.rand(64, 2, 1, 3, 32, 32), torch.randn(64, 6)
    tokens = vis(images, state).state_tokens  # (64, N_s, D), training mode
    dropped = tokens.abs().sum((1, 2)) == 0
    assert 16 < int(dropped.sum()) < 48  # about half the samples
    kept = vis.eval()(images, state).state_tokens
    torch.testing.assert_close(tokens[~dropped], kept[~dropped])  # the rest untouched
    assert (kept.abs().sum((1, 2)) > 0).all()  # never at inference
    vis.train().requires_grad_(False)  # frozen, as in stage sigma: the base's own tokens
    torch.testing.assert_close(vis(images, state).state_tokens, kept)
    with pytest.raises(ValueError):
        PerceiverVisionConfig(state_dropout=1.0)


def test_tower_vision_uses_a_frozen_siglip_and_trains_the_rest():
    from sigma_vision.config import TowerVisionConfig
    from sigma_vision.tower import TowerVision

    dims = Dims(d_model=32, image_size=48, cameras=["overhead", "wrist"], frame_history=2)
    torch.manual_seed(0)
    vision = TowerVision(TowerVisionConfig(num_queries=6), dims)
    images = torch.rand(2, 2, 2, 3, 48, 48)
    out = vision(images, torch.randn(2, 6), torch.randn(2, 32))
    assert out.tokens.shape == (2, 6, 32) and out.state_tokens.shape == (2, 4, 32)
    # 2 cameras x 2 frames x (32/8)^2 SigLIP patches reach the resampler
    assert vision.patch_features(images).shape == (2, 2 * 2 * 16, 64)
    out.tokens.sum().backward()
    assert all(p.grad is None for p in vision.tower.parameters())
    assert vision.projector[0].weight.grad is not None and vision.camera_embed.grad is not None
    # the tower sees exactly SigLIP's normalization of the resized image
    x = torch.nn.functional.interpolate(images.flatten(0, 2), size=(32, 32), mode="bilinear")
    want = vision.tower(pixel_values=(x - 0.5) / 0.5).last_hidden_state
    got = vision.patch_features(images).unflatten(1, (2, 2, 16))  # (B, C, F, N, W_v)
    emb = vision.frame_embed[:, None] + vision.camera_embed[:, None, None]  # (C, F, 1, W_v)
    torch.testing.assert_close((got - emb).flatten(0, 2), want)


def test_a_full_siglip_model_directory_gives_its_vision_tower_and_is_not_saved(tmp_path):
    """google/siglip-so400m-patch14-224 is a full SiglipModel (text + vision): its forward
    needs input_ids, so the tower (``vision_model``) is picked without ``attribute``."""
    from transformers import SiglipConfig, SiglipModel

    from sigma_vision.config import TowerVisionConfig
    from sigma_vision.tower import TowerVision

    small = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1}
    config = SiglipConfig(
        text_config={**small, "num_attention_heads": 2, "vocab_size": 99},
        vision_config={**small, "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
    )
    torch.manual_seed(0)
    full = SiglipModel(config).eval()
    full.save_pretrained(tmp_path / "siglip")
    dims = Dims(d_model=32, image_size=48, cameras=["overhead"], frame_history=1)
    vision = TowerVision(TowerVisionConfig(path=str(tmp_path / "siglip"), num_queries=4), dims)
    images = torch.rand(2, 1, 1, 3, 48, 48)
    out = vision(images, torch.randn(2, 6))
    assert out.tokens.shape == (2, 4, 32)
    x = torch.nn.functional.interpolate(images.flatten(0, 2), size=(32, 32), mode="bilinear")
    want = full.vision_model(pixel_values=(x - 0.5) / 0.5).last_hidden_state
    emb = vision.frame_embed[:, None] + vision.camera_embed[:, None, None]
    torch.testing.assert_close(vision.patch_features(images) - emb.flatten(0, 1), want)
    assert not any(k.startswith("tower.") for k in vision.state_dict())
    assert vision.pretrained_sources["tower"]["source"] == str(tmp_path / "siglip")


def test_an_unknown_vision_attribute_is_a_clear_error(tmp_path):
    from transformers import SiglipConfig, SiglipModel

    from sigma_core import SigmaUserError
    from sigma_vision.config import TowerVisionConfig
    from sigma_vision.tower import TowerVision

    small = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1}
    config = SiglipConfig(text_config={**small, "num_attention_heads": 2, "vocab_size": 99})
    SiglipModel(config).save_pretrained(tmp_path / "m")
    cfg = TowerVisionConfig(path=str(tmp_path / "m"), attribute="nothing_here")
    with pytest.raises(SigmaUserError, match=r"vision\.attribute: the model has no 'nothing_here'"):
        TowerVision(cfg, Dims(d_model=32))


def test_random_shift_crops_the_replicate_padded_image_in_training_only():
    from sigma_vision.perceiver import random_shift

    torch.manual_seed(0)
    x = torch.rand(16, 3, 8, 8)
    y = random_shift(x, 2)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="replicate")
    offsets = []
    for i in range(16):  # every output is one 8x8 window of its padded input
        found = [
            (dy, dx)
            for dy in range(5)
            for dx in range(5)
            if torch.equal(padded[i, :, dy : dy + 8, dx : dx + 8], y[i])
        ]
        assert found, i
        offsets.append(found[0])
    assert len(set(offsets)) > 4  # shifts differ between images
    assert torch.equal(random_shift(x, 0), x)
    vis = PerceiverVision(PerceiverVisionConfig(random_shift=4), DIMS)
    images = torch.rand(2, 2, 1, 3, 32, 32)
    a, b = vis.patch_features(images), vis.patch_features(images)
    assert not torch.equal(a, b)  # training: augmented
    vis.eval()
    torch.testing.assert_close(vis.patch_features(images), vis.patch_features(images))
    vis.train().requires_grad_(False)  # frozen (stage sigma): the base's own features
    torch.testing.assert_close(vis.patch_features(images), vis.eval().patch_features(images))


def test_spatial_softmax_keypoints_are_expected_coordinates_and_tokens():
    from sigma_vision.perceiver import spatial_softmax

    maps = torch.full((1, 2, 4, 6), -1e9)
    maps[0, 0, 0, 5] = 0.0  # all mass at the top-right cell
    maps[0, 1] = 0.0  # uniform: the centre
    torch.testing.assert_close(spatial_softmax(maps), torch.tensor([[[1.0, -1.0], [0.0, 0.0]]]))
    torch.manual_seed(0)
    cfg = PerceiverVisionConfig(stem_channels=[8, 16], spatial_softmax=3)
    vis = PerceiverVision(cfg, DIMS)
    images = torch.rand(2, 2, 1, 3, 32, 32)
    assert vis.patch_features(images).shape == (2, 2 * (4 + 3), 32)  # 2x2 patches + 3 points
    vis(images, torch.randn(2, 6)).tokens.square().mean().backward()
    assert vis.keypoint_maps.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("internal", [MemoryError, AssertionError])
def test_load_tower_lets_internal_errors_through_and_chains_the_rest(
    tmp_path, monkeypatch, internal
):
    """Out of memory is not 'cannot load' (exit 2); a real load failure keeps its cause."""
    import transformers

    from sigma_core import SigmaUserError
    from sigma_vision.config import TowerVisionConfig
    from sigma_vision.tower import load_tower

    cfg = TowerVisionConfig(path=str(tmp_path), num_queries=4)

    def fail(exc):
        def from_pretrained(*args, **kwargs):
            raise exc

        return from_pretrained

    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", fail(internal("boom")))
    with pytest.raises(internal):
        load_tower(cfg)
    cause = OSError("no config.json")
    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", fail(cause))
    with pytest.raises(SigmaUserError, match="cannot load a transformers vision model") as info:
        load_tower(cfg)
    assert info.value.__cause__ is cause


def test_is_internal_error_recognises_oom_and_programming_errors():
    from sigma_core import is_internal_error

    assert is_internal_error(MemoryError()) and is_internal_error(torch.OutOfMemoryError("x"))
    assert is_internal_error(NameError("x")) and is_internal_error(AssertionError())
    assert not is_internal_error(OSError("x")) and not is_internal_error(ValueError("x"))


def test_the_tau_stem_starts_as_the_base_stem_and_then_reads_tau():
    """vision.tau_stem: the tau pass re-encodes the images through W + dW with FiLM by tau
    (zero-initialized: V_mod = V_base at the start, with FiLM on tokens off); once its
    weights move, V_mod depends on tau and on the pixels, gradients reach only the tau
    stem, and the tau = None pass (the base's) never changes."""
    torch.manual_seed(0)
    cfg = PerceiverVisionConfig(patch_size=16, stem_channels=[8, 16], film=False, tau_stem=True)
    vis = PerceiverVision(cfg, DIMS).eval()
    assert vis.tau_sees_pixels and type(vis).telepathy_params == ("modulator.", "stem_tau.")
    images, state, tau = torch.rand(2, 2, 1, 3, 32, 32), torch.randn(2, 6), torch.randn(2, 32)
    base = vis(images, state)
    torch.testing.assert_close(vis.modulate(base, images, state, tau).tokens, base.tokens)
    with torch.no_grad():
        for p in vis.stem_tau.parameters():
            p.normal_(0, 0.3)
    moved = vis.modulate(base, images, state, tau)
    assert not torch.allclose(moved.tokens, base.tokens, atol=1e-4)
    torch.testing.assert_close(vis(images, state, tau).tokens, moved.tokens)  # the contract
    assert not torch.allclose(vis.modulate(base, images, state, -tau).tokens, moved.tokens)
    torch.testing.assert_close(vis(images, state).tokens, base.tokens)  # tau = None: the base
    # the formula, block by block
    x, t = images.flatten(0, 2), tau.repeat_interleave(2, dim=0)
    convs = [m for m in vis.stem if isinstance(m, torch.nn.Conv2d)]
    for conv, dw, db, film in zip(
        convs, vis.stem_tau.weight, vis.stem_tau.bias, vis.stem_tau.film, strict=True
    ):
        x = torch.nn.functional.conv2d(x, conv.weight + dw, conv.bias + db, 2, 1)
        gamma, beta = film(t).chunk(2, dim=1)
        x = torch.nn.functional.gelu(x) * (1 + gamma[..., None, None]) + beta[..., None, None]
    torch.testing.assert_close(vis.stem_tau(vis.stem, images.flatten(0, 2), t), x)
    vis.requires_grad_(False).stem_tau.requires_grad_(True)
    moved = vis.modulate(base, images, state, tau.requires_grad_(True))
    moved.tokens.square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in vis.stem_tau.parameters())
    assert tau.grad is not None and tau.grad.abs().sum() > 0


def test_the_tau_stem_needs_a_stem():
    with pytest.raises(ValueError, match=r"tau_stem needs a stem: set vision\.stem_channels"):
        PerceiverVisionConfig(tau_stem=True)
