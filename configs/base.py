"""Shared training config for the three GenXD stages (paper §5.1; genxd-model.md §16).

Stage files (`configs/stage1.py`, `stage2.py`, `stage3.py`) call :func:`get_config` and adjust the data
mixture. Run, for example::

    python -m genxd_jax.main --config=configs/stage3.py:tiny --workdir=/tmp/genxd_tiny
    python -m genxd_jax.main --config=configs/stage3.py:full --workdir=gs://bucket/run \
        --config.optimizer.learning_rate=1e-5

Variants:
    full: the released GenXD UNet (1.9 B parameters), the SVD VAE, 12 frames at 256 px (GenXD main.yaml).
    tiny: a 2-level, 32/64-channel UNet and the parameter-free "pool8" autoencoder, 4 frames at 32 px,
        batch 2, 20 steps; runs on a laptop CPU in a few minutes (smoke tests, CI).

The "pool8" autoencoder (config.vae.path = "pool8"). No pretrained VAE is available offline for the tiny
variant and training one is out of scope, so the tiny runs use a *fixed, parameter-free, linear* encoder
with the real VAE's interface (8× downsampling, 4 latent channels):

    channels 0-2: the 8×8 block mean of R, G, B in [-1, 1];
    channel 3:    the 8×8 block mean of (top half − bottom half) of the luma, a Haar-style vertical detail.

It is lossy (decoding = bilinear upsampling of channels 0-2, channel 3 ignored; genxd_jax/models/pool8.py),
but it is deterministic, cheap, keeps the latent statistics O(1) like VAE latents × 0.18215 (so the EDM σ
range still fits, scaling factor 1.0), and every latent channel carries image information (a constant zero
channel would let the loss on that channel collapse trivially). Its samples are real (blurry, 8×-downsampled)
images of the scene, enough to measure novel-view PSNR; they are not meant to look like GenXD's.
"""

from __future__ import annotations

import os

import ml_collections

from genxd_jax.data import default_data_config, source_config

# The released GenXD UNet (models/unet_cascade_4d_motion.json, genxd-model.md §2).
FULL_UNET = dict(
    in_channels=15,
    out_channels=4,
    block_out_channels=[320, 640, 1280, 1280],
    down_block_types=["CrossAttnDownBlockMVCascadeTemporal"] * 3 + ["DownBlockMVCascadeTemporal"],
    up_block_types=["UpBlockMVCascadeTemporal"] + ["CrossAttnUpBlockMVCascadeTemporal"] * 3,
    layers_per_block=2,
    transformer_layers_per_block=1,
    num_attention_heads=[5, 10, 20, 20],
    addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=512,
    motion_condition=True,
)

TINY_UNET = dict(
    in_channels=15,
    out_channels=4,
    block_out_channels=[32, 64],
    down_block_types=["CrossAttnDownBlockMVCascadeTemporal", "DownBlockMVCascadeTemporal"],
    up_block_types=["UpBlockMVCascadeTemporal", "CrossAttnUpBlockMVCascadeTemporal"],
    layers_per_block=1,
    transformer_layers_per_block=1,
    num_attention_heads=[2, 4],
    addition_time_embed_dim=16,
    projection_class_embeddings_input_dim=32,
    motion_condition=True,
)

VARIANTS = ("full", "tiny")


