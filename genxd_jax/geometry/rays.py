"""Plücker ray maps at latent resolution, exactly as the official pipeline computes them (genxd-model.md
§13.3).

For frame f with (relative) OpenCV c2w (R, t) and normalised intrinsics K, the latent pixel (row i, column j)
of an (h, w) grid has normalised coordinates x = (j + 0.5)/w, y = (i + 0.5)/h. Its ray is

    d_cam = normalise(K⁻¹ · [x, y, 1]),   d = R · d_cam,   o = t,   plücker = [d, o × d]   (6 channels),

direction first, then the (un-normalised) moment. Channels are last: (F, h, w, 6).
"""

from __future__ import annotations

import jax.numpy as jnp


def pixel_centres(height: int, width: int, dtype=jnp.float32) -> jnp.ndarray:
    """Normalised pixel-centre coordinates (height, width, 2) as (x, y) = ((j + 0.5)/width, (i +
    0.5)/height)."""
    if height < 1 or width < 1:
        raise ValueError(f"ray grid must be at least 1×1, got {height}×{width}")
    xs = (jnp.arange(width, dtype=dtype) + 0.5) / width
    ys = (jnp.arange(height, dtype=dtype) + 0.5) / height
    x, y = jnp.meshgrid(xs, ys, indexing="xy")
    return jnp.stack([x, y], axis=-1)


def camera_ray_directions(intrinsics, height: int, width: int) -> jnp.ndarray:
    """Unit ray directions in camera axes (F, height, width, 3) from normalised intrinsics (F, 3, 3)."""
    k_inv = jnp.linalg.inv(jnp.asarray(intrinsics, jnp.float32))
    xy = pixel_centres(height, width)
    homog = jnp.concatenate([xy, jnp.ones_like(xy[..., :1])], axis=-1)
    d = jnp.einsum("fij,hwj->fhwi", k_inv, homog)
    return d / jnp.linalg.norm(d, axis=-1, keepdims=True)


def plucker_rays(c2w, intrinsics, height: int, width: int) -> jnp.ndarray:
    """Plücker ray maps (F, height, width, 6) = [d, o × d] in float32.

    Args:
      c2w: (F, 4, 4) OpenCV camera-to-world poses (GenXD passes poses relative to the first context camera).
      intrinsics: (F, 3, 3) normalised intrinsics.
      height, width: the grid (the latent resolution, image size / 8).
    """
    c2w = jnp.asarray(c2w, jnp.float32)
    intrinsics = jnp.asarray(intrinsics, jnp.float32)
    if c2w.ndim != 3 or c2w.shape[1:] != (4, 4):
        raise ValueError(f"c2w must be (F, 4, 4), got {c2w.shape}")
    if intrinsics.shape != (c2w.shape[0], 3, 3):
        raise ValueError(f"intrinsics must be ({c2w.shape[0]}, 3, 3), got {intrinsics.shape}")
    d_cam = camera_ray_directions(intrinsics, height, width)
    d = jnp.einsum("fij,fhwj->fhwi", c2w[:, :3, :3], d_cam)
    o = jnp.broadcast_to(c2w[:, None, None, :3, 3], d.shape)
    return jnp.concatenate([d, jnp.cross(o, d)], axis=-1)
