"""Values of the vision workspace: gate identities and configuration errors."""

from __future__ import annotations

import pytest
import torch

from sigma_core.spec import Dims
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
