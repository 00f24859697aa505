"""The paper's vision workspace (§1): patches -> projector -> resampler -> tau modulator."""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor, nn

from sigma_core import Dims, VisionOutput, VisionWorkspace
from sigma_core.layers import CrossAttentionBlock, SelfAttentionBlock, mlp
from sigma_vision.config import PerceiverVisionConfig, ResamplerConfig


class VisionModulator(nn.Module):
    """Telepathy modulation of vision tokens with two learnable log-scale gates.

    ``tau' = exp(theta_t) * tau``; ``(gamma, beta) = MLP_GELU(tau')``;
    ``V_film = V_base * (1 + gamma) + beta``;
    ``V_mod = V_base + exp(theta_mod) * (V_film - V_base)``.
    theta_mod -> -inf gives V_mod = V_base ("no telepathy"); tau = 0 gives
    gamma, beta from the MLP's biases only.
    """

    def __init__(self, d: int, tau_dim: int, theta_t: float, theta_mod: float) -> None:
        super().__init__()
        self.theta_t = nn.Parameter(torch.tensor(float(theta_t)))
        self.theta_mod = nn.Parameter(torch.tensor(float(theta_mod)))
        self.film = mlp(tau_dim, d, 2 * d)

    def forward(self, v_base: Tensor, tau: Tensor) -> Tensor:
        gamma, beta = self.film(self.theta_t.exp() * tau).unsqueeze(1).chunk(2, dim=-1)
        v_film = v_base * (1 + gamma) + beta
        return v_base + self.theta_mod.exp() * (v_film - v_base)


class ResamplerVision(VisionWorkspace, abstract=True):
    """The paper's vision stack after the patch encoder (subclasses encode patches).

    ``X = MLP2(patches)`` (projector); ``V_base = LN(FFN(CrossAttn(Q_v, X)))`` with
    N_v learnable queries Q_v (perceiver resampler); state tokens
    ``S_tok = reshape(W_exp MLP(state))`` (N_s tokens; ``state`` is (B, S_v), the
    privileged scene state appended where the spec asks for it; while the state encoder is
    trained, zeroed per sample with probability ``state_dropout``); with tau,
    ``V_mod = VisionModulator(V_base, tau)``; finally a self-attention block over
    the (modulated) tokens. ``tau = None`` returns the block applied to V_base.
    """

    telepathy_params = ("modulator.",)

    def __init__(self, config: ResamplerConfig, dims: Dims) -> None:
        super().__init__(config, dims)
        d = dims.d_model
        if d % config.num_heads:
            raise ValueError(
                f"vision.num_heads={config.num_heads} must divide model.dims.d_model={d}"
            )
        feature_width = self.init_patch_encoder()
        self.projector = mlp(feature_width, 2 * d, d, config.dropout)
        self.queries = nn.Parameter(torch.randn(config.num_queries, d) / math.sqrt(d))
        self.resampler = CrossAttentionBlock(d, config.num_heads, config.ffn_mult, config.dropout)
        self.resampler_norm = nn.LayerNorm(d)
        self.state_encoder = mlp(dims.vision_state_dim, d, d)
        self.state_expander = nn.Linear(d, config.num_state_tokens * d)
        self.modulator = VisionModulator(d, d, config.theta_t_init, config.theta_mod_init)
        if not config.film:
            self.modulator.requires_grad_(False)  # unused: V_mod = V_base
        self.block = SelfAttentionBlock(d, config.num_heads, config.ffn_mult, config.dropout)

    def init_patch_encoder(self) -> int:
        """Create the patch encoder's modules; return its feature width."""
        raise NotImplementedError

    def patch_features(self, images: Tensor, tau: Tensor | None = None) -> Tensor:
        """(B, C, F, 3, P, P) -> patch features (B, C*F*N_patches, feature width); ``tau``
        (B, E) is read only where :attr:`tau_sees_pixels`."""
        raise NotImplementedError

    def encode_patches(self, images: Tensor, tau: Tensor | None = None) -> Tensor:
        """(B, C, F, 3, P, P) -> projected patch tokens (B, C*F*N_patches, D)."""
        return self.projector(self.patch_features(images, tau))

    def resample(self, images: Tensor, tau: Tensor | None = None) -> Tensor:
        """The resampled tokens before the modulator and block (B, N_v, D)."""
        patches = self.encode_patches(images, tau)
        queries = self.queries.expand(images.shape[0], -1, -1)
        return self.resampler_norm(self.resampler(queries, patches))

    def forward(self, images: Tensor, state: Tensor, tau: Tensor | None = None) -> VisionOutput:
        v_base = self.resample(images)
        state_tokens = self.encode_state(state)  # before the block: the RNG order of old runs
        out = VisionOutput(self.block(v_base), state_tokens, reuse=v_base)
        return out if tau is None else self.modulate(out, images, state, tau)

    def encode_state(self, state: Tensor) -> Tensor:
        """(B, S_v) -> state tokens ``S_tok`` (B, N_s, D)."""
        state_tokens = self.state_expander(self.state_encoder(state))
        state_tokens = state_tokens.unflatten(1, (self.config.num_state_tokens, -1))
        if self.config.state_dropout > 0 and self.training and self._state_trained():
            # proprioception dropout: joint angles predict the next joint targets so well
            # that a policy trained with them learns to ignore the cameras (it then never
            # finds the cube); without them for some samples, the images must carry it
            keep = (
                torch.rand(state.shape[0], 1, 1, device=state.device) >= self.config.state_dropout
            )
            state_tokens = state_tokens * keep
        return state_tokens

    def restate(self, base: VisionOutput, images: Tensor, state: Tensor) -> VisionOutput:
        """The vision tokens do not read the state: only the state tokens are re-encoded."""
        if base.reuse is None:
            return self(images, state)
        return VisionOutput(base.tokens, self.encode_state(state), reuse=base.reuse)

    def _state_trained(self) -> bool:
        """The state encoder is being trained (stage base), not frozen (stage sigma):
        only then does ``state_dropout`` apply, so a frozen tau = 0 path stays the base's."""
        return any(p.requires_grad for p in self.state_encoder.parameters())

    def modulate(
        self, base: VisionOutput, images: Tensor, state: Tensor, tau: Tensor
    ) -> VisionOutput:
        """Pass 2 from pass 1's V_base: only the modulator and the block see tau.

        The patch encoder (a SigLIP tower for ``tower``), projector, resampler and
        state tokens do not depend on tau, so they are not recomputed; with
        :attr:`tau_sees_pixels` (``tau_stem``) the images are encoded again through the
        tau-conditioned stem, and only the state tokens are reused.
        """
        if base.reuse is None:
            return self(images, state, tau)
        v = self.resample(images, tau) if self.tau_sees_pixels else base.reuse
        if self.config.film:
            v = self.modulator(v, tau)
        elif not self.tau_sees_pixels:
            return base  # V_mod = V_base
        return VisionOutput(self.block(v), base.state_tokens, reuse=base.reuse)