def get_config(variant: str = "full") -> ml_collections.ConfigDict:
    """The base config (all three stages share it); ``variant`` is "full" or "tiny"."""
    if variant not in VARIANTS:
        raise ValueError(f"config variant must be one of {VARIANTS}, got {variant!r}")
    tiny = variant == "tiny"
    c = ml_collections.ConfigDict()
    c.variant = variant
    c.seed = 3407  # GenXD main.yaml; drives init, σ/noise/dropout draws (folded with the step) and data.

    # --- model -----------------------------------------------------------------------------------------
    c.model = ml_collections.ConfigDict()
    c.model.unet = dict(TINY_UNET if tiny else FULL_UNET)  # UNet config dict (released config.json keys).
    c.model.unet_config_path = ""  # if set, a config.json that replaces model.unet.
    c.model.remat_policy = "" if tiny else "full"  # "" = none; else a genxd_jax.models.unet.REMAT_POLICIES key.
    c.model.dtype = "float32" if tiny else "bfloat16"  # activation (compute) dtype; parameters stay float32.
    # Attention core (genxd_jax.models.attention): "" = by backend (a cache-tiled loop on CPU, jax.nn elsewhere);
    # "xla", "cudnn" (GPU, bf16/fp16: cuDNN flash attention) or "tiled".
    c.model.attention_impl = ""

    # --- initialisation (ignored when the workdir already holds a checkpoint: that always wins) ----------
    # "random" | "svd:<released SVD unet dir>" | "genxd:<released GenXD unet dir>" | "workdir:<other run dir>"
    c.init = ml_collections.ConfigDict()
    c.init.source = "random" if tiny else "svd:checkpoints/svd-xt/unet"

    # --- autoencoder -----------------------------------------------------------------------------------
    c.vae = ml_collections.ConfigDict()
    c.vae.path = "pool8" if tiny else "checkpoints/genxd/vae"  # released VAE dir, or "pool8" (see docstring).
    c.vae.scaling_factor = 1.0 if tiny else 0.18215  # latent = encoder mean × scaling_factor.
    # x0 from the encoder posterior: "mean" (its mean), or "sample" (mean + exp(logvar/2)·ε, SVD-Xtend's
    # latent_dist.sample()); the same on the fly and from stored latents (config.data.latents).
    c.vae.posterior = "mean"

    # --- diffusion (EDM, σ_data = 1, v-prediction; SVD-Xtend recipe, genxd-model.md §16) -----------------
    c.diffusion = ml_collections.ConfigDict()
    c.diffusion.p_mean = 0.7  # ln σ ~ N(p_mean, p_std²)
    c.diffusion.p_std = 1.6
    c.diffusion.loss_weighting = "edm"  # λ(σ) = (1 + σ²)/σ² on ‖D − x₀‖², averaged over target frames.
    c.diffusion.condition_dropout = 0.1  # P(drop context latents, rays, added_time_ids, motion); mask kept.

    # --- optimiser (GenXD utils/config.py defaults; constant LR after linear warm-up) --------------------
    c.optimizer = ml_collections.ConfigDict()
    c.optimizer.learning_rate = 2e-5
    c.optimizer.warmup_steps = 2 if tiny else 2000
    c.optimizer.b1 = 0.9
    c.optimizer.b2 = 0.999
    c.optimizer.eps = 1e-8
    c.optimizer.weight_decay = 1e-2
    c.optimizer.grad_clip_norm = 1.0  # global-norm clip; 0 disables.
    c.ema_decay = 0.0 if tiny else 0.9999  # 0 = no EMA copy (GenXD: use_ema False; kept optional here).

    # --- parallelism -----------------------------------------------------------------------------------
    # Mesh axes; one size may be -1 ("the rest"). Without -1 the first data×fsdp devices are used.
    # The global batch (data.batch_size × processes) must be divisible by data × fsdp.
    c.mesh = ml_collections.ConfigDict({"data": 1, "fsdp": 1} if tiny else {"data": -1, "fsdp": 1})

    # --- loop, checkpoints, logging --------------------------------------------------------------------
    c.num_train_steps = 20 if tiny else 500_000
    c.checkpoint_every_steps = 10 if tiny else 2000
    c.keep_checkpoints = 3
    c.log_every_steps = 1 if tiny else 50
    c.compilation_cache_dir = ""  # jax persistent compilation cache ("" = off).

    # --- periodic evaluation: novel views of held-out synthetic scenes (genxd_jax/train.py docstring) -----
    c.eval = ml_collections.ConfigDict()
    c.eval.every_steps = 10 if tiny else 5000  # 0 = off; when on, also after the last step.
    c.eval.num_scenes = 2 if tiny else 4  # held-out scenes per kind (config.data.num_frames, .resolution).
    c.eval.kinds = ("3d", "4d")  # which procedural kinds to evaluate ("3d" static orbit, "4d" moving objects).
    c.eval.num_inference_steps = 10 if tiny else 25  # Euler–Karras steps per sample.
    c.eval.guidance_scale = 3.0  # classifier-free guidance weight (≤ 1: off), as the official default.
    c.eval.use_ema = True  # sample with the EMA parameters when config.ema_decay > 0.
    c.eval.seed = 0  # sampling noise (the same for every evaluation, so curves compare like with like).

    # --- data (genxd_jax.data.default_data_config, adjusted by the stage files) -------------------------
    c.data = default_data_config()
    if tiny:
        c.data.num_frames = 4
        c.data.resolution = 32
        c.data.batch_size = 2
        c.data.read_threads = 1
        c.data.prefetch_buffer_size = 2
        c.data.max_context_views = 2
    else:
        c.data.num_frames = 12
        c.data.resolution = 256
        c.data.batch_size = 1
    c.data.seed = c.seed
    return c


def synthetic_sources(kinds):
    """Procedural sources (no download) of the given kinds ("3d", "4d"), equal weights."""
    return tuple(source_config(f"synthetic_{k}", "synthetic", k, 1.0 / len(kinds)) for k in kinds)


# The paper's datasets (paper.md §1.1), prepared with `python data/prepare.py --dataset NAME --data_dir DIR`
# into DIR/NAME/1.0.0. The paper gives no mixture weights; equal weights per dataset.
DATASETS_3D = ("objaverse", "mvimgnet", "co3d", "re10k", "acid")
DATASETS_4D = ("objaverse_anim", "camvid30k")
# Where data/prepare.py wrote the datasets: $GENXD_DATA_DIR, default data/tfds (read when the config is built).
DATA_DIR = os.environ.get("GENXD_DATA_DIR", "data/tfds")


def prepared_sources(names, data_dir: str | None = None):
    """TFDS-prepared real datasets (format "tfds", path DATA_DIR/NAME/1.0.0), equal weights."""
    data_dir = DATA_DIR if data_dir is None else data_dir
    return tuple(source_config(n, "tfds", f"{data_dir}/{n}/1.0.0", 1.0 / len(names)) for n in names)


def stage_sources(variant: str, *, with_4d: bool):
    """The data mixture of a stage: synthetic for "tiny", the paper's datasets for "full"."""
    if variant == "tiny":
        return synthetic_sources(("3d", "4d") if with_4d else ("3d",))
    return prepared_sources(DATASETS_3D + (DATASETS_4D if with_4d else ()))
