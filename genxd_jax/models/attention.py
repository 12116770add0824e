"""Multi-head self-attention (diffusers `Attention`, self-attention only) and the GEGLU feed-forward.

The core is `jax.nn.dot_product_attention`, so GPUs get cuDNN's fused kernel when asked for
(`implementation="cudnn"`, half precision). Very long sequences (the multi-view attention sees F·h·w tokens,
12,288 at 256² × 12 frames) are processed in query blocks so the score matrix never exceeds a memory budget:
exact, since each block still attends over every key.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from genxd_jax.models.layers import Dropout, DTypes, group_norm, linear

# Upper bound on the elements of one (batch, heads, queries, keys) float32 score block: 2^28 = 1 GiB.
SCORE_BLOCK_ELEMENTS = 1 << 28


def _query_block(length: int, rows_per_query: int, budget: int) -> int:
    """Largest divisor of `length` whose score block (rows_per_query · block · length) fits `budget`."""
    if rows_per_query * length * length <= budget:
        return length
    best = 1
    for b in range(1, length + 1):
        if length % b == 0 and rows_per_query * b * length <= budget:
            best = b
    return best


def dot_product_attention(q: jax.Array, k: jax.Array, v: jax.Array, *, implementation: str | None = None,
                          budget: int = SCORE_BLOCK_ELEMENTS) -> jax.Array:
    """softmax(q·kᵀ/√d)·v on (N, L, H, D) arrays, in query blocks when the score matrix is large."""
    n, length, heads, _ = q.shape
    block = _query_block(length, n * heads, budget)
    if block == length:
        return jax.nn.dot_product_attention(q, k, v, implementation=implementation)
    qb = q.reshape(n, length // block, block, heads, q.shape[-1]).swapaxes(0, 1)
    out = jax.lax.map(lambda qi: jax.nn.dot_product_attention(qi, k, v, implementation=implementation), qb)
    return out.swapaxes(0, 1).reshape(n, length, heads, v.shape[-1])


class Attention(nnx.Module):
    """Self-attention over tokens (N, L, C) with `heads` heads (channel c = head·d + j).

    Keys `to_q`, `to_k`, `to_v` (bias only where `qkv_bias`), `to_out.0` (Linear with bias), `to_out.1`
    (parameter-free dropout). With `norm_groups`, a `group_norm` is owned too (the VAE's attention).
    """

    def __init__(self, dim: int, heads: int, *, dt: DTypes, rngs: nnx.Rngs, qkv_bias: bool = False,
                 norm_groups: int | None = None, norm_eps: float = 1e-6, implementation: str | None = None):
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.implementation = implementation
        if norm_groups is not None:
            self.group_norm = group_norm(dim, norm_eps, groups=norm_groups, dt=dt, rngs=rngs)
        self.to_q = linear(dim, dim, use_bias=qkv_bias, dt=dt, rngs=rngs)
        self.to_k = linear(dim, dim, use_bias=qkv_bias, dt=dt, rngs=rngs)
        self.to_v = linear(dim, dim, use_bias=qkv_bias, dt=dt, rngs=rngs)
        self.to_out = nnx.List([linear(dim, dim, dt=dt, rngs=rngs), Dropout()])

    def __call__(self, x: jax.Array) -> jax.Array:
        n, length, dim = x.shape
        split = lambda t: t.reshape(n, length, self.heads, dim // self.heads)
        out = dot_product_attention(split(self.to_q(x)), split(self.to_k(x)), split(self.to_v(x)),
                                    implementation=self.implementation)
        return self.to_out[0](out.reshape(n, length, dim))


class ImageSelfAttention(Attention):
    """The VAE's mid-block attention on images (N, H, W, C): GroupNorm → attention → residual add."""

    def __call__(self, x: jax.Array) -> jax.Array:
        n, h, w, c = x.shape
        tokens = self.group_norm(x).reshape(n, h * w, c)
        return x + super().__call__(tokens).reshape(n, h, w, c)


class GEGLU(nnx.Module):
    """`net.0` of the feed-forward: proj (C → 2·inner), then a ⊙ GELU_erf(g)."""

    def __init__(self, dim: int, inner: int, *, dt: DTypes, rngs: nnx.Rngs):
        self.proj = linear(dim, 2 * inner, dt=dt, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        a, g = jnp.split(self.proj(x), 2, axis=-1)
        return a * jax.nn.gelu(g, approximate=False)


class FeedForward(nnx.Module):
    """diffusers `FeedForward(activation_fn="geglu", mult=4)`: keys `net.0.proj`, `net.2`."""

    def __init__(self, dim: int, dim_out: int | None = None, *, dt: DTypes, rngs: nnx.Rngs, mult: int = 4):
        inner = dim * mult
        self.net = nnx.List([GEGLU(dim, inner, dt=dt, rngs=rngs), Dropout(),
                             linear(inner, dim_out or dim, dt=dt, rngs=rngs)])

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.net[2](self.net[0](x))
