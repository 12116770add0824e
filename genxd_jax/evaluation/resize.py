"""Resizing and scaling images to the FID Inception's 299×299 input, as the reference implementations do.

Images in, `(N, H, W, 3)` float in [0, 1]; network input out, `(N, size, size, 3)` float32. FID values
move by several points between these conventions (Parmar et al., "On Aliased Resizing and Surprising
Subtleties in GAN Evaluation", 2022), so a reported FID must name its mode:

* `pytorch` — pytorch-fid 0.3.0 (`InceptionV3`, the default here): `F.interpolate(bilinear,
  align_corners=False)`, i.e. half-pixel centres, no antialiasing; scaling `2x − 1`.
* `tf1` — the original TF FID (TTUR), torch-fidelity and torchmetrics: TF1 `resize_bilinear`
  (align_corners=False, no half-pixel centres, no antialiasing); scaling `(255x − 128) / 128`.
* `clean` — clean-fid 0.1.35 `mode="clean"`: PIL bicubic per channel in float (antialiased), clipped to
  [0, 255]; scaling `(255x − 128) / 128`.

An image already `size × size` is not resampled in any mode (all three references are the identity then).

**Default: `pytorch`** (see `DEFAULT_FID_RESIZE`), because pytorch-fid is the implementation the
video-diffusion papers GenXD is compared with most commonly run, and its weights' naming is the one
`load_inception` reads; use `clean` for new comparisons where aliasing matters (downsampling large images).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from genxd_jax.resampling import linear_resize_matrix

__all__ = ["DEFAULT_FID_RESIZE", "FID_RESIZE_MODES", "resize_bilinear_tf1", "resize_for_inception"]

FID_RESIZE_MODES = ("pytorch", "tf1", "clean")
DEFAULT_FID_RESIZE = "pytorch"


def resize_bilinear_tf1(x: jax.Array, height: int, width: int) -> jax.Array:
    """TF1 `tf.image.resize_bilinear(align_corners=False)` (legacy, no half-pixel centres) of `(N, H, W, C)`.

    Output pixel `i` samples the input at `i * in / out` (top-left aligned), linearly between the two
    neighbours, the last input pixel repeated past the edge (`genxd_jax.resampling`, convention ``tf1``).
    """
    x = jnp.asarray(x, jnp.float32)
    if x.shape[1:3] == (height, width):
        return x
    ry = jnp.asarray(linear_resize_matrix(x.shape[1], height, "tf1"), jnp.float32)
    rx = jnp.asarray(linear_resize_matrix(x.shape[2], width, "tf1"), jnp.float32)
    return jnp.einsum("yh,nhwc,xw->nyxc", ry, x, rx, precision=jax.lax.Precision.HIGHEST)


def resize_for_inception(images: jax.Array, mode: str = DEFAULT_FID_RESIZE, size: int = 299) -> jax.Array:
    """`(N, H, W, 3)` images in [0, 1] -> `(N, size, size, 3)` Inception input for `mode` (see the table)."""
    if mode not in FID_RESIZE_MODES:
        raise ValueError(f"unknown FID resize mode {mode!r}; expected one of {FID_RESIZE_MODES}")
    x = jnp.asarray(images, jnp.float32)
    n, h, w, c = x.shape
    same = (h, w) == (size, size)
    if mode == "pytorch":
        if not same:
            x = jax.image.resize(x, (n, size, size, c), "bilinear", antialias=False)
        return 2.0 * x - 1.0
    x = x * 255.0
    if mode == "tf1":
        x = resize_bilinear_tf1(x, size, size)
    elif not same:  # clean
        x = jnp.clip(jax.image.resize(x, (n, size, size, c), "bicubic", antialias=True), 0.0, 255.0)
    return (x - 128.0) / 128.0