class TauStem(nn.Module):
    """The stem on the tau pass (``vision.tau_stem``; not in the paper).

    For each block l of the stem (``Conv_l``, GELU) with the base's frozen ``W_l, b_l``::

        h_l = GELU(Conv(h_{l-1}; W_l + dW_l, b_l + db_l))
        h_l = h_l * (1 + gamma_l(tau)) + beta_l(tau)        ((gamma_l, beta_l) = Linear_l(tau))

    ``dW_l, db_l`` and ``Linear_l`` start at zero, so the tau pass starts as the base's
    stem (the same trainable-copy start as ControlNet's); the base's own stem, which the
    tau = 0 path reads, is never changed. Why in the stem: the paper's FiLM acts on the
    resampled tokens, after the stem has mixed the named cube with the distractors the
    instruction does not name; here tau can act on the pixels' first features.
    """

    def __init__(self, stem: nn.Sequential, tau_dim: int) -> None:
        super().__init__()
        convs = [m for m in stem if isinstance(m, nn.Conv2d)]
        self.weight = nn.ParameterList(nn.Parameter(torch.zeros_like(c.weight)) for c in convs)
        self.bias = nn.ParameterList(nn.Parameter(torch.zeros(c.out_channels)) for c in convs)
        self.film = nn.ModuleList(nn.Linear(tau_dim, 2 * c.out_channels) for c in convs)
        for film in self.film:
            nn.init.zeros_(film.weight)
            nn.init.zeros_(film.bias)

    def forward(self, stem: nn.Sequential, x: Tensor, tau: Tensor) -> Tensor:
        """``x`` (N, 3, P, P) through ``stem`` (the base's) modulated by ``tau`` (N, E)."""
        convs = [m for m in stem if isinstance(m, nn.Conv2d)]
        for conv, dw, db, film in zip(convs, self.weight, self.bias, self.film, strict=True):
            assert conv.bias is not None
            x = nn.functional.conv2d(x, conv.weight + dw, conv.bias + db, conv.stride, conv.padding)
            gamma, beta = film(tau)[:, :, None, None].chunk(2, dim=1)
            x = nn.functional.gelu(x) * (1 + gamma) + beta
        return x


