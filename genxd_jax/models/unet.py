"""`UNetMVTemporalConditionModel`: the GenXD UNet (SVD's video UNet with multi-view branches and α-fusing).

Channels-last: sample (B, F, H, W, C_in) -> (B, F, H, W, C_out). Module attributes mirror the released
checkpoint keys (`down_blocks.0.resnets.1.mv_res_block.conv1.weight` is
`down_blocks[0].resnets[1].mv_res_block.conv1.kernel`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from genxd_jax.models.embeddings import TimestepEmbedding, sinusoidal_embedding
from genxd_jax.models.layers import DTypes, InitKeys, conv2d, group_norm, materialize
from genxd_jax.models.resnet import Downsample2D, MVCascadeTemporalResBlock, Upsample2D
from genxd_jax.models.transformers import TransformerMVCascadeTemporalModel

DOWN_BLOCKS = ("CrossAttnDownBlockMVCascadeTemporal", "DownBlockMVCascadeTemporal")
UP_BLOCKS = ("CrossAttnUpBlockMVCascadeTemporal", "UpBlockMVCascadeTemporal")

# Rematerialisation policies by name (config `remat_policy`); None = no rematerialisation.
REMAT_POLICIES = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.dots_saveable,
    "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def _per_block(value, n: int, name: str) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * n
    value = tuple(int(v) for v in value)
    if len(value) != n:
        raise ValueError(f"UNet config: {name} has {len(value)} entries for {n} blocks")
    return value


@dataclasses.dataclass(frozen=True)
class UNetConfig:
    """The fields of the released `unet/config.json` that shape the network (other keys are ignored)."""

    in_channels: int = 15
    out_channels: int = 4
    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    down_block_types: tuple[str, ...] = (DOWN_BLOCKS[0],) * 3 + (DOWN_BLOCKS[1],)
    up_block_types: tuple[str, ...] = (UP_BLOCKS[1],) + (UP_BLOCKS[0],) * 3
    layers_per_block: tuple[int, ...] = (2, 2, 2, 2)
    transformer_layers_per_block: tuple[int, ...] = (1, 1, 1, 1)
    num_attention_heads: tuple[int, ...] = (5, 10, 20, 20)
    addition_time_embed_dim: int = 256
    projection_class_embeddings_input_dim: int = 512
    motion_condition: bool = True

    @classmethod
    def from_dict(cls, raw: dict) -> UNetConfig:
        """Parses and validates a released config dict; unknown keys are ignored."""
        if raw.get("cross_attention_dim") is not None:
            raise ValueError("UNet config: cross_attention_dim must be null (GenXD has no cross-attention)")
        if raw.get("camera_embedding_dim", -1) not in (-1, None):
            raise ValueError("UNet config: camera_embedding_dim > 0 (a learned cc_projection) is not supported")
        if raw.get("camera_add_time") or raw.get("scale_add_time"):
            raise ValueError("UNet config: camera_add_time / scale_add_time are not supported")
        blocks = tuple(int(c) for c in raw.get("block_out_channels", cls.block_out_channels))
        n = len(blocks)
        down = tuple(raw.get("down_block_types", cls.down_block_types))
        up = tuple(raw.get("up_block_types", cls.up_block_types))
        for kind, allowed, name in ((down, DOWN_BLOCKS, "down_block_types"), (up, UP_BLOCKS, "up_block_types")):
            if len(kind) != n:
                raise ValueError(f"UNet config: {name} has {len(kind)} entries for {n} levels")
            bad = [t for t in kind if t not in allowed]
            if bad:
                raise ValueError(f"UNet config: unsupported {name} {bad}; expected one of {allowed}")
        config = cls(
            in_channels=int(raw.get("in_channels", cls.in_channels)),
            out_channels=int(raw.get("out_channels", cls.out_channels)),
            block_out_channels=blocks,
            down_block_types=down,
            up_block_types=up,
            layers_per_block=_per_block(raw.get("layers_per_block", 2), n, "layers_per_block"),
            transformer_layers_per_block=_per_block(
                raw.get("transformer_layers_per_block", 1), n, "transformer_layers_per_block"
            ),
            num_attention_heads=_per_block(
                raw.get("num_attention_heads", cls.num_attention_heads), n, "num_attention_heads"
            ),
            addition_time_embed_dim=int(raw.get("addition_time_embed_dim", 256)),
            projection_class_embeddings_input_dim=int(raw.get("projection_class_embeddings_input_dim", 512)),
            motion_condition=bool(raw.get("motion_condition", True)),
        )
        for c in blocks:
            if c % 32:
                raise ValueError(f"UNet config: block_out_channels {blocks} must be multiples of 32 (GroupNorm)")
        for c, h in zip(blocks, config.num_attention_heads):
            if c % h:
                raise ValueError(f"UNet config: {c} channels are not divisible by {h} attention heads")
        return config

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> UNetConfig:
        with open(path) as f:
            return cls.from_dict(json.load(f))

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.update(
            _class_name="UNetMVTemporalConditionModel",
            cross_attention_dim=None,
            camera_embedding_dim=-1,
            ray_condition=True,
            camera_add_time=False,
            scale_add_time=False,
            uncertainty_condition=False,
        )
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @property
    def time_embed_dim(self) -> int:
        return 4 * self.block_out_channels[0]


def _remat(module: nnx.Module, policy: str | None):
    """`module.__call__`, rematerialised under `policy` (a REMAT_POLICIES name) when given."""
    if policy in (None, "none"):
        return module
    if policy not in REMAT_POLICIES:
        raise ValueError(f"unknown remat policy {policy!r}; choose from {sorted(REMAT_POLICIES)}")
    fn = nnx.remat(lambda m, *args: m(*args), policy=REMAT_POLICIES[policy], prevent_cse=False)
    return lambda *args: fn(module, *args)


def _transformers(channels: int, heads: int, count: int, layers: int, dt: DTypes, rngs,
                  attention_impl: str | None) -> nnx.List:
    """`count` cascade transformers (`attentions.j`) of `layers` layers each."""
    return nnx.List([TransformerMVCascadeTemporalModel(channels, heads, num_layers=layers, dt=dt, rngs=rngs,
                                                       attention_impl=attention_impl) for _ in range(count)])


class DownBlock(nnx.Module):
    """`CrossAttnDownBlockMVCascadeTemporal` (with `attentions`) or `DownBlockMVCascadeTemporal`."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        num_layers: int,
        transformer_layers: int,
        heads: int,
        with_attention: bool,
        add_downsample: bool,
        eps: float,
        temb_channels: int,
        dt: DTypes,
        rngs: nnx.Rngs,
        attention_impl: str | None,
    ):
        self.resnets = nnx.List(
            [
                MVCascadeTemporalResBlock(
                    in_channels if j == 0 else out_channels,
                    out_channels,
                    eps=eps,
                    temb_channels=temb_channels,
                    dt=dt,
                    rngs=rngs,
                )
                for j in range(num_layers)
            ]
        )
        if with_attention:
            self.attentions = _transformers(out_channels, heads, num_layers, transformer_layers, dt, rngs,
                                            attention_impl)
        if add_downsample:
            self.downsamplers = nnx.List([Downsample2D(out_channels, dt=dt, rngs=rngs)])

    def __call__(self, x, emb, indicator, remat: str | None = None):
        """Returns the output and the tensors it pushes on the skip stack."""
        skips = []
        for j, resnet in enumerate(self.resnets):
            x = _remat(resnet, remat)(x, emb, indicator)
            if hasattr(self, "attentions"):
                x = _remat(self.attentions[j], remat)(x, indicator)
            skips.append(x)
        if hasattr(self, "downsamplers"):
            x = self.downsamplers[0](x)
            skips.append(x)
        return x, skips


