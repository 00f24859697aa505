"""Configs of the vision components (pydantic only: imported by the plugin without torch)."""

from __future__ import annotations

from pydantic import Field, PositiveInt, model_validator

from sigma_core import StrictModel


class ResamplerConfig(StrictModel):
    """Projector -> perceiver resampler -> tau modulator -> block (shared by both visions)."""

    num_queries: PositiveInt = Field(16, description="N_v learnable resampler queries")
    num_state_tokens: PositiveInt = Field(4, description="N_s tokens from the state expander")
    num_heads: PositiveInt = Field(4, description="attention heads (must divide d_model)")
    ffn_mult: PositiveInt = Field(4, description="FFN width multiple")
    dropout: float = Field(0.0, ge=0, lt=1)
    theta_t_init: float = Field(0.0, description="initial log-scale gate theta_t on tau")
    theta_mod_init: float = Field(0.0, description="initial log-scale gate theta_mod on FiLM")
    state_dropout: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="while the vision is trained (stage base): zero a sample's state tokens"
        " with this probability, so the policy cannot lean on proprioception alone and must"
        " read the images; never at inference or when the vision is frozen (stage sigma)",
    )
    film: bool = Field(
        True,
        description="modulate V_base by tau (FiLM); false: V_mod = V_base, the modulator"
        " frozen (the 'no FiLM' ablation)",
    )


class PerceiverVisionConfig(ResamplerConfig):
    """Conv patch embedding, then the resampler stack."""

    patch_size: PositiveInt = Field(16, description="conv patch side; must divide image_size")
    stem_channels: list[PositiveInt] = Field(
        default_factory=list,
        description="a CNN stem before the patch embedding: one 3x3 stride-2 conv + GELU per"
        " entry (its channels); 2**len must divide patch_size. Empty: the linear patch conv",
    )
    random_shift: int = Field(
        0,
        ge=0,
        description="while the patch encoder is trained (stage base): shift each camera image"
        " by a random whole number of pixels in [-k, k] in x and y, edges replicated (DrQ's"
        " pad-and-crop, Diffusion Policy's random crop); never at inference or when frozen",
    )
    spatial_softmax: int = Field(
        0,
        ge=0,
        description="K > 0: also K spatial-softmax keypoints per camera image (robomimic,"
        " Diffusion Policy): the expected (x, y) of each of K feature maps over the stem's"
        " grid, each keypoint a token (MLP of its coordinates + camera embedding)",
    )
    tau_stem: bool = Field(
        False,
        description="telepathy in the stem (not in the paper): the tau pass encodes the"
        " images again through the stem with weights W + dW and FiLM by tau after each"
        " layer (both zero-initialized: it starts as the base's stem), so tau can change"
        " what the vision sees, e.g. the distractors the instruction does not name"
        " (trained only by sigma declutter: stage sigma leaves it at its start); needs"
        " stem_channels. The tau = 0 path is unchanged",
    )

    @model_validator(mode="after")
    def _tau_stem_needs_a_stem(self) -> PerceiverVisionConfig:
        if self.tau_stem and not self.stem_channels:
            raise ValueError("vision.tau_stem needs a stem: set vision.stem_channels")
        return self


class TowerVisionConfig(ResamplerConfig):
    """A frozen transformers vision tower (e.g. SigLIP), then the resampler stack.

    ``path``: a local directory (or hub id) of a vision model, or of a full
    model (SiglipModel, CLIPModel, a VLM) whose vision tower (``vision_model``,
    ``vision_tower`` or ``visual``) is taken automatically; ``attribute`` names
    another one. Without a path a small SigLIP vision model is built from a
    config (random init, offline). A loaded tower is not copied into
    checkpoints: they record its path and sha256.
    """

    path: str | None = None
    attribute: str | None = Field(
        None, description="tower attribute inside a loaded full model (default: found)"
    )
    trust_remote_code: bool = False
    freeze_tower: bool = True
    tower_image_size: PositiveInt = Field(32, description="tiny tower (no path): input side")
    tower_patch_size: PositiveInt = 8
    tower_width: PositiveInt = 64
    tower_layers: PositiveInt = 2
    tower_heads: PositiveInt = 4
