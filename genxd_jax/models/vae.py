"""Stable Video Diffusion's VAE (`AutoencoderKLTemporalDecoder`): 2-D KL encoder, temporal decoder.

`encode` images (N, H, W, 3) in [−1, 1] -> posterior mean and log-variance (N, H/8, W/8, 4);
`decode` latents (N, h, w, 4), N = batches of `num_frames`, -> images (N, 8h, 8w, 3), about [−1, 1].
Neither applies `config.scaling_factor`; the pipeline does, as the official one does.
"""

from __future__ import annotations

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
from flax import nnx

from genxd_jax.models.attention import ImageSelfAttention
from genxd_jax.models.layers import DTypes, InitKeys, conv, conv2d, group_norm, materialize
from genxd_jax.models.resnet import Downsample2D, ResnetBlock2D, SpatioTemporalResBlock, Upsample2D


@dataclasses.dataclass(frozen=True)
class VAEConfig:
    """The fields of the released `vae/config.json` that shape the network (other keys are ignored)."""

    in_channels: int = 3
    out_channels: int = 3
    latent_channels: int = 4
    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: int = 2
    scaling_factor: float = 0.18215

    @classmethod
    def from_dict(cls, raw: dict) -> VAEConfig:
        blocks = tuple(int(c) for c in raw.get("block_out_channels", cls.block_out_channels))
        kinds = raw.get("down_block_types", ["DownEncoderBlock2D"] * len(blocks))
        if len(kinds) != len(blocks) or any(k != "DownEncoderBlock2D" for k in kinds):
            raise ValueError(f"VAE config: down_block_types must be DownEncoderBlock2D per level, got {kinds}")
        if any(c % 32 for c in blocks):
            raise ValueError(f"VAE config: block_out_channels {blocks} must be multiples of 32 (GroupNorm)")
        return cls(
            in_channels=int(raw.get("in_channels", 3)),
            out_channels=int(raw.get("out_channels", 3)),
            latent_channels=int(raw.get("latent_channels", 4)),
            block_out_channels=blocks,
            layers_per_block=int(raw.get("layers_per_block", 2)),
            scaling_factor=float(raw.get("scaling_factor", 0.18215)),
        )

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> VAEConfig:
        with open(path) as f:
            return cls.from_dict(json.load(f))

    def to_dict(self) -> dict:
        d = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}
        d.update(
            _class_name="AutoencoderKLTemporalDecoder",
            force_upcast=True,
            down_block_types=["DownEncoderBlock2D"] * len(self.block_out_channels),
        )
        return d


class DownEncoderBlock2D(nnx.Module):
    def __init__(self, cin: int, cout: int, *, num_layers: int, add_downsample: bool, dt: DTypes, rngs: nnx.Rngs):
        self.resnets = nnx.List(
            [
                ResnetBlock2D(cin if j == 0 else cout, cout, eps=1e-6, temb_channels=None, dt=dt, rngs=rngs)
                for j in range(num_layers)
            ]
        )
        if add_downsample:
            self.downsamplers = nnx.List([Downsample2D(cout, asymmetric_pad=True, dt=dt, rngs=rngs)])

    def __call__(self, x):
        for resnet in self.resnets:
            x = resnet(x)
        if hasattr(self, "downsamplers"):
            x = self.downsamplers[0](x)
        return x


class EncoderMidBlock(nnx.Module):
    """diffusers `UNetMidBlock2D` without temb: resnets[0] → attentions[0] → resnets[1]."""

    def __init__(self, channels: int, *, dt: DTypes, rngs: nnx.Rngs):
        self.resnets = nnx.List(
            [ResnetBlock2D(channels, channels, eps=1e-6, temb_channels=None, dt=dt, rngs=rngs) for _ in range(2)]
        )
        self.attentions = nnx.List([ImageSelfAttention(channels, 1, qkv_bias=True, norm_groups=32, dt=dt, rngs=rngs)])

    def __call__(self, x):
        return self.resnets[1](self.attentions[0](self.resnets[0](x)))


