"""Spatial, multi-view and temporal transformer blocks and their cascade (`attentions.j` of the UNet).

Token layout between blocks: (B·F, S, C), S = H·W row-major, row b·F + f.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from genxd_jax.models.attention import Attention, FeedForward
from genxd_jax.models.embeddings import TimestepEmbedding, sinusoidal_embedding
from genxd_jax.models.layers import DTypes, group_norm, layer_norm, linear
from genxd_jax.models.resnet import MVTemporalBlender


class BasicTransformerBlock(nnx.Module):
    """Per-frame block (`transformer_blocks.k`): x += attn1(norm1 x); x += ff(norm3 x). No cross-attention."""

    def __init__(self, dim: int, heads: int, *, dt: DTypes, rngs: nnx.Rngs, attention_impl: str | None = None):
        self.norm1 = layer_norm(dim, dt=dt, rngs=rngs)
        self.attn1 = Attention(dim, heads, dt=dt, rngs=rngs, implementation=attention_impl)
        self.norm3 = layer_norm(dim, dt=dt, rngs=rngs)
        self.ff = FeedForward(dim, dt=dt, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """x (N, L, C) -> (N, L, C)."""
        x = x + self.attn1(self.norm1(x))
        return x + self.ff(self.norm3(x))


class FrameAttentionBlock(nnx.Module):
    """Temporal or multi-view block: x += ff_in(norm_in x); x += attn1(norm1 x); x += ff(norm3 x).

    `mode="temporal"` attends over the F frames at each position ((B·S, F, C) sequences,
    `TemporalBasicTransformerBlock`); `mode="multiview"` attends jointly over all F·S tokens of a sample
    ((B, F·S, C), token f·S + s, `MVBasicTransformerBlock`).
    """

    def __init__(self, dim: int, heads: int, mode: str, *, dt: DTypes, rngs: nnx.Rngs,
                 attention_impl: str | None = None):
        if mode not in ("temporal", "multiview"):
            raise ValueError(f"unknown frame attention mode {mode!r}")
        self.mode = mode
        self.norm_in = layer_norm(dim, dt=dt, rngs=rngs)
        self.ff_in = FeedForward(dim, dim, dt=dt, rngs=rngs)
        self.norm1 = layer_norm(dim, dt=dt, rngs=rngs)
        self.attn1 = Attention(dim, heads, dt=dt, rngs=rngs, implementation=attention_impl)
        self.norm3 = layer_norm(dim, dt=dt, rngs=rngs)
        self.ff = FeedForward(dim, dt=dt, rngs=rngs)

    def __call__(self, x: jax.Array, num_frames: int) -> jax.Array:
        """x (B·F, S, C) -> (B·F, S, C)."""
        bf, s, c = x.shape
        b = bf // num_frames
        x = x.reshape(b, num_frames, s, c)
        if self.mode == "temporal":
            x = x.transpose(0, 2, 1, 3).reshape(b * s, num_frames, c)
        else:
            x = x.reshape(b, num_frames * s, c)
        x = x + self.ff_in(self.norm_in(x))
        x = x + self.attn1(self.norm1(x))
        x = x + self.ff(self.norm3(x))
        if self.mode == "temporal":
            x = x.reshape(b, s, num_frames, c).transpose(0, 2, 1, 3)
        return x.reshape(bf, s, c)


class TransformerMVCascadeTemporalModel(nnx.Module):
    """GroupNorm → proj_in → per layer: u_s = spatial(u); u_mv = mv(u_s); u_t = temporal(u_mv + p);
    u = blend(u_s, u_mv, u_t) → proj_out → + residual. p is the frame-position embedding."""

    def __init__(self, channels: int, heads: int, *, num_layers: int = 1, dt: DTypes, rngs: nnx.Rngs,
                 attention_impl: str | None = None):
        kw = dict(dt=dt, rngs=rngs, attention_impl=attention_impl)
        self.norm = group_norm(channels, 1e-6, dt=dt, rngs=rngs)
        self.proj_in = linear(channels, channels, dt=dt, rngs=rngs)
        self.transformer_blocks = nnx.List([BasicTransformerBlock(channels, heads, **kw)
                                            for _ in range(num_layers)])
        self.temporal_transformer_blocks = nnx.List([FrameAttentionBlock(channels, heads, "temporal", **kw)
                                                     for _ in range(num_layers)])
        self.multiview_transformer_blocks = nnx.List([FrameAttentionBlock(channels, heads, "multiview", **kw)
                                                      for _ in range(num_layers)])
        self.time_pos_embed = TimestepEmbedding(channels, 4 * channels, channels, dt=dt, rngs=rngs)
        self.time_mixer = MVTemporalBlender(dt=dt)
        self.proj_out = linear(channels, channels, dt=dt, rngs=rngs)

    def __call__(self, x: jax.Array, indicator: jax.Array) -> jax.Array:
        """x (B·F, H, W, C); indicator (B,) -> (B·F, H, W, C)."""
        bf, h, w, c = x.shape
        batch = indicator.shape[0]
        frames = bf // batch
        u = self.proj_in(self.norm(x).reshape(bf, h * w, c))
        frame_index = jnp.tile(jnp.arange(frames), batch)
        pos = self.time_pos_embed(sinusoidal_embedding(frame_index, c).astype(u.dtype))[:, None, :]
        for spatial, multiview, temporal in zip(self.transformer_blocks, self.multiview_transformer_blocks,
                                                self.temporal_transformer_blocks):
            u_s = spatial(u)
            u_mv = multiview(u_s, frames)
            u_t = temporal(u_mv + pos, frames)
            split = lambda t: t.reshape(batch, frames, h * w, c)
            u = self.time_mixer(split(u_s), split(u_mv), split(u_t), indicator).reshape(bf, h * w, c)
        return self.proj_out(u).reshape(bf, h, w, c) + x
