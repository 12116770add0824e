"""Photometric losses of 3D-GS training: L1, D-SSIM and an optional LPIPS term.

    loss = (1 − λ)·L1 + λ·(1 − SSIM) [+ w_lpips·LPIPS],   λ = 0.2 (reference 3D-GS ``train.py``)

SSIM here is the reference training SSIM (graphdeco-inria ``utils/loss_utils.py``): an 11×11 Gaussian window,
σ = 1.5, C1 = 0.01², C2 = 0.03² (images in [0, 1]), filtered per channel with **zero padding** to the same size
("same" convolution), and the mean of the SSIM map over all pixels and channels. This differs from the
evaluation SSIM (`genxd_jax.evaluation.ssim`, a "valid" convolution as `tf.image.ssim`) only at the
5-pixel border, which a loss needs so that border pixels get gradients; in the interior the two maps are equal
(tested). LPIPS is off by default; pass a callable ``lpips_fn(a, b) -> distance`` on (H, W, 3) images in
[0, 1] (e.g. the one `genxd_jax.evaluation.load_lpips` returns) and a positive weight.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1 = 0.01**2
SSIM_C2 = 0.03**2


def l1_loss(pred, target, mask=None):
    """Mean absolute error over all elements (or over ``mask`` (H, W) pixels when given), a scalar."""
    err = jnp.abs(pred - target)
    if mask is None:
        return jnp.mean(err)
    m = jnp.broadcast_to(jnp.asarray(mask, err.dtype)[..., None], err.shape)
    return jnp.sum(err * m) / jnp.maximum(jnp.sum(m), 1.0)


def _gaussian_window(size: int, sigma: float):
    x = jnp.arange(size, dtype=jnp.float32) - (size - 1) / 2.0
    g = jnp.exp(-(x**2) / (2.0 * sigma**2))
    return g / jnp.sum(g)


def _filter_same(x, window):
    """Separable zero-padded filtering of (C, H, W) planes -> (C, H, W)."""
    size = window.shape[0]
    pad = size // 2
    x = x[:, None]  # (C, 1, H, W)
    dn = ("NCHW", "OIHW", "NCHW")
    hp = jax.lax.Precision.HIGHEST
    kh = window.reshape(1, 1, size, 1)
    kw = window.reshape(1, 1, 1, size)
    x = jax.lax.conv_general_dilated(x, kh, (1, 1), [(pad, pad), (0, 0)], dimension_numbers=dn, precision=hp)
    x = jax.lax.conv_general_dilated(x, kw, (1, 1), [(0, 0), (pad, pad)], dimension_numbers=dn, precision=hp)
    return x[:, 0]


def ssim_map(a, b, window_size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA):
    """The reference training SSIM map of two (H, W, C) images in [0, 1] -> (H, W, C) (zero-padded windows)."""
    a = jnp.moveaxis(jnp.asarray(a, jnp.float32), -1, 0)
    b = jnp.moveaxis(jnp.asarray(b, jnp.float32), -1, 0)
    w = _gaussian_window(window_size, sigma)
    filt = functools.partial(_filter_same, window=w)
    mu_a, mu_b = filt(a), filt(b)
    var_a = filt(a * a) - mu_a**2
    var_b = filt(b * b) - mu_b**2
    cov = filt(a * b) - mu_a * mu_b
    num = (2.0 * mu_a * mu_b + SSIM_C1) * (2.0 * cov + SSIM_C2)
    den = (mu_a**2 + mu_b**2 + SSIM_C1) * (var_a + var_b + SSIM_C2)
    return jnp.moveaxis(num / den, 0, -1)


def ssim(a, b):
    """Mean of :func:`ssim_map` over pixels and channels (the value the reference training loss uses)."""
    return jnp.mean(ssim_map(a, b))


def photometric_loss(
    pred,
    target,
    *,
    lambda_dssim: float = 0.2,
    lpips_fn: Callable | None = None,
    lpips_weight: float = 0.0,
):
    """(1 − λ)·L1 + λ·(1 − SSIM) [+ lpips_weight·lpips_fn(pred, target)] of (H, W, 3) images in [0, 1].

    Returns ``(loss, terms)`` with ``terms = {"l1", "ssim", "lpips"}`` scalars (lpips 0 when off). Jittable
    and differentiable in ``pred``; ``lpips_fn`` must be too when used.
    """
    if lpips_weight < 0:
        raise ValueError(f"lpips_weight must be >= 0, got {lpips_weight}")
    if lpips_weight > 0 and lpips_fn is None:
        raise ValueError("lpips_weight > 0 needs lpips_fn (e.g. genxd_jax.evaluation.load_lpips(path))")
    l1 = l1_loss(pred, target)
    s = ssim(pred, target)
    loss = (1.0 - lambda_dssim) * l1 + lambda_dssim * (1.0 - s)
    lp = jnp.zeros((), jnp.float32)
    if lpips_weight > 0:
        lp = jnp.asarray(lpips_fn(pred, target), jnp.float32).reshape(())
        loss = loss + lpips_weight * lp
    return loss, {"l1": l1, "ssim": s, "lpips": lp}