class UpBlock(nnx.Module):
    """`CrossAttnUpBlockMVCascadeTemporal` (with `attentions`) or `UpBlockMVCascadeTemporal`."""

    def __init__(
        self,
        in_channels: int,
        prev_output_channels: int,
        out_channels: int,
        *,
        num_layers: int,
        transformer_layers: int,
        heads: int,
        with_attention: bool,
        add_upsample: bool,
        eps: float,
        temb_channels: int,
        dt: DTypes,
        rngs: nnx.Rngs,
        attention_impl: str | None,
    ):
        resnets = []
        for j in range(num_layers):
            skip = in_channels if j == num_layers - 1 else out_channels
            cin = prev_output_channels if j == 0 else out_channels
            resnets.append(
                MVCascadeTemporalResBlock(
                    cin + skip, out_channels, eps=eps, temb_channels=temb_channels, dt=dt, rngs=rngs
                )
            )
        self.resnets = nnx.List(resnets)
        if with_attention:
            self.attentions = _transformers(out_channels, heads, num_layers, transformer_layers, dt, rngs,
                                            attention_impl)
        if add_upsample:
            self.upsamplers = nnx.List([Upsample2D(out_channels, dt=dt, rngs=rngs)])

    def __call__(self, x, skips: list, emb, indicator, remat: str | None = None):
        """Consumes len(resnets) skips (most recent first): x = resnet(concat(x, skip)) [→ attention]."""
        for j, resnet in enumerate(self.resnets):
            x = jnp.concatenate([x, skips.pop()], axis=-1)
            x = _remat(resnet, remat)(x, emb, indicator)
            if hasattr(self, "attentions"):
                x = _remat(self.attentions[j], remat)(x, indicator)
        if hasattr(self, "upsamplers"):
            x = self.upsamplers[0](x)
        return x


