"""The dense rasteriser: every pixel against every Gaussian. Small scenes only; the test oracle.

It implements the reference compositing rules (graphdeco-inria diff-gaussian-rasterization ``renderCUDA``)
literally, including the tile granularity of the reference: a Gaussian is only evaluated at pixels whose
16×16 tile lies in its ``tile_rect``. Per pixel, front to back by view-space depth (ties by slot index):

- power = −½(a·dx² + c·dy²) − b·dx·dy with d = mean2d − pixel centre; skipped if power > 0;
- α = min(0.99, o·exp(power)); skipped if α < 1/255;
- stop when T·(1 − α) < 1e-4: that Gaussian is not blended and nothing after it is;
- C = Σ cᵢ αᵢ Tᵢ + T_final·background, depth = Σ zᵢ αᵢ Tᵢ, alpha = 1 − T_final.

Memory is O(H·W·N); use :mod:`genxd_jax.lift.raster_tiled` for real scenes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from genxd_jax.lift.project import TILE_SIZE, Projection

ALPHA_MAX = 0.99
ALPHA_MIN = 1.0 / 255.0
T_MIN = 1e-4


def gaussian_alpha(dx, dy, conic_a, conic_b, conic_c, opacities):
    """Reference per-sample α for pixel offsets (dx, dy) = mean2d − pixel centre (broadcasting arrays).

    conic (a, b, c) is the upper triangle of Σ2D⁻¹. Returns α with skipped samples (power > 0 or α < 1/255)
    set to 0.
    """
    power = -0.5 * (conic_a * dx * dx + conic_c * dy * dy) - conic_b * dx * dy
    ok = power <= 0.0
    alpha = jnp.minimum(ALPHA_MAX, opacities * jnp.exp(jnp.where(ok, power, 0.0)))
    return jnp.where(ok & (alpha >= ALPHA_MIN), alpha, 0.0)


def composite_dense(alpha):
    """The reference compositing of ordered samples, literally: T as a running product.

    Args:
      alpha: (..., K) α of the samples in front-to-back order (0 = skipped).
    Returns (weights (..., K) = αᵢ·Tᵢ for blended samples, else 0; final transmittance (...,)). A sample is
    blended iff the running product of (1 − α) up to and including it is ≥ 1e-4 (the product is a prefix, so
    once a sample fails, every later one fails too: the reference's "done").
    """
    one_minus = 1.0 - alpha
    incl = jnp.cumprod(one_minus, axis=-1)
    excl = jnp.concatenate([jnp.ones_like(incl[..., :1]), incl[..., :-1]], axis=-1)
    blended = jax.lax.stop_gradient(incl) >= T_MIN
    weights = jnp.where(blended, alpha * excl, 0.0)
    return weights, jnp.prod(jnp.where(blended, one_minus, 1.0), axis=-1)


def pixel_centres(height: int, width: int, dtype=jnp.float32):
    """(H, W, 2) pixel-centre coordinates (i + ½, j + ½) as (u, v)."""
    u = jnp.arange(width, dtype=dtype) + 0.5
    v = jnp.arange(height, dtype=dtype) + 0.5
    uu, vv = jnp.meshgrid(u, v, indexing="xy")
    return jnp.stack([uu, vv], axis=-1)


def rasterize_dense(proj: Projection, height: int, width: int, background, tile_size: int = TILE_SIZE):
    """Composites projected Gaussians at every pixel.

    Args:
      proj: the :class:`~genxd_jax.lift.project.Projection` of N slots.
      height, width: image size (static).
      background: (3,) colour added with the final transmittance.
    Returns (rgb (H, W, 3), alpha (H, W), depth (H, W), tile_counts (num_tiles,) int32 Gaussians per tile).
    """
    dtype = proj.means2d.dtype
    background = jnp.asarray(background, dtype)
    key = jnp.where(proj.visible, jax.lax.stop_gradient(proj.depths), jnp.inf)
    order = jnp.argsort(key, stable=True)
    means2d = proj.means2d[order]
    conics = proj.conics[order]
    opac = proj.opacities[order]
    colors = proj.colors[order]
    depths = proj.depths[order]
    rect = proj.tile_rect[order]
    visible = proj.visible[order]

    pix = pixel_centres(height, width, dtype).reshape(-1, 2)  # (P, 2)
    tx = (jnp.arange(width) // tile_size)[None, :].repeat(height, 0).reshape(-1)
    ty = (jnp.arange(height) // tile_size)[:, None].repeat(width, 1).reshape(-1)
    in_rect = (
        (tx[:, None] >= rect[None, :, 0])
        & (tx[:, None] < rect[None, :, 2])
        & (ty[:, None] >= rect[None, :, 1])
        & (ty[:, None] < rect[None, :, 3])
        & visible[None, :]
    )
    d = means2d[None, :, :] - pix[:, None, :]
    alpha = gaussian_alpha(d[..., 0], d[..., 1], conics[None, :, 0], conics[None, :, 1], conics[None, :, 2], opac[None])
    alpha = jnp.where(in_rect, alpha, 0.0)
    weights, t_final = composite_dense(alpha)
    rgb = jnp.matmul(weights, colors, precision=jax.lax.Precision.HIGHEST) + t_final[:, None] * background
    depth = jnp.matmul(weights, depths, precision=jax.lax.Precision.HIGHEST)

    gx = -(-width // tile_size)
    gy = -(-height // tile_size)
    txs, tys = jnp.meshgrid(jnp.arange(gx), jnp.arange(gy), indexing="xy")
    txs, tys = txs.reshape(-1), tys.reshape(-1)
    covers = (
        (txs[:, None] >= proj.tile_rect[None, :, 0])
        & (txs[:, None] < proj.tile_rect[None, :, 2])
        & (tys[:, None] >= proj.tile_rect[None, :, 1])
        & (tys[:, None] < proj.tile_rect[None, :, 3])
        & proj.visible[None, :]
    )
    tile_counts = jnp.sum(covers.astype(jnp.int32), axis=-1)
    return (
        rgb.reshape(height, width, 3),
        (1.0 - t_final).reshape(height, width),
        depth.reshape(height, width),
        tile_counts,
    )
