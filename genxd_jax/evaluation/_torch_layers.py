"""Channels-last NNX layers whose parameter paths are PyTorch `state_dict` keys (metrics networks).

The metric networks (LPIPS, the FID Inception) load reference PyTorch weights with
`genxd_jax.convert.torch_layout.load_torch_state`, which maps an NNX path to a torch key by joining it with
dots and renaming `kernel`/`scale` to `weight`. The layers here name their parameters accordingly:

| layer       | NNX parameters (shapes)                                   | torch keys                          |
| ----------- | --------------------------------------------------------- | ----------------------------------- |
| `Conv2d`    | `kernel` (kh, kw, I, O) HWIO, `bias` (O,) or absent       | `weight` (O, I, kh, kw), `bias`     |
| `BatchNorm` | `scale`, `bias`, `running_mean`, `running_var`, all (C,)  | `weight`, `bias`, `running_mean`, … |

Convolutions run at `Precision.HIGHEST` so that metric values do not depend on the accelerator's default
(TF32 / bfloat16 passes on GPUs and TPUs): metrics are compared across papers to 3-4 digits.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

HIGHEST = jax.lax.Precision.HIGHEST


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


class Conv2d(nnx.Module):
    """`torch.nn.Conv2d` (no dilation, no groups) on NHWC inputs; zero padding `padding` on each side."""

    def __init__(self, cin: int, cout: int, kernel_size, *, stride=1, padding=0, use_bias: bool = True,
                 rngs: nnx.Rngs):
        kh, kw = _pair(kernel_size)
        self.stride = _pair(stride)
        self.padding = _pair(padding)
        init = nnx.initializers.lecun_normal()
        self.kernel = nnx.Param(init(rngs.params(), (kh, kw, cin, cout), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((cout,), jnp.float32)) if use_bias else None

    def __call__(self, x: jax.Array) -> jax.Array:
        ph, pw = self.padding
        y = jax.lax.conv_general_dilated(
            x, self.kernel[...], self.stride, ((ph, ph), (pw, pw)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=HIGHEST)
        if self.bias is not None:
            y = y + self.bias[...]
        return y


class BatchNorm(nnx.Module):
    """Inference-mode `torch.nn.BatchNorm2d` over the last axis: `(x − mean) / sqrt(var + eps) · scale + bias`."""

    def __init__(self, channels: int, *, eps: float):
        self.eps = float(eps)
        self.scale = nnx.Param(jnp.ones((channels,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((channels,), jnp.float32))
        self.running_mean = nnx.Param(jnp.zeros((channels,), jnp.float32))
        self.running_var = nnx.Param(jnp.ones((channels,), jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        inv = jax.lax.rsqrt(self.running_var[...] + self.eps) * self.scale[...]
        return (x - self.running_mean[...]) * inv + self.bias[...]


def max_pool(x: jax.Array, size: int, stride: int, padding: int = 0) -> jax.Array:
    """`torch.nn.MaxPool2d(size, stride, padding)` (floor mode) on NHWC; padding never wins the max."""
    pad = ((0, 0), (padding, padding), (padding, padding), (0, 0))
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, size, size, 1), (1, stride, stride, 1), pad)


def avg_pool_exclude_pad(x: jax.Array, size: int, stride: int, padding: int) -> jax.Array:
    """`torch.nn.functional.avg_pool2d(..., count_include_pad=False)` on NHWC: padded cells are not counted."""
    pad = ((0, 0), (padding, padding), (padding, padding), (0, 0))
    window, strides = (1, size, size, 1), (1, stride, stride, 1)
    total = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, pad)
    ones = jnp.ones((1,) + x.shape[1:3] + (1,), x.dtype)
    count = jax.lax.reduce_window(ones, 0.0, jax.lax.add, window, strides, pad)
    return total / count