class MidBlock(nnx.Module):
    """`UNetMidBlockMVCascadeTemporal`: resnets[0] → attentions[0] → resnets[1]."""

    def __init__(
        self,
        channels: int,
        *,
        transformer_layers: int,
        heads: int,
        temb_channels: int,
        dt: DTypes,
        rngs: nnx.Rngs,
        attention_impl: str | None,
    ):
        self.resnets = nnx.List(
            [
                MVCascadeTemporalResBlock(channels, channels, eps=1e-5, temb_channels=temb_channels, dt=dt, rngs=rngs)
                for _ in range(2)
            ]
        )
        self.attentions = _transformers(channels, heads, 1, transformer_layers, dt, rngs, attention_impl)

    def __call__(self, x, emb, indicator, remat: str | None = None):
        x = _remat(self.resnets[0], remat)(x, emb, indicator)
        x = _remat(self.attentions[0], remat)(x, indicator)
        return _remat(self.resnets[1], remat)(x, emb, indicator)


class UNetMVTemporalConditionModel(nnx.Module):
    """The GenXD UNet.

    Call: `unet(sample, timestep, added_time_ids, indicator, motion)`:
      sample (B, F, H, W, in_channels), H and W multiples of 2^(levels−1);
      timestep: scalar or (B,), the noise-level input c_noise = 0.25·ln σ;
      added_time_ids (B, F, 2) or (B, 2): [motion slot (0 in the released flow), camera flag];
      indicator (B,) int: 0 = 3D, 1 = video, 2 = 4D (other values act as video);
      motion (B,) float motion strength, or None (then the motion embedding is skipped);
      -> (B, F, H, W, out_channels), the v-prediction F_θ.
    """

    def __init__(
        self,
        config: UNetConfig,
        *,
        rngs: nnx.Rngs,
        dtype=jnp.float32,
        param_dtype=jnp.float32,
        remat_policy: str | None = None,
        attention_impl: str | None = None,
    ):
        self.config = config
        self.remat_policy = remat_policy
        dt = DTypes(dtype, param_dtype)
        chans = config.block_out_channels
        temb = config.time_embed_dim
        n = len(chans)
        self.conv_in = conv2d(config.in_channels, chans[0], dt=dt, rngs=rngs)
        self.time_embedding = TimestepEmbedding(chans[0], temb, dt=dt, rngs=rngs)
        self.add_embedding = TimestepEmbedding(config.projection_class_embeddings_input_dim, temb, dt=dt, rngs=rngs)
        if config.motion_condition:
            self.motion_embedding = TimestepEmbedding(chans[0], temb, dt=dt, rngs=rngs)

        common = dict(temb_channels=temb, dt=dt, rngs=rngs, attention_impl=attention_impl)
        down = []
        out_c = chans[0]
        for i, kind in enumerate(config.down_block_types):
            in_c, out_c = out_c, chans[i]
            cross = kind == DOWN_BLOCKS[0]
            down.append(
                DownBlock(
                    in_c,
                    out_c,
                    num_layers=config.layers_per_block[i],
                    transformer_layers=config.transformer_layers_per_block[i],
                    heads=config.num_attention_heads[i],
                    with_attention=cross,
                    add_downsample=i < n - 1,
                    eps=1e-6 if cross else 1e-5,
                    **common,
                )
            )
        self.down_blocks = nnx.List(down)
        self.mid_block = MidBlock(
            chans[-1],
            transformer_layers=config.transformer_layers_per_block[-1],
            heads=config.num_attention_heads[-1],
            **common,
        )
        rev_chans = chans[::-1]
        rev_layers = config.layers_per_block[::-1]
        rev_tlayers = config.transformer_layers_per_block[::-1]
        rev_heads = config.num_attention_heads[::-1]
        up = []
        out_c = rev_chans[0]
        for i, kind in enumerate(config.up_block_types):
            prev, out_c = out_c, rev_chans[i]
            in_c = rev_chans[min(i + 1, n - 1)]
            up.append(
                UpBlock(
                    in_c,
                    prev,
                    out_c,
                    num_layers=rev_layers[i] + 1,
                    transformer_layers=rev_tlayers[i],
                    heads=rev_heads[i],
                    with_attention=kind == UP_BLOCKS[0],
                    add_upsample=i < n - 1,
                    eps=1e-6,
                    **common,
                )
            )
        self.up_blocks = nnx.List(up)
        self.conv_norm_out = group_norm(chans[0], 1e-5, dt=dt, rngs=rngs)
        self.conv_out = conv2d(chans[0], config.out_channels, dt=dt, rngs=rngs)

    def embedding(self, timestep, added_time_ids, motion, batch: int, frames: int) -> jax.Array:
        """The per-frame embedding E: (B·F, T), or (B·F, 2T) with the motion embedding second."""
        cfg = self.config
        dtype = self.conv_in.dtype or jnp.float32
        t = jnp.broadcast_to(jnp.asarray(timestep, jnp.float32).reshape(-1), (batch,))
        emb = self.time_embedding(sinusoidal_embedding(t, cfg.block_out_channels[0]).astype(dtype))
        ids = jnp.asarray(added_time_ids)
        if ids.ndim == 2:
            ids = ids[:, None, :]
        ids = jnp.broadcast_to(ids, (batch, frames, ids.shape[-1]))
        add = sinusoidal_embedding(ids.reshape(-1), cfg.addition_time_embed_dim).reshape(batch * frames, -1)
        if add.shape[-1] != cfg.projection_class_embeddings_input_dim:
            raise ValueError(
                f"added_time_ids carry {ids.shape[-1]} values per frame; the config expects "
                f"{cfg.projection_class_embeddings_input_dim // cfg.addition_time_embed_dim}"
            )
        emb = jnp.repeat(emb, frames, axis=0) + self.add_embedding(add.astype(dtype))
        if cfg.motion_condition and motion is not None:
            m = jnp.broadcast_to(jnp.asarray(motion, jnp.float32).reshape(-1), (batch,))
            e_m = self.motion_embedding(sinusoidal_embedding(m, cfg.block_out_channels[0]).astype(dtype))
            emb = jnp.concatenate([emb, jnp.repeat(e_m, frames, axis=0)], axis=-1)
        return emb

    def __call__(
        self,
        sample: jax.Array,
        timestep,
        added_time_ids: jax.Array,
        indicator: jax.Array,
        motion: jax.Array | None = None,
    ) -> jax.Array:
        b, f, h, w, c = sample.shape
        if c != self.config.in_channels:
            raise ValueError(f"sample has {c} channels, the UNet takes {self.config.in_channels}")
        factor = 2 ** (len(self.config.block_out_channels) - 1)
        if h % factor or w % factor:
            raise ValueError(f"sample height and width ({h}, {w}) must be multiples of {factor}")
        indicator = jnp.broadcast_to(jnp.asarray(indicator, jnp.int32).reshape(-1), (b,))
        emb = self.embedding(timestep, added_time_ids, motion, b, f)
        x = self.conv_in(sample.reshape(b * f, h, w, c))
        skips = [x]
        for block in self.down_blocks:
            x, pushed = block(x, emb, indicator, self.remat_policy)
            skips.extend(pushed)
        x = self.mid_block(x, emb, indicator, self.remat_policy)
        for block in self.up_blocks:
            x = block(x, skips, emb, indicator, self.remat_policy)
        x = self.conv_out(jax.nn.silu(self.conv_norm_out(x)))
        return x.reshape(b, f, h, w, -1)


