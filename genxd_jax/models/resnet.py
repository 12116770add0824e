"""ResNet blocks, blenders and resamplers of the GenXD UNet and the SVD temporal VAE decoder.

Layouts (channels last): per-frame tensors are (B·F, H, W, C) with row b·F + f; frame-mixing tensors are
(B, F, H, W, C).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from genxd_jax.models.layers import DTypes, conv2d, frame_conv, group_norm, linear, scalar_param


class ResnetBlock2D(nnx.Module):
    """diffusers `ResnetBlock2D` (per-frame GroupNorm with 32 groups, SiLU, 3×3 convs, optional temb)."""

    def __init__(self, in_channels: int, out_channels: int, *, eps: float, temb_channels: int | None,
                 dt: DTypes, rngs: nnx.Rngs):
        self.norm1 = group_norm(in_channels, eps, dt=dt, rngs=rngs)
        self.conv1 = conv2d(in_channels, out_channels, dt=dt, rngs=rngs)
        if temb_channels is not None:
            self.time_emb_proj = linear(temb_channels, out_channels, dt=dt, rngs=rngs)
        self.norm2 = group_norm(out_channels, eps, dt=dt, rngs=rngs)
        self.conv2 = conv2d(out_channels, out_channels, dt=dt, rngs=rngs)
        if in_channels != out_channels:
            self.conv_shortcut = conv2d(in_channels, out_channels, kernel=1, dt=dt, rngs=rngs)

    def __call__(self, x: jax.Array, temb: jax.Array | None = None) -> jax.Array:
        """x (N, H, W, Cin), temb (N, T) or None -> (N, H, W, C)."""
        h = self.conv1(jax.nn.silu(self.norm1(x)))
        if temb is not None:
            h = h + self.time_emb_proj(jax.nn.silu(temb))[:, None, None, :]
        h = self.conv2(jax.nn.silu(self.norm2(h)))
        shortcut = self.conv_shortcut(x) if hasattr(self, "conv_shortcut") else x
        return shortcut + h


class TemporalResnetBlock(nnx.Module):
    """diffusers `TemporalResnetBlock`: GroupNorms pooled over all frames, kernel-3 convs along frames."""

    def __init__(self, channels: int, *, eps: float, temb_channels: int | None, dt: DTypes, rngs: nnx.Rngs):
        self.norm1 = group_norm(channels, eps, dt=dt, rngs=rngs)
        self.conv1 = frame_conv(channels, channels, dt=dt, rngs=rngs)
        if temb_channels is not None:
            self.time_emb_proj = linear(temb_channels, channels, dt=dt, rngs=rngs)
        self.norm2 = group_norm(channels, eps, dt=dt, rngs=rngs)
        self.conv2 = frame_conv(channels, channels, dt=dt, rngs=rngs)

    def __call__(self, x: jax.Array, temb: jax.Array | None = None) -> jax.Array:
        """x (B, F, H, W, C), temb (B, F, T) or None -> (B, F, H, W, C)."""
        h = self.conv1(jax.nn.silu(self.norm1(x)))
        if temb is not None:
            h = h + self.time_emb_proj(jax.nn.silu(temb))[:, :, None, None, :]
        h = self.conv2(jax.nn.silu(self.norm2(h)))
        return x + h


def _per_sample(weight: jax.Array, x: jax.Array) -> jax.Array:
    """Broadcasts a (B,) weight against x (B, ...)."""
    return weight.reshape((-1,) + (1,) * (x.ndim - 1))


def indicator_gamma(indicator: jax.Array, gamma_logit: jax.Array) -> jax.Array:
    """γ per sample: 1 for 3D (0), 0 for video (1), σ(gamma) for 4D (2), 0 for anything else. (B,) float32."""
    indicator = jnp.asarray(indicator)
    learned = jax.nn.sigmoid(gamma_logit.astype(jnp.float32)).reshape(())
    return jnp.where(indicator == 0, 1.0, jnp.where(indicator == 2, learned, 0.0)).astype(jnp.float32)


class MVTemporalBlender(nnx.Module):
    """α-fusing (`time_mixer`): out = γ·(β·x_s + (1−β)·x_mv) + (1−γ)·x_t, β = σ(spatial_mv_factor).

    The paper's temporal weight α is 1 − γ. Computed in float32, returned in the activation dtype.
    """

    def __init__(self, *, dt: DTypes, spatial_mv_factor: float = 0.5, gamma: float = 5.0):
        self.spatial_mv_factor = scalar_param(spatial_mv_factor, dt=dt)
        self.gamma = scalar_param(gamma, dt=dt)

    def __call__(self, x_spatial: jax.Array, x_mv: jax.Array, x_temporal: jax.Array,
                 indicator: jax.Array) -> jax.Array:
        """All inputs (B, ...) with the sample axis first; indicator (B,) int."""
        f32 = jnp.float32
        beta = jax.nn.sigmoid(self.spatial_mv_factor[...].astype(f32)).reshape(())
        gamma = _per_sample(indicator_gamma(indicator, self.gamma[...]), x_spatial)
        mixed = beta * x_spatial.astype(f32) + (1.0 - beta) * x_mv.astype(f32)
        out = gamma * mixed + (1.0 - gamma) * x_temporal.astype(f32)
        return out.astype(x_spatial.dtype)


class AlphaBlender(nnx.Module):
    """diffusers `AlphaBlender("learned", switch_spatial_to_temporal_mix=True)`: (1−σ(m))·x_s + σ(m)·x_t."""

    def __init__(self, *, dt: DTypes, mix_factor: float = 0.0):
        self.mix_factor = scalar_param(mix_factor, dt=dt)

    def __call__(self, x_spatial: jax.Array, x_temporal: jax.Array) -> jax.Array:
        alpha = jax.nn.sigmoid(self.mix_factor[...].astype(jnp.float32)).reshape(())
        out = (1.0 - alpha) * x_spatial.astype(jnp.float32) + alpha * x_temporal.astype(jnp.float32)
        return out.astype(x_spatial.dtype)


class MVCascadeTemporalResBlock(nnx.Module):
    """spatial → multi-view → temporal(multi-view output), blended by the indicator (`resnets.j`)."""

    def __init__(self, in_channels: int, out_channels: int, *, temb_channels: int, eps: float, dt: DTypes,
                 rngs: nnx.Rngs):
        self.temb_channels = temb_channels
        self.spatial_res_block = ResnetBlock2D(in_channels, out_channels, eps=eps, temb_channels=temb_channels,
                                               dt=dt, rngs=rngs)
        self.mv_res_block = TemporalResnetBlock(out_channels, eps=eps, temb_channels=temb_channels, dt=dt,
                                                rngs=rngs)
        self.temporal_res_block = TemporalResnetBlock(out_channels, eps=eps, temb_channels=temb_channels, dt=dt,
                                                      rngs=rngs)
        self.time_mixer = MVTemporalBlender(dt=dt)

    def __call__(self, x: jax.Array, emb: jax.Array, indicator: jax.Array) -> jax.Array:
        """x (B·F, H, W, Cin); emb (B·F, T) or (B·F, 2T) with the motion part second; indicator (B,)."""
        batch = indicator.shape[0]
        if emb.shape[-1] > self.temb_channels:
            emb, emb_motion = emb[:, :self.temb_channels], emb[:, self.temb_channels:]
        else:
            emb_motion = emb
        x_s = self.spatial_res_block(x, emb)
        bf, h, w, c = x_s.shape
        frames = bf // batch
        x_s = x_s.reshape(batch, frames, h, w, c)
        x_mv = self.mv_res_block(x_s, emb.reshape(batch, frames, -1))
        x_t = self.temporal_res_block(x_mv, emb_motion.reshape(batch, frames, -1))
        return self.time_mixer(x_s, x_mv, x_t, indicator).reshape(bf, h, w, c)


class SpatioTemporalResBlock(nnx.Module):
    """The VAE decoder's ResBlock: spatial (eps 1e-6) then temporal (eps 1e-5), mixed by `AlphaBlender`."""

    def __init__(self, in_channels: int, out_channels: int, *, dt: DTypes, rngs: nnx.Rngs):
        self.spatial_res_block = ResnetBlock2D(in_channels, out_channels, eps=1e-6, temb_channels=None, dt=dt,
                                               rngs=rngs)
        self.temporal_res_block = TemporalResnetBlock(out_channels, eps=1e-5, temb_channels=None, dt=dt,
                                                      rngs=rngs)
        self.time_mixer = AlphaBlender(dt=dt)

    def __call__(self, x: jax.Array, num_frames: int) -> jax.Array:
        """x (B·F, H, W, Cin) -> (B·F, H, W, C)."""
        x_s = self.spatial_res_block(x)
        bf, h, w, c = x_s.shape
        x_s = x_s.reshape(bf // num_frames, num_frames, h, w, c)
        x_t = self.temporal_res_block(x_s)
        return self.time_mixer(x_s, x_t).reshape(bf, h, w, c)


class Downsample2D(nnx.Module):
    """Stride-2 3×3 conv (`downsamplers.0.conv`). `asymmetric_pad` = the VAE's (0, 1, 0, 1) zero padding."""

    def __init__(self, channels: int, *, dt: DTypes, rngs: nnx.Rngs, asymmetric_pad: bool = False):
        padding = ((0, 1), (0, 1)) if asymmetric_pad else ((1, 1), (1, 1))
        self.conv = conv2d(channels, channels, strides=2, padding=padding, dt=dt, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.conv(x)


class Upsample2D(nnx.Module):
    """Nearest ×2 (each pixel repeated 2×2), then a 3×3 conv (`upsamplers.0.conv`)."""

    def __init__(self, channels: int, *, dt: DTypes, rngs: nnx.Rngs):
        self.conv = conv2d(channels, channels, dt=dt, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.conv(jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2))