class PerceiverVision(ResamplerVision):
    """Vision workspace of the paper, with its own conv patch embedding.

    Per camera c and frame f: ``X = Conv_p(stem(image)) + e_cam[c] + e_frame[f] + e_pos``
    (shared conv, patch p), then the :class:`ResamplerVision` stack. With
    ``spatial_softmax`` K, K keypoint tokens per image join the patch tokens
    (robomimic's / Diffusion Policy's spatial softmax)::

        h_k = Conv1x1_k(stem(image))                       (K maps on the stem's grid)
        (x_k, y_k) = sum_ij softmax(h_k)_ij (u_j, v_i)      (u, v in [-1, 1])
        token_k = MLP((x_k, y_k)) + e_kp[k] + e_cam[c] + e_frame[f]

    With ``random_shift`` k (training only, while the encoder trains) every image
    is first shifted by integers in [-k, k] (edges replicated). ``stem`` is the
    identity, or with ``stem_channels`` ``[c_1 .. c_n]`` n blocks
    ``GELU(Conv3x3_stride2(x))`` and the patch conv of side ``p / 2^n``, so the
    token grid is the same. Why a stem: a linear patch conv sees a 2 cm cube as a
    few percent of a 16 px patch's pixels; the non-linear stem can turn "a red
    blob here" into a feature the resampler can find.
    """

    name = "perceiver"
    config_class = PerceiverVisionConfig
    telepathy_params = ("modulator.", "stem_tau.")
    #: the tau stem learns only from L_declutter (sigma declutter): trained by stage
    #: sigma's L_act and TSAC it wrecked the tau pass (val L_act 0.19 -> 0.59 in 300 steps)
    distilled_params = ("stem_tau.",)

    @property
    def tau_sees_pixels(self) -> bool:
        return self.config.tau_stem

    def init_patch_encoder(self) -> int:
        dims, p, d = self.dims, self.config.patch_size, self.dims.d_model
        if dims.image_size % p:
            raise ValueError(
                f"vision.patch_size={p} must divide model.dims.image_size={dims.image_size}"
            )
        n_patches = (dims.image_size // p) ** 2
        widths = [3, *self.config.stem_channels]
        scale = 2 ** (len(widths) - 1)
        if p % scale:
            raise ValueError(
                f"vision.patch_size={p} must be divisible by 2**len(stem_channels)={scale}"
            )
        stem: list[nn.Module] = []
        for c_in, c_out in itertools.pairwise(widths):
            stem += [nn.Conv2d(c_in, c_out, kernel_size=3, stride=2, padding=1), nn.GELU()]
        self.stem = nn.Sequential(*stem)
        if self.config.tau_stem:  # the config refuses it without a stem
            self.stem_tau = TauStem(self.stem, dims.d_model)
        self.patch = nn.Conv2d(widths[-1], d, kernel_size=p // scale, stride=p // scale)
        self.camera_embed = nn.Parameter(torch.randn(len(dims.cameras), d) * 0.02)
        self.frame_embed = nn.Parameter(torch.randn(dims.frame_history, d) * 0.02)
        self.pos_embed = nn.Parameter(torch.randn(n_patches, d) * 0.02)
        k = self.config.spatial_softmax
        if k:
            self.keypoint_maps = nn.Conv2d(widths[-1], k, kernel_size=1)
            self.keypoint_mlp = mlp(2, d, d)
            self.keypoint_embed = nn.Parameter(torch.randn(k, d) * 0.02)
        return d

    def patch_features(self, images: Tensor, tau: Tensor | None = None) -> Tensor:
        b, c, f = images.shape[:3]
        flat = images.flatten(0, 2)
        if self.config.random_shift and self.training and self.patch.weight.requires_grad:
            flat = random_shift(flat, self.config.random_shift)
        if tau is not None and self.tau_sees_pixels:
            features = self.stem_tau(self.stem, flat, tau.repeat_interleave(c * f, dim=0))
        else:
            features = self.stem(flat)
        x = self.patch(features)  # (B*C*F, D, h, w)
        x = x.flatten(2).transpose(1, 2).unflatten(0, (b, c, f))  # (B, C, F, N, D)
        x = x + self.pos_embed
        if self.config.spatial_softmax:
            points = self.keypoint_mlp(spatial_softmax(self.keypoint_maps(features)))
            x = torch.cat([x, (points + self.keypoint_embed).unflatten(0, (b, c, f))], dim=3)
        x = x + self.frame_embed[:, None] + self.camera_embed[:, None, None]
        return x.flatten(1, 3)


def spatial_softmax(maps: Tensor) -> Tensor:
    """(N, K, h, w) feature maps -> (N, K, 2) expected (x, y) of each map's softmax, in [-1, 1]."""
    h, w = maps.shape[-2:]
    weights = maps.flatten(2).softmax(dim=-1).unflatten(2, (h, w))  # (N, K, h, w)
    xs = torch.linspace(-1.0, 1.0, w, device=maps.device, dtype=maps.dtype)
    ys = torch.linspace(-1.0, 1.0, h, device=maps.device, dtype=maps.dtype)
    x = (weights.sum(dim=2) * xs).sum(dim=-1)
    y = (weights.sum(dim=3) * ys).sum(dim=-1)
    return torch.stack([x, y], dim=-1)


def random_shift(images: Tensor, pad: int) -> Tensor:
    """DrQ's augmentation: (N, 3, P, P) images each shifted by integers in [-pad, pad] in x
    and y (replicate-padded, then cropped back to P x P at a random offset)."""
    n, _, h, w = images.shape
    padded = torch.nn.functional.pad(images, (pad, pad, pad, pad), mode="replicate")
    dx = torch.randint(0, 2 * pad + 1, (n,), device=images.device)
    dy = torch.randint(0, 2 * pad + 1, (n,), device=images.device)
    rows = (dy[:, None] + torch.arange(h, device=images.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=images.device))[:, None, None, :]
    batch = torch.arange(n, device=images.device)[:, None, None, None]
    channels = torch.arange(images.shape[1], device=images.device)[None, :, None, None]
    return padded[batch, channels, rows, cols]
