"""Full-reference image metrics: PSNR and SSIM, batched and jitted.

Both metrics take channels-last images of shape `(..., H, W, C)` with any number of leading batch
dimensions (frames, views, batch) and return one value per image, of shape `(...)`. Values are in the
units of `max_val`, the dynamic range of the images (1.0 for images in [0, 1], 255.0 for uint8 images,
2.0 for images in [-1, 1]); computation is in float32 whatever the input dtype.

Both are computed by dm-pix (`dm_pix.psnr`, `dm_pix.ssim`, DeepMind's maintained JAX image library); this
module adds the shape checks, any leading batch shape, `max_val` for PSNR, float32 casting and jit.

* `psnr` is `10 * log10(max_val**2 / mse)` in dB, with the MSE taken over H, W and C. Identical
  images give `+inf` (as `tf.image.psnr` and `skimage.metrics.peak_signal_noise_ratio` do).
* `ssim` is the SSIM of Wang et al. (2004): an 11x11 Gaussian window with sigma 1.5 (normalised), a
  "valid" convolution (no padding), population (biased) local variances, `C1 = (k1 max_val)^2`,
  `C2 = (k2 max_val)^2`, the mean of the SSIM map over pixels and channels. It matches `tf.image.ssim`
  and `skimage.metrics.structural_similarity(..., channel_axis=-1, gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=max_val)` (tested to 2e-5). dm-pix additionally clamps the
  local variances at `eps_f32**2` and the covariance to `±sqrt(var_a var_b)`, which only removes
  negative variances from float rounding (the standard definition otherwise).

`evaluate_views` is the wrapper that training and the notebooks use: mean PSNR / SSIM over the selected
frames of a batch of generated views.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import dm_pix
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
    h, w, c = a.shape[-3:]
    # dm-pix's PSNR assumes a dynamic range of 1: scale both images by 1 / max_val (MSE / max_val**2).
    flat = lambda x: (x / max_val).reshape((-1, h, w, c))  # noqa: E731
    # mse == 0 gives +inf (-10 log10(0)), as in the references.
    return dm_pix.psnr(flat(a), flat(b)).reshape(a.shape[:-3])


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


@functools.partial(jax.jit, static_argnames=("filter_size",))
def _ssim(a, b, max_val, filter_size, filter_sigma, k1, k2) -> jax.Array:
    h, w, c = a.shape[-3:]
    out = dm_pix.ssim(a.reshape((-1, h, w, c)), b.reshape((-1, h, w, c)), max_val=max_val,
                      filter_size=filter_size, filter_sigma=filter_sigma, k1=k1, k2=k2,
                      precision=jax.lax.Precision.HIGHEST)
    return out.reshape(a.shape[:-3])


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
