"""Full-reference image metrics: PSNR and SSIM, batched and jitted.

Both metrics take channels-last images of shape `(..., H, W, C)` with any number of leading batch
dimensions (frames, views, batch) and return one value per image, of shape `(...)`. Values are in the
units of `max_val`, the dynamic range of the images (1.0 for images in [0, 1], 255.0 for uint8 images,
2.0 for images in [-1, 1]); computation is in float32 whatever the input dtype.

* `psnr` is `10 * log10(max_val**2 / mse)` in dB, with the MSE taken over H, W and C. Identical
  images give `+inf` (as `tf.image.psnr` and `skimage.metrics.peak_signal_noise_ratio` do).
* `ssim` is the SSIM of Wang et al. (2004): an 11x11 Gaussian window with sigma 1.5 (normalised), a
  "valid" convolution (no padding), population (biased) local variances, `C1 = (k1 max_val)^2`,
  `C2 = (k2 max_val)^2`, the mean of the SSIM map per channel, then the mean over channels. It matches
  `tf.image.ssim` and `skimage.metrics.structural_similarity(..., channel_axis=-1, gaussian_weights=True,
  sigma=1.5, use_sample_covariance=False, data_range=max_val)`.

`evaluate_views` is the wrapper that training and the notebooks use: mean PSNR / SSIM over the selected
frames of a batch of generated views.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["psnr", "ssim", "evaluate_views"]


def _check_pair(a, b, name: str) -> tuple[jax.Array, jax.Array]:
    """Validates two channels-last image batches and casts them to float32."""
    a = jnp.asarray(a)
    b = jnp.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"{name}: images must have the same shape, got {a.shape} and {b.shape}")
    if a.ndim < 3:
        raise ValueError(f"{name}: images must be channels-last (..., H, W, C), got shape {a.shape}")
    if 0 in a.shape[-3:]:
        raise ValueError(f"{name}: empty image dimensions in shape {a.shape}")
    return a.astype(jnp.float32), b.astype(jnp.float32)


@jax.jit
def _psnr(a: jax.Array, b: jax.Array, max_val: jax.Array) -> jax.Array:
    mse = jnp.mean(jnp.square(a - b), axis=(-3, -2, -1))
    # mse == 0 gives +inf (division by zero in float32), as in the references.
    return 10.0 * jnp.log10(jnp.square(max_val) / mse)


def psnr(a, b, max_val: float = 1.0) -> jax.Array:
    """Peak signal-to-noise ratio in dB, one value per image.

    Args:
        a: images, shape `(..., H, W, C)`, any real dtype (cast to float32).
        b: images of the same shape as `a`.
        max_val: dynamic range of the images (max minus min possible value), e.g. 1.0 or 255.0.

    Returns:
        float32 array of shape `a.shape[:-3]` (a scalar for a single image); `+inf` where the images
        are identical.
    """
    a, b = _check_pair(a, b, "psnr")
    return _psnr(a, b, jnp.float32(max_val))


def _gaussian_kernel(size: int, sigma: jax.Array) -> jax.Array:
    """Normalised 1-D Gaussian of `size` taps centred on the middle tap, shape `(size,)`."""
    x = jnp.arange(size, dtype=jnp.float32) - (size - 1) / 2.0
    g = jnp.exp(-jnp.square(x) / (2.0 * jnp.square(sigma)))
    return g / jnp.sum(g)


def _filter_valid(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Separable 'valid' filtering of `x` of shape `(N, H, W, 1)` with a 1-D kernel in both axes."""
    size = kernel.shape[0]
    dn = ("NHWC", "HWIO", "NHWC")
    hp = jax.lax.Precision.HIGHEST
    kh = kernel.reshape(size, 1, 1, 1)
    kw = kernel.reshape(1, size, 1, 1)
    x = jax.lax.conv_general_dilated(x, kh, (1, 1), "VALID", dimension_numbers=dn, precision=hp)
    return jax.lax.conv_general_dilated(x, kw, (1, 1), "VALID", dimension_numbers=dn, precision=hp)


@functools.partial(jax.jit, static_argnames=("filter_size",))
def _ssim(a, b, max_val, filter_size, filter_sigma, k1, k2) -> jax.Array:
    batch_shape = a.shape[:-3]
    h, w, c = a.shape[-3:]

    # (..., H, W, C) -> (N * C, H, W, 1): every channel is filtered independently.
    def to_planes(x):
        x = x.reshape((-1, h, w, c))
        return jnp.moveaxis(x, -1, 1).reshape((-1, h, w, 1))

    a, b = to_planes(a), to_planes(b)
    kernel = _gaussian_kernel(filter_size, filter_sigma)
    filt = functools.partial(_filter_valid, kernel=kernel)
    mu_a, mu_b = filt(a), filt(b)
    var_a = filt(a * a) - jnp.square(mu_a)
    var_b = filt(b * b) - jnp.square(mu_b)
    cov = filt(a * b) - mu_a * mu_b
    c1 = jnp.square(k1 * max_val)
    c2 = jnp.square(k2 * max_val)
    luminance = (2.0 * mu_a * mu_b + c1) / (jnp.square(mu_a) + jnp.square(mu_b) + c1)
    contrast_structure = (2.0 * cov + c2) / (var_a + var_b + c2)
    ssim_map = luminance * contrast_structure  # (N * C, H - fs + 1, W - fs + 1, 1)
    per_channel = jnp.mean(ssim_map, axis=(1, 2, 3)).reshape((-1, c))
    return jnp.mean(per_channel, axis=-1).reshape(batch_shape)


