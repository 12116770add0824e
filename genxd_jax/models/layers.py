"""Leaf layers with PyTorch (diffusers) numerics, channels-last, and logical axis names on every parameter.

Attribute names follow the released checkpoint: a Linear or Conv owns `kernel` and `bias` (PyTorch `weight`
and `bias`), a norm owns `scale` and `bias`. `genxd_jax.convert.torch_layout` maps between the two.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from genxd_jax.models.conv import conv_general_dilated


@dataclasses.dataclass(frozen=True)
class DTypes:
    """Compute dtype of activations and storage dtype of parameters (norm statistics are always float32)."""

    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32


class InitKeys:
    """Parameter-initialisation randomness for building a model; stands in for `nnx.Rngs`.

    Layers only call `rngs.params()`. Concrete builds get a NumPy generator seeded by (seed, request number):
    drawing a parameter is then a host-side call, not a JAX program compiled for every distinct shape (which
    made building even the test-sized UNet take tens of seconds). Abstract builds (`traced=True`, under
    `nnx.eval_shape`) get `fold_in(key(seed), i)` with a plain Python counter, which keeps tracing linear in
    the number of parameters.
    """

    def __init__(self, seed: int = 0, *, traced: bool = False):
        self._seed = seed
        self._traced = traced
        self._count = 0

    def params(self):
        self._count += 1
        if self._traced:
            return jax.random.fold_in(jax.random.key(self._seed), self._count)
        return np.random.default_rng((self._seed, self._count))


def materialize(factory):
    """Runs the module `factory` with eager sharding off (parameters are placed later, by logical names)."""
    with nnx.use_eager_sharding(False):
        return factory()


def _uniform(key, shape, dtype, bound: float):
    if isinstance(key, np.random.Generator):
        return jnp.asarray(key.uniform(-bound, bound, shape), dtype)
    return jax.random.uniform(key, shape, dtype, -bound, bound)


def _torch_default_kernel_init():
    """PyTorch Linear/Conv default, kaiming_uniform(a=√5): U(−1/√fan_in, 1/√fan_in), fan_in = ∏ shape[:-1]."""

    def init(key, shape, dtype=jnp.float32):
        return _uniform(key, shape, dtype, 1.0 / math.sqrt(max(math.prod(shape[:-1]), 1)))

    return init


def _torch_default_bias_init(fan_in: int):
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return lambda key, shape, dtype=jnp.float32: _uniform(key, shape, dtype, bound)


def linear(in_features: int, out_features: int, *, dt: DTypes, rngs: nnx.Rngs, use_bias: bool = True) -> nnx.Linear:
    """A Linear layer; kernel (in, out) labelled ("embed", "mlp"), bias ("mlp",)."""
    return nnx.Linear(
        in_features, out_features, use_bias=use_bias, dtype=dt.dtype, param_dtype=dt.param_dtype,
        kernel_init=_torch_default_kernel_init(), bias_init=_torch_default_bias_init(in_features),
        kernel_metadata={"sharding": ("embed", "mlp")}, bias_metadata={"sharding": ("mlp",)}, rngs=rngs)


def conv(in_features: int, out_features: int, kernel_size: tuple[int, ...], *, dt: DTypes, rngs: nnx.Rngs,
         strides: int | tuple[int, ...] = 1, padding=None) -> nnx.Conv:
    """A convolution with PyTorch's symmetric padding (k // 2 per side unless `padding` is given).

    Kernel (*kernel_size, in, out) labelled (None, ..., "embed", "mlp"). Runs through
    `genxd_jax.models.conv.conv_general_dilated` (XLA's convolution; an im2col matmul for small maps on the CPU).
    """
    if padding is None:
        padding = tuple((k // 2, k // 2) for k in kernel_size)
    fan_in = in_features * math.prod(kernel_size)
    return nnx.Conv(
        in_features, out_features, kernel_size, strides=strides, padding=padding, dtype=dt.dtype,
        param_dtype=dt.param_dtype, kernel_init=_torch_default_kernel_init(),
        bias_init=_torch_default_bias_init(fan_in),
        kernel_metadata={"sharding": (None,) * len(kernel_size) + ("embed", "mlp")},
        bias_metadata={"sharding": ("mlp",)}, conv_general_dilated=conv_general_dilated, rngs=rngs)


def conv2d(in_features: int, out_features: int, *, dt: DTypes, rngs: nnx.Rngs, kernel: int = 3,
           strides: int = 1, padding=None) -> nnx.Conv:
    """A 2-D convolution over (N, H, W, C) (PyTorch Conv2d, pad k // 2)."""
    return conv(in_features, out_features, (kernel, kernel), dt=dt, rngs=rngs, strides=strides,
                padding=padding)


def frame_conv(in_features: int, out_features: int, *, dt: DTypes, rngs: nnx.Rngs) -> nnx.Conv:
    """PyTorch Conv3d with kernel (3, 1, 1), padding (1, 0, 0), over (B, F, H, W, C): mixes frames only."""
    return conv(in_features, out_features, (3, 1, 1), dt=dt, rngs=rngs)


def group_norm(num_features: int, eps: float, *, dt: DTypes, rngs: nnx.Rngs, groups: int = 32) -> nnx.GroupNorm:
    """PyTorch GroupNorm: biased two-pass variance, statistics over every non-leading axis of the input.

    Feed (N, H, W, C) for per-image statistics and (B, F, H, W, C) for statistics pooled over frames.
    """
    return nnx.GroupNorm(
        num_features, num_groups=groups, epsilon=eps, use_fast_variance=False, dtype=dt.dtype,
        param_dtype=dt.param_dtype, scale_metadata={"sharding": ("norm",)}, bias_metadata={"sharding": ("norm",)},
        rngs=rngs)


def layer_norm(num_features: int, *, dt: DTypes, rngs: nnx.Rngs, eps: float = 1e-5) -> nnx.LayerNorm:
    """PyTorch LayerNorm (eps 1e-5, affine, two-pass variance) over the last axis."""
    return nnx.LayerNorm(
        num_features, epsilon=eps, use_fast_variance=False, dtype=dt.dtype, param_dtype=dt.param_dtype,
        scale_metadata={"sharding": ("norm",)}, bias_metadata={"sharding": ("norm",)}, rngs=rngs)


class Dropout(nnx.Module):
    """The parameter-free `Dropout(p=0)` slot of diffusers' `Sequential`s (`to_out.1`, `ff.net.1`): identity."""

    def __call__(self, x: jax.Array) -> jax.Array:
        return x


def scalar_param(value: float, *, dt: DTypes) -> nnx.Param:
    """A (1,)-shaped learned scalar (the blenders' logits), replicated."""
    return nnx.Param(jnp.full((1,), value, dt.param_dtype), sharding=(None,))
