"""Multi-head self-attention (diffusers `Attention`, self-attention only) and the GEGLU feed-forward.

Two cores compute the same softmax(q·kᵀ/√d)·v:

* `jax.nn.dot_product_attention` (`implementation` None, "xla" or "cudnn"): GPUs get cuDNN's fused kernel when
  asked for ("cudnn", half precision). Very long sequences (the multi-view attention sees F·h·w tokens, 12,288 at
  256² × 12 frames) are processed in query blocks so the score matrix never exceeds a memory budget.
* `tiled_attention` (`implementation="tiled"`, the default on the CPU backend): a loop over (head group, query
  block) tiles whose (queries × keys) score tile is a few MiB, so it stays in cache, and whose memory is reused
  from one tile to the next. Materialising 1 GiB score blocks made the level-0 multi-view attention of the full
  UNet run at ~10-30 GFLOP/s on CPU, where every fresh page of such a block costs a page fault and every pass of
  the softmax goes to DRAM.

Both are exact (each query row attends over every key), so they agree to float32 rounding.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from genxd_jax.models.layers import Dropout, DTypes, group_norm, linear

# Upper bound on the elements of one (batch, heads, queries, keys) float32 score block: 2^28 = 1 GiB.
SCORE_BLOCK_ELEMENTS = 1 << 28

# Elements of one float32 score tile of `tiled_attention`: 2^21 = 8 MiB, which stays in a server CPU's L3 cache.
TILE_ELEMENTS = 1 << 21

IMPLEMENTATIONS = (None, "xla", "cudnn", "tiled")


def _query_block(length: int, rows_per_query: int, budget: int) -> int:
    """Largest divisor of `length` whose score block (rows_per_query · block · length) fits `budget`."""
    if rows_per_query * length * length <= budget:
        return length
    best = 1
    for b in range(1, length + 1):
        if length % b == 0 and rows_per_query * b * length <= budget:
            best = b
    return best


def _tile_shape(heads: int, length: int, tile: int) -> tuple[int, int]:
    """(heads per tile, queries per tile) for `heads` independent (length × length) score matrices.

    Whole heads when one head's scores fit `tile` (the largest divisor of `heads` that fits); otherwise one head
    and a power of two of queries (at least 8) per tile: on a 2-core AVX-512 CPU, 128 queries against the 12,288
    keys of the level-0 multi-view attention ran ~15 % faster than 80 (the probabilities·values product, a short
    (queries × 64) output over a long key axis, is the slow half, and it likes aligned row counts).
    """
    if length * length <= tile:
        group = max(g for g in range(1, heads + 1) if heads % g == 0 and g * length * length <= tile)
        return group, length
    block = 8
    while block * 2 * length <= tile and block * 2 < length:
        block *= 2
    return 1, block


def tiled_attention(q: jax.Array, k: jax.Array, v: jax.Array, *, tile: int = TILE_ELEMENTS) -> jax.Array:
    """softmax(q·kᵀ/√d)·v on (N, L, H, D) arrays, one cache-sized score tile at a time.

    Heads are folded with the batch; each tile is (g heads, b queries) against all L keys, so the softmax of a
    row is computed in one go (max, exp, sum) and no online rescaling is needed. Queries are padded to a multiple
    of b (padded rows are dropped; keys are never padded). Logits and softmax in float32; the probabilities meet
    `v` in its own dtype and the output is normalised after that product. Under `jax.grad` each tile's scores are
    recomputed in the backward pass: memory for one tile, not for the (L × L) matrix of every head.
    """
    n, length, heads, depth = q.shape
    rows = n * heads
    group, block = _tile_shape(rows, length, tile)
    blocks = -(-length // block)
    padded = blocks * block
    scale = 1.0 / math.sqrt(depth)
    f32 = jnp.float32

    def fold(t):  # (N, L, H, D) -> (N·H, L, D)
        return t.transpose(0, 2, 1, 3).reshape(rows, t.shape[1], t.shape[-1])

    qf = (fold(q).astype(f32) * scale).astype(q.dtype)
    kf, vf = fold(k), fold(v)

    def attend(qt, kt, vt):  # (g, b, D), (g, L, D), (g, L, D) -> (g, b, D)
        s = jnp.einsum("gqd,gkd->gqk", qt, kt, preferred_element_type=f32)
        p = jnp.exp(s - jnp.max(s, axis=-1, keepdims=True))
        o = jnp.einsum("gqk,gkd->gqd", p.astype(vt.dtype), vt, preferred_element_type=f32)
        return (o / jnp.sum(p, axis=-1, keepdims=True)).astype(q.dtype)

    groups = rows // group
    if groups * blocks == 1:
        out = attend(qf, kf, vf)
    else:
        if padded != length:
            qf = jnp.pad(qf, ((0, 0), (0, padded - length), (0, 0)))
        # Outer loop over head groups (their keys and values are sliced once), inner loop over query blocks.
        qt = qf.reshape(groups, group, blocks, block, depth).transpose(0, 2, 1, 3, 4)
        kg = kf.reshape(groups, group, length, depth)
        vg = vf.reshape(groups, group, length, v.shape[-1])

        # Each tile is rematerialised in the backward pass, so a gradient keeps one tile's scores at a time
        # instead of every tile's (the whole score matrix), as flash attention does.
        attend_tile = jax.checkpoint(attend, prevent_cse=False)

        def per_group(args):
            q_group, k_group, v_group = args
            return jax.lax.map(lambda q_tile: attend_tile(q_tile, k_group, v_group), q_group)

        out = jax.lax.map(per_group, (qt, kg, vg)).transpose(0, 2, 1, 3, 4)  # (groups, g, blocks, b, D)
        out = out.reshape(rows, padded, -1)[:, :length]
    return out.reshape(n, heads, length, -1).transpose(0, 2, 1, 3)


def dot_product_attention(q: jax.Array, k: jax.Array, v: jax.Array, *, implementation: str | None = None,
                          budget: int = SCORE_BLOCK_ELEMENTS) -> jax.Array:
    """softmax(q·kᵀ/√d)·v on (N, L, H, D) arrays.

    `implementation`: "tiled" (`tiled_attention`), or None / "xla" / "cudnn" for `jax.nn.dot_product_attention`
    in query blocks when the score matrix exceeds `budget` elements. None picks "tiled" when the default backend
    is the CPU.
    """
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"unknown attention implementation {implementation!r}; choose from {IMPLEMENTATIONS}")
    if implementation == "tiled" or (implementation is None and jax.default_backend() == "cpu"):
        return tiled_attention(q, k, v)
    n, length, heads, _ = q.shape
    block = _query_block(length, n * heads, budget)
    if block == length:
        return jax.nn.dot_product_attention(q, k, v, implementation=implementation)
    qb = q.reshape(n, length // block, block, heads, q.shape[-1]).swapaxes(0, 1)
    # Rematerialised per block in the backward pass (see `tiled_attention`).
    attend_block = jax.checkpoint(lambda qi: jax.nn.dot_product_attention(qi, k, v, implementation=implementation),
                                  prevent_cse=False)
    out = jax.lax.map(attend_block, qb)
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
