"""The "pool8" autoencoder: a fixed, parameter-free stand-in for the SVD VAE with the same interface.

The tiny training configs use it because no pretrained VAE is available offline (configs/base.py explains the
choice). Encoding is linear and exact to state; decoding is its approximate inverse:

    encode: (N, H, W, 3) in [−1, 1] -> latents (N, H/8, W/8, 4)
        channels 0-2: the 8×8 block mean of R, G, B;
        channel 3:    the 8×8 block mean of (top half − bottom half) of the luma (a Haar-style vertical detail).
    decode: (N, h, w, 4) -> (N, 8h, 8w, 3) in [−1, 1]: bilinear upsampling of channels 0-2 (channel 3 unused).

Like :class:`~genxd_jax.models.vae.AutoencoderKLTemporalDecoder`, neither call applies
``config.scaling_factor``; ``encode`` returns ``(mean, logvar)`` with a constant logvar of −30 (a point mass).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

FACTOR = 8
LUMA = (0.299, 0.587, 0.114)


@dataclasses.dataclass(frozen=True)
class Pool8Config:
    scaling_factor: float = 1.0
    in_channels: int = 3
    latent_channels: int = 4


class Pool8Autoencoder(nnx.Module):
    """Parameter-free 8× autoencoder with the VAE's ``encode``/``decode`` signatures (see the module doc)."""

    downsample_factor = FACTOR

    def __init__(self, scaling_factor: float = 1.0):
        self.config = Pool8Config(scaling_factor=float(scaling_factor))

    def encode(self, images: jax.Array) -> tuple[jax.Array, jax.Array]:
        """images (N, H, W, 3) in [−1, 1], H and W multiples of 8 -> (mean, logvar), each (N, H/8, W/8, 4)."""
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"encode expects (N, H, W, 3) images, got {images.shape}")
        n, h, w, _ = images.shape
        if h % FACTOR or w % FACTOR:
            raise ValueError(f"encode: image size {h}×{w} must be a multiple of {FACTOR}")
        blocks = images.astype(jnp.float32).reshape(n, h // FACTOR, FACTOR, w // FACTOR, FACTOR, 3)
        rgb = blocks.mean(axis=(2, 4))
        luma = blocks @ jnp.asarray(LUMA, jnp.float32)  # (n, h/8, 8, w/8, 8)
        half = FACTOR // 2
        detail = luma[:, :, :half].mean(axis=(2, 4)) - luma[:, :, half:].mean(axis=(2, 4))
        mean = jnp.concatenate([rgb, detail[..., None]], axis=-1)
        return mean, jnp.full_like(mean, -30.0)

    def decode(self, latents: jax.Array, num_frames: int = 1) -> jax.Array:
        """latents (N, h, w, 4) -> images (N, 8h, 8w, 3); ``num_frames`` is checked, frames decode independently."""
        if latents.ndim != 4 or latents.shape[-1] != 4:
            raise ValueError(f"decode expects (N, h, w, 4) latents, got {latents.shape}")
        if num_frames < 1 or latents.shape[0] % num_frames:
            raise ValueError(f"decode: {latents.shape[0]} latents are not a multiple of num_frames={num_frames}")
        n, h, w, _ = latents.shape
        rgb = latents[..., :3].astype(jnp.float32)
        return jax.image.resize(rgb, (n, h * FACTOR, w * FACTOR, 3), method="linear")

    def __call__(self, images: jax.Array, num_frames: int = 1) -> jax.Array:
        """Reconstruction: ``decode(encode(images)[0])``."""
        return self.decode(self.encode(images)[0], num_frames)
