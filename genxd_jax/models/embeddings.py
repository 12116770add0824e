"""Sinusoidal projections and the `TimestepEmbedding` MLP (diffusers `Timesteps` / `TimestepEmbedding`)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from genxd_jax.models.layers import DTypes, linear


def sinusoidal_embedding(values: jax.Array, dim: int, max_period: float = 10000.0) -> jax.Array:
    """diffusers `Timesteps(dim, flip_sin_to_cos=True, downscale_freq_shift=0)`, always in float32.

    Args:
      values: (N,) any real values (timesteps, motion strengths, frame indices).
      dim: even embedding width D.
    Returns:
      (N, D) float32: cos(v·ω_k) for k < D/2 followed by sin(v·ω_k), ω_k = exp(−ln(max_period)·k/(D/2)).
    """
    if dim % 2:
        raise ValueError(f"sinusoidal embedding width must be even, got {dim}")
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    args = jnp.asarray(values, jnp.float32)[:, None] * freqs[None, :]
    return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)


class TimestepEmbedding(nnx.Module):
    """Linear(in → hidden) → SiLU → Linear(hidden → out); keys `linear_1`, `linear_2`."""

    def __init__(self, in_features: int, hidden: int, out_features: int | None = None, *, dt: DTypes,
                 rngs: nnx.Rngs):
        self.linear_1 = linear(in_features, hidden, dt=dt, rngs=rngs)
        self.linear_2 = linear(hidden, out_features or hidden, dt=dt, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.linear_2(jax.nn.silu(self.linear_1(x)))