def _unet_factory(
    config,
    *,
    seed: int = 0,
    traced: bool = False,
    dtype=jnp.float32,
    param_dtype=jnp.float32,
    remat_policy: str | None = None,
    attention_impl: str | None = None,
):
    config = as_unet_config(config)
    return lambda: UNetMVTemporalConditionModel(
        config,
        rngs=InitKeys(seed, traced=traced),
        dtype=dtype,
        param_dtype=param_dtype,
        remat_policy=remat_policy,
        attention_impl=attention_impl,
    )


def build_unet(config: UNetConfig | dict | str | os.PathLike, **kwargs) -> UNetMVTemporalConditionModel:
    """A randomly initialised UNet (PyTorch default init; blenders at 0.5 / 5.0), parameters unsharded.

    `config` is a UNetConfig, a config dict, or a path to a `config.json`; keyword arguments: `seed`,
    `dtype` (compute), `param_dtype`, `remat_policy`, `attention_impl`.
    """
    return materialize(_unet_factory(config, **kwargs))


def abstract_unet(config, **kwargs) -> UNetMVTemporalConditionModel:
    """The UNet with `jax.ShapeDtypeStruct` parameters: shapes, dtypes and logical names, no memory."""
    with nnx.use_eager_sharding(False):
        return nnx.eval_shape(_unet_factory(config, traced=True, **kwargs))


def as_unet_config(config) -> UNetConfig:
    if isinstance(config, UNetConfig):
        return config
    if isinstance(config, dict):
        return UNetConfig.from_dict(config)
    return UNetConfig.from_json(config)


__all__: Sequence[str] = ("UNetConfig", "UNetMVTemporalConditionModel", "build_unet", "abstract_unet", "REMAT_POLICIES")