class Encoder(nnx.Module):
    def __init__(self, config: VAEConfig, *, dt: DTypes, rngs: nnx.Rngs):
        chans = config.block_out_channels
        self.conv_in = conv2d(config.in_channels, chans[0], dt=dt, rngs=rngs)
        self.down_blocks = nnx.List(
            [
                DownEncoderBlock2D(
                    chans[max(i - 1, 0)],
                    c,
                    num_layers=config.layers_per_block,
                    add_downsample=i < len(chans) - 1,
                    dt=dt,
                    rngs=rngs,
                )
                for i, c in enumerate(chans)
            ]
        )
        self.mid_block = EncoderMidBlock(chans[-1], dt=dt, rngs=rngs)
        self.conv_norm_out = group_norm(chans[-1], 1e-6, dt=dt, rngs=rngs)
        self.conv_out = conv2d(chans[-1], 2 * config.latent_channels, dt=dt, rngs=rngs)

    def __call__(self, x):
        x = self.conv_in(x)
        for block in self.down_blocks:
            x = block(x)
        x = self.mid_block(x)
        return self.conv_out(jax.nn.silu(self.conv_norm_out(x)))


class MidBlockTemporalDecoder(nnx.Module):
    """resnets[0], then (attention → resnet) for each further resnet.

    As in diffusers, the attention runs only when there is a second resnet (layers_per_block ≥ 2): with one
    layer its parameters exist in the checkpoint but are unused.
    """

    def __init__(self, channels: int, *, num_layers: int, dt: DTypes, rngs: nnx.Rngs):
        self.resnets = nnx.List(
            [SpatioTemporalResBlock(channels, channels, dt=dt, rngs=rngs) for _ in range(num_layers)]
        )
        self.attentions = nnx.List([ImageSelfAttention(channels, 1, qkv_bias=True, norm_groups=32, dt=dt, rngs=rngs)])

    def __call__(self, x, num_frames: int):
        x = self.resnets[0](x, num_frames)
        for resnet, attention in zip(list(self.resnets)[1:], self.attentions):
            x = resnet(attention(x), num_frames)
        return x


class UpBlockTemporalDecoder(nnx.Module):
    def __init__(self, cin: int, cout: int, *, num_layers: int, add_upsample: bool, dt: DTypes, rngs: nnx.Rngs):
        self.resnets = nnx.List(
            [SpatioTemporalResBlock(cin if j == 0 else cout, cout, dt=dt, rngs=rngs) for j in range(num_layers)]
        )
        if add_upsample:
            self.upsamplers = nnx.List([Upsample2D(cout, dt=dt, rngs=rngs)])

    def __call__(self, x, num_frames: int):
        for resnet in self.resnets:
            x = resnet(x, num_frames)
        if hasattr(self, "upsamplers"):
            x = self.upsamplers[0](x)
        return x