def ssim(
    a,
    b,
    max_val: float = 1.0,
    filter_size: int = 11,
    filter_sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> jax.Array:
    """Structural similarity (Wang et al. 2004), one value per image.

    Args:
        a: images, shape `(..., H, W, C)` with `H, W >= filter_size`, any real dtype (cast to float32).
        b: images of the same shape as `a`.
        max_val: dynamic range of the images (max minus min possible value), e.g. 1.0 or 255.0.
        filter_size: side of the square Gaussian window, in pixels.
        filter_sigma: standard deviation of the Gaussian window, in pixels.
        k1: luminance stabiliser, `C1 = (k1 * max_val)**2`.
        k2: contrast stabiliser, `C2 = (k2 * max_val)**2`.

    Returns:
        float32 array of shape `a.shape[:-3]`: the mean of the SSIM map over the valid region,
        averaged over channels; 1.0 for identical images, at most 1.0 in general.
    """
    a, b = _check_pair(a, b, "ssim")
    filter_size = int(filter_size)
    if filter_size < 1:
        raise ValueError(f"ssim: filter_size must be positive, got {filter_size}")
    h, w = a.shape[-3:-1]
    if h < filter_size or w < filter_size:
        raise ValueError(f"ssim: images of size {h}x{w} are smaller than filter_size={filter_size}")
    f32 = jnp.float32
    return _ssim(a, b, f32(max_val), filter_size, f32(filter_sigma), f32(k1), f32(k2))


def evaluate_views(
    generated,
    target,
    mask=None,
    *,
    value_range: Sequence[float] = (0.0, 1.0),
    clip: bool = True,
    max_psnr: float | None = 100.0,
) -> dict[str, jax.Array]:
    """Mean PSNR and SSIM of generated views against target views over the selected frames.

    The images are mapped from `value_range` to [0, 1] (and clipped there when `clip`), then scored
    with `max_val=1`, so SSIM's constants are those of [0, 1] images whatever the model's range (pass
    `value_range=(-1, 1)` for decoded latents). Jit-compatible: the mask is applied as weights, not by
    indexing.

    Args:
        generated: generated views, shape `(..., H, W, C)`, e.g. `(B, F, H, W, 3)`.
        target: ground-truth views, same shape as `generated`.
        mask: optional boolean (or 0/1) array broadcastable to the leading shape `generated.shape[:-3]`,
            e.g. `(B, F)` or `(F,)`; True marks frames to score (e.g. the non-conditioning frames).
            None scores every frame.
        value_range: `(low, high)` of the images' values.
        clip: clip both image sets to `value_range` before scoring.
        max_psnr: cap on each frame's PSNR in dB, so that an exactly reproduced frame (PSNR inf)
            does not make the mean infinite; None keeps inf.

    Returns:
        `{"psnr": dB, "ssim": unitless, "num_frames": count}` as float32 scalars: means over the
        selected frames (NaN when no frame is selected).
    """
    gen, tgt = _check_pair(generated, target, "evaluate_views")
    low, high = (float(v) for v in value_range)
    if not high > low:
        raise ValueError(
            f"evaluate_views: value_range must be (low, high) with high > low, got {value_range}"
        )
    batch_shape = gen.shape[:-3]
    if mask is None:
        weights = jnp.ones(batch_shape, jnp.float32)
    else:
        mask = jnp.asarray(mask)
        try:
            if np.broadcast_shapes(mask.shape, batch_shape) != batch_shape:
                raise ValueError
        except ValueError:
            raise ValueError(
                f"evaluate_views: mask of shape {mask.shape} does not broadcast to the frame shape "
                f"{batch_shape} of images {gen.shape}"
            ) from None
        weights = jnp.broadcast_to(mask, batch_shape).astype(jnp.float32)

    def normalise(x):
        x = (x - low) / (high - low)
        return jnp.clip(x, 0.0, 1.0) if clip else x

    gen, tgt = normalise(gen), normalise(tgt)
    p = psnr(gen, tgt, 1.0)
    if max_psnr is not None:
        p = jnp.minimum(p, jnp.float32(max_psnr))
    s = ssim(gen, tgt, 1.0)
    selected = weights > 0
    n = jnp.sum(weights)

    def weighted_mean(v):
        # `where` rather than `weights * v` so that an unselected inf frame contributes 0, not NaN.
        return jnp.sum(jnp.where(selected, weights * v, 0.0)) / n

    return {"psnr": weighted_mean(p), "ssim": weighted_mean(s), "num_frames": n}
