"""Convolution for `nnx.Conv`: XLA's convolution, or one im2col matmul for small feature maps on the CPU.

XLA:CPU runs a 3×3 convolution on an 8×8 or 4×4 map at a third to a half of its matmul rate: at the UNet's
lowest levels (12 frames, 1280–2560 channels) `lax.conv_general_dilated` takes 48 ms where gathering the nine
shifted windows into (N·H·W, 9·C) patches and doing one matmul takes 16 ms (benchmarks/README.md, "CPU ops
against PyTorch"). On larger maps the patches no longer fit in cache and XLA's convolution is faster, so
`conv_general_dilated` below takes the matmul path only where it was measured to win: default backend CPU, a 2-D
channels-last convolution with stride 1, no dilation, one feature group, at most `IM2COL_MAX_PIXELS` output
positions per image and at least `IM2COL_MIN_CHANNELS` input channels. With few channels the matmul is slower
(512 channels at 8²: 32 against 19 ms) and the concatenation costs 0.1–0.3 s more to compile per convolution.
Everything else, and every GPU/TPU convolution, goes to XLA unchanged. The limits are read when a function is
traced: setting `IM2COL_MAX_PIXELS = 0` before `jax.jit` turns the matmul path off.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

IM2COL_MAX_PIXELS = 64  # 8×8: measured to win at 8² and 4², to lose at 16² and 32² (2-core Zen CPU, float32)
IM2COL_MIN_CHANNELS = 640  # measured to win from 640 input channels (the UNet's 8² and 4² levels), to lose at 512


def _is_nhwc(dimension_numbers, ndim: int) -> bool:
    """True for the channels-last layout `nnx.Conv` passes: NHWC input, HWIO kernel, NHWC output."""
    if ndim != 4:
        return False
    if dimension_numbers is None:
        return False
    if isinstance(dimension_numbers, lax.ConvDimensionNumbers):
        return (tuple(dimension_numbers.lhs_spec) == (0, 3, 1, 2) and tuple(dimension_numbers.rhs_spec) == (3, 2, 0, 1)
                and tuple(dimension_numbers.out_spec) == (0, 3, 1, 2))
    return tuple(dimension_numbers) == ("NHWC", "HWIO", "NHWC")


def _ones(values) -> bool:
    return values is None or all(v == 1 for v in values)


def im2col_conv(x: jax.Array, kernel: jax.Array, padding: Sequence[tuple[int, int]], *, precision=None,
                preferred_element_type=None) -> jax.Array:
    """Stride-1 2-D convolution as one matmul: x (N, H, W, C), kernel (kh, kw, C, D) → (N, H', W', D).

    `padding` is ((top, bottom), (left, right)) in pixels; H' = H + top + bottom − kh + 1 (likewise W'). The
    patch of output (n, y, x) is the kh·kw windows concatenated in kernel order (row-major, channels fastest),
    which is the HWIO kernel flattened to (kh·kw·C, D). Same sums as the convolution, in another order.
    """
    n, h, w, c = x.shape
    kh, kw, kc, d = kernel.shape
    if kc != c:
        raise ValueError(f"kernel expects {kc} input channels, input has {c}")
    (top, bottom), (left, right) = padding
    xp = jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    ho, wo = h + top + bottom - kh + 1, w + left + right - kw + 1
    patches = jnp.concatenate([xp[:, i:i + ho, j:j + wo, :] for i in range(kh) for j in range(kw)], axis=-1)
    y = lax.dot_general(patches.reshape(n * ho * wo, kh * kw * c), kernel.reshape(kh * kw * c, d),
                        (((1,), (0,)), ((), ())), precision=precision, preferred_element_type=preferred_element_type)
    return y.reshape(n, ho, wo, d)


def conv_general_dilated(lhs: jax.Array, rhs: jax.Array, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count: int = 1,
                         batch_group_count: int = 1, precision=None, preferred_element_type=None,
                         out_sharding=None) -> jax.Array:
    """`lax.conv_general_dilated`; on the CPU, small wide stride-1 2-D convolutions by `im2col_conv` (see above)."""
    explicit_padding = not isinstance(padding, str)
    if (jax.default_backend() == "cpu" and explicit_padding and out_sharding is None
            and _is_nhwc(dimension_numbers, lhs.ndim) and _ones(window_strides) and _ones(lhs_dilation)
            and _ones(rhs_dilation) and feature_group_count == 1 and batch_group_count == 1):
        (top, bottom), (left, right) = padding
        kh, kw = rhs.shape[:2]
        out_pixels = (lhs.shape[1] + top + bottom - kh + 1) * (lhs.shape[2] + left + right - kw + 1)
        if kh * kw > 1 and out_pixels <= IM2COL_MAX_PIXELS and lhs.shape[3] >= IM2COL_MIN_CHANNELS:
            return im2col_conv(lhs, rhs, padding, precision=precision, preferred_element_type=preferred_element_type)
    kwargs = {} if out_sharding is None else {"out_sharding": out_sharding}
    return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
                                    rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
                                    feature_group_count=feature_group_count, batch_group_count=batch_group_count,
                                    precision=precision, preferred_element_type=preferred_element_type, **kwargs)