class TemporalDecoder(nnx.Module):
    def __init__(self, config: VAEConfig, *, dt: DTypes, rngs: nnx.Rngs):
        rev = config.block_out_channels[::-1]
        self.conv_in = conv2d(config.latent_channels, rev[0], dt=dt, rngs=rngs)
        self.mid_block = MidBlockTemporalDecoder(rev[0], num_layers=config.layers_per_block, dt=dt, rngs=rngs)
        self.up_blocks = nnx.List(
            [
                UpBlockTemporalDecoder(
                    rev[max(i - 1, 0)],
                    c,
                    num_layers=config.layers_per_block + 1,
                    add_upsample=i < len(rev) - 1,
                    dt=dt,
                    rngs=rngs,
                )
                for i, c in enumerate(rev)
            ]
        )
        self.conv_norm_out = group_norm(rev[-1], 1e-6, dt=dt, rngs=rngs)
        self.conv_out = conv2d(rev[-1], config.out_channels, dt=dt, rngs=rngs)
        self.time_conv_out = conv(config.out_channels, config.out_channels, (3, 1, 1), dt=dt, rngs=rngs)

    def __call__(self, z, num_frames: int):
        x = self.mid_block(self.conv_in(z), num_frames)
        for block in self.up_blocks:
            x = block(x, num_frames)
        x = self.conv_out(jax.nn.silu(self.conv_norm_out(x)))
        n, h, w, c = x.shape
        x = self.time_conv_out(x.reshape(n // num_frames, num_frames, h, w, c))
        return x.reshape(n, h, w, c)


class AutoencoderKLTemporalDecoder(nnx.Module):
    """The SVD VAE. Keys `encoder.*`, `quant_conv`, `decoder.*` (no post_quant_conv)."""

    def __init__(self, config: VAEConfig, *, rngs: nnx.Rngs, dtype=jnp.float32, param_dtype=jnp.float32):
        self.config = config
        dt = DTypes(dtype, param_dtype)
        self.encoder = Encoder(config, dt=dt, rngs=rngs)
        self.quant_conv = conv2d(2 * config.latent_channels, 2 * config.latent_channels, kernel=1, dt=dt, rngs=rngs)
        self.decoder = TemporalDecoder(config, dt=dt, rngs=rngs)

    @property
    def downsample_factor(self) -> int:
        """Image pixels per latent pixel along each side (8 for SVD)."""
        return 2 ** (len(self.config.block_out_channels) - 1)

    def encode(self, images: jax.Array) -> tuple[jax.Array, jax.Array]:
        """images (N, H, W, 3) in [−1, 1] -> (mean, logvar), each (N, H/8, W/8, latent); logvar in [−30, 20]."""
        if images.ndim != 4 or images.shape[-1] != self.config.in_channels:
            raise ValueError(f"encode expects (N, H, W, {self.config.in_channels}) images, got {images.shape}")
        moments = self.quant_conv(self.encoder(images))
        mean, logvar = jnp.split(moments, 2, axis=-1)
        return mean, jnp.clip(logvar, -30.0, 20.0)

    def decode(self, latents: jax.Array, num_frames: int) -> jax.Array:
        """latents (N, h, w, latent), N a multiple of `num_frames` -> images (N, 8h, 8w, 3)."""
        if latents.ndim != 4 or latents.shape[-1] != self.config.latent_channels:
            raise ValueError(f"decode expects (N, h, w, {self.config.latent_channels}) latents, got {latents.shape}")
        if num_frames < 1 or latents.shape[0] % num_frames:
            raise ValueError(f"decode: {latents.shape[0]} latents are not a multiple of num_frames={num_frames}")
        return self.decoder(latents, num_frames)

    def __call__(self, images: jax.Array, num_frames: int) -> jax.Array:
        """Reconstruction through the posterior mode."""
        mean, _ = self.encode(images)
        return self.decode(mean, num_frames)


def _vae_factory(config, *, seed: int = 0, traced: bool = False, dtype=jnp.float32, param_dtype=jnp.float32):
    if isinstance(config, dict):
        config = VAEConfig.from_dict(config)
    elif not isinstance(config, VAEConfig):
        config = VAEConfig.from_json(config)
    return lambda: AutoencoderKLTemporalDecoder(
        config, rngs=InitKeys(seed, traced=traced), dtype=dtype, param_dtype=param_dtype
    )


def build_vae(config: VAEConfig | dict | str | os.PathLike, **kwargs) -> AutoencoderKLTemporalDecoder:
    """A randomly initialised VAE, parameters unsharded. `config` is a VAEConfig, dict or config.json path;
    keyword arguments `seed`, `dtype` (compute), `param_dtype`."""
    return materialize(_vae_factory(config, **kwargs))


def abstract_vae(config, **kwargs) -> AutoencoderKLTemporalDecoder:
    """The VAE with `jax.ShapeDtypeStruct` parameters (no memory)."""
    with nnx.use_eager_sharding(False):
        return nnx.eval_shape(_vae_factory(config, traced=True, **kwargs))
