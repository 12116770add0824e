"""``render``: Gaussians + one camera -> rgb, alpha, depth (jittable, differentiable).

Conventions (shared by all of :mod:`genxd_jax.lift`): ``c2w`` (4, 4) OpenCV camera-to-world (x right, y down,
z forward); ``intrinsics`` (3, 3) normalised by the image width/height (fx/W, fy/H, cx/W, cy/H); pixel
(column i, row j) is sampled at (i + ½, j + ½). Projection, SH colour and compositing follow the reference
3D-GS rasteriser (see :mod:`genxd_jax.lift.project` and :mod:`genxd_jax.lift.raster_dense`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import struct

from genxd_jax.lift.gaussians import Gaussians
from genxd_jax.lift.project import NEAR_PLANE, project
from genxd_jax.lift.raster_dense import rasterize_dense
from genxd_jax.lift.raster_tiled import DEFAULT_CHUNK_SIZE, DEFAULT_TILE_CAPACITY, rasterize_tiled


@struct.dataclass
class RenderOutput:
    """What :func:`render` returns.

    rgb (H, W, 3): Σ cᵢαᵢTᵢ + T_final·background (colours are not clipped to 1).
    alpha (H, W): 1 − final transmittance.
    depth (H, W): Σ zᵢαᵢTᵢ, the alpha-weighted view-space z, UNNORMALISED (divide by alpha for the expected
      depth of the covered part; it is 0 where nothing is hit).
    radii (N,) int32: pixel radius ⌈3√λmax⌉ of each slot, 0 when not visible (inactive, behind the near plane,
      or off screen).
    means2d (N, 2): projected means in pixels (u, v), pixel centres at i + ½ (offset included).
    overflow (bool scalar): some 16×16 tile held more Gaussians than ``tile_capacity``; the farthest ones in
      that tile were not composited. Always False for the dense rasteriser.
    max_tile_count (int32 scalar): the exact largest number of visible Gaussians touching one tile (also when
      it overflowed; size ``tile_capacity`` from it).
    """

    rgb: jax.Array
    alpha: jax.Array
    depth: jax.Array
    radii: jax.Array
    means2d: jax.Array
    overflow: jax.Array
    max_tile_count: jax.Array


def _check_static(g: Gaussians, c2w, intrinsics, height: int, width: int, sh_degree: int):
    if not (isinstance(height, int) and isinstance(width, int)) or height <= 0 or width <= 0:
        raise ValueError(f"height and width must be positive ints, got {height!r}, {width!r}")
    if sh_degree not in (0, 1, 2, 3):
        raise ValueError(f"sh_degree must be 0, 1, 2 or 3, got {sh_degree!r}")
    if g.means.ndim != 2 or g.means.shape[-1] != 3:
        raise ValueError(f"Gaussians.means must have shape (N, 3), got {g.means.shape}")
    if jnp.shape(c2w) != (4, 4):
        raise ValueError(f"c2w must be one (4, 4) camera-to-world matrix, got shape {jnp.shape(c2w)}")
    if jnp.shape(intrinsics) != (3, 3):
        raise ValueError(f"intrinsics must be one (3, 3) normalised matrix, got shape {jnp.shape(intrinsics)}")


@functools.partial(
    jax.jit,
    static_argnames=("height", "width", "sh_degree", "near", "tile_capacity", "chunk_size", "rasterizer"),
)
def render(
    g: Gaussians,
    c2w,
    intrinsics,
    height: int,
    width: int,
    background=(0.0, 0.0, 0.0),
    *,
    sh_degree: int = 3,
    means2d_offset=None,
    near: float = NEAR_PLANE,
    tile_capacity: int = DEFAULT_TILE_CAPACITY,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    rasterizer: str = "tiled",
) -> RenderOutput:
    """Renders the active Gaussians of ``g`` from one camera.

    Args:
      g: :class:`Gaussians` (capacity N; inactive slots contribute nothing and get zero gradients).
      c2w: (4, 4) OpenCV camera-to-world.
      intrinsics: (3, 3) normalised intrinsics.
      height, width: image size in pixels (static).
      background: (3,) colour behind the Gaussians.
      sh_degree: number of SH bands used, 0..3 (static).
      means2d_offset: optional (N, 2) added to the projected pixel means; pass zeros and differentiate
        w.r.t. it to get ∂L/∂mean2D in pixels (the densification statistic).
      near: near plane; view z ≤ near is culled (reference 0.2).
      tile_capacity: Gaussians kept per 16×16 tile (static; tiled rasteriser). Memory of the binning and the
        sort grows as num_tiles × tile_capacity and the compositing loop runs up to tile_capacity /
        chunk_size steps; too small a value drops the farthest Gaussians of crowded tiles and sets
        ``overflow``.
      chunk_size: Gaussians composited per step (static; tiled rasteriser). Memory per step is
        num_tiles × 256 × chunk_size; each step is rematerialised in the backward pass.
      rasterizer: "tiled" (default) or "dense" (the O(H·W·N) oracle, small scenes only).
    Returns :class:`RenderOutput`.
    """
    _check_static(g, c2w, intrinsics, height, width, sh_degree)
    dtype = g.means.dtype
    background = jnp.asarray(background, dtype)
    proj = project(g, c2w, intrinsics, height, width, sh_degree=sh_degree, means2d_offset=means2d_offset, near=near)
    if rasterizer == "dense":
        rgb, alpha, depth, counts = rasterize_dense(proj, height, width, background)
        overflow = jnp.zeros((), bool)
        max_count = jnp.max(counts)
    elif rasterizer == "tiled":
        rgb, alpha, depth, overflow, max_count = rasterize_tiled(
            proj, height, width, background, tile_capacity=tile_capacity, chunk_size=chunk_size
        )
    else:
        raise ValueError(f"rasterizer must be 'tiled' or 'dense', got {rasterizer!r}")
    return RenderOutput(
        rgb=rgb,
        alpha=alpha,
        depth=depth,
        radii=proj.radii,
        means2d=proj.means2d,
        overflow=overflow,
        max_tile_count=max_count,
    )


def render_dense(g: Gaussians, c2w, intrinsics, height: int, width: int, background=(0.0, 0.0, 0.0), **kwargs):
    """:func:`render` with the dense oracle rasteriser (O(H·W·N) memory; tests and tiny scenes)."""
    return render(g, c2w, intrinsics, height, width, background, rasterizer="dense", **kwargs)
