"""EWA projection of 3D Gaussians to screen-space 2D Gaussians, with the reference 3D-GS conventions.

Follows graphdeco-inria diff-gaussian-rasterization (`preprocessCUDA` / `computeCov2D` in `forward.cu`):

- view-space point t = R_w2c·mean + t_w2c (OpenCV: x right, y down, z forward); culled when z ≤ ``near`` (0.2);
- x/z and y/z are clamped to ±1.3·tan(fov/2) (tan(fovx/2) = W / (2 fx)) before the Jacobian
  J = [[fx/z, 0, −fx·x/z²], [0, fy/z, −fy·y/z²]] (fx, fy in pixels);
- Σ2D = J W Σ Wᵀ Jᵀ + 0.3·I (W = world-to-camera rotation; no opacity compensation);
- radius = ⌈3·√λmax⌉ with λmax = mid + √max(0.1, mid² − det), mid = (Σ00 + Σ11)/2;
- the 16×16-tile rectangle a Gaussian touches is the reference ``getRect`` of the point (u − ½, v − ½) with
  that radius; a Gaussian touching no tile is not visible (radius 0).

Pixel coordinates: u = fx·x/z + cx with intrinsics normalised by the image size (fx = K[0,0]·W, cx = K[0,2]·W,
…); pixel (column i, row j) is sampled at (i + ½, j + ½) (the gsplat convention, equal to the reference's
``ndc2Pix`` with integer pixel positions).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from genxd_jax.lift.gaussians import Gaussians
from genxd_jax.lift.sh import sh_to_rgb

TILE_SIZE = 16
NEAR_PLANE = 0.2
COV2D_DILATION = 0.3
CLAMP_FACTOR = 1.3
_HIGHEST = jax.lax.Precision.HIGHEST


@struct.dataclass
class Projection:
    """Screen-space Gaussians for one camera (all arrays indexed by slot, N = capacity).

    means2d (N, 2) pixel coordinates (u, v) of the projected means (pixel centres at i + ½);
    depths (N,) view-space z; cov2d (N, 2, 2) dilated 2D covariance in pixels²; conics (N, 3) the upper
    triangle (a, b, c) of its inverse; opacities (N,); colors (N, 3) SH colours (≥ 0); radii (N,) int32 pixel
    radius, 0 when not visible; tile_rect (N, 4) int32 (x_min, y_min, x_max, y_max) tile rectangle, max
    exclusive; visible (N,) bool (active, in front of the near plane, touching at least one tile).
    """

    means2d: jax.Array
    depths: jax.Array
    cov2d: jax.Array
    conics: jax.Array
    opacities: jax.Array
    colors: jax.Array
    radii: jax.Array
    tile_rect: jax.Array
    visible: jax.Array


def world_to_camera(c2w):
    """OpenCV camera-to-world (4, 4) -> (R (3, 3), t (3,)) with p_cam = R·p_world + t."""
    rot = jnp.swapaxes(c2w[:3, :3], -1, -2)
    return rot, -jnp.matmul(rot, c2w[:3, 3], precision=_HIGHEST)


def pixel_camera(intrinsics, height: int, width: int):
    """Normalised intrinsics (3, 3) -> (fx, fy, cx, cy) in pixels."""
    return (
        intrinsics[0, 0] * width,
        intrinsics[1, 1] * height,
        intrinsics[0, 2] * width,
        intrinsics[1, 2] * height,
    )


def project_points(t_cam, fx, fy, cx, cy):
    """Pinhole projection of view-space points (..., 3) to pixel coordinates (..., 2): (fx·x/z + cx, fy·y/z + cy)."""
    x, y, z = t_cam[..., 0], t_cam[..., 1], t_cam[..., 2]
    return jnp.stack([fx * x / z + cx, fy * y / z + cy], axis=-1)


def projection_jacobian(t_cam, fx, fy, lim_x, lim_y):
    """The reference EWA Jacobian (..., 2, 3) of :func:`project_points` at view-space points (..., 3).

    x/z and y/z are first clamped to ±lim_x, ±lim_y (the reference uses 1.3·tan(fov/2)); inside the clamp this
    is exactly the derivative of the pinhole projection.
    """
    x, y, z = t_cam[..., 0], t_cam[..., 1], t_cam[..., 2]
    x = jnp.clip(x / z, -lim_x, lim_x) * z
    y = jnp.clip(y / z, -lim_y, lim_y) * z
    zero = jnp.zeros_like(z)
    row0 = jnp.stack([fx / z, zero, -fx * x / (z * z)], axis=-1)
    row1 = jnp.stack([zero, fy / z, -fy * y / (z * z)], axis=-1)
    return jnp.stack([row0, row1], axis=-2)


def covariance_2d(cov3d, rot_w2c, t_cam, fx, fy, lim_x, lim_y, dilation: float = COV2D_DILATION):
    """Σ2D = J W Σ Wᵀ Jᵀ + dilation·I, (..., 2, 2) in pixels², for world covariances cov3d (..., 3, 3)."""
    jac = projection_jacobian(t_cam, fx, fy, lim_x, lim_y)
    m = jnp.matmul(jac, rot_w2c, precision=_HIGHEST)
    cov = jnp.matmul(jnp.matmul(m, cov3d, precision=_HIGHEST), jnp.swapaxes(m, -1, -2), precision=_HIGHEST)
    return cov + dilation * jnp.eye(2, dtype=cov.dtype)


def tile_grid(height: int, width: int, tile_size: int = TILE_SIZE) -> tuple[int, int]:
    """Number of tiles (across, down) covering a height × width image."""
    return -(-width // tile_size), -(-height // tile_size)


def tile_rect(means2d, radii, height: int, width: int, tile_size: int = TILE_SIZE):
    """The reference ``getRect``: (N, 4) int32 tile rectangle (x_min, y_min, x_max, y_max), max exclusive.

    The reference point is the pixel-centre-relative position (u − ½, v − ½).
    """
    gx, gy = tile_grid(height, width, tile_size)
    p = means2d - 0.5
    r = radii.astype(p.dtype)[..., None]
    lo = jnp.floor((p - r) / tile_size)
    hi = jnp.floor((p + r + tile_size - 1) / tile_size)
    lim = jnp.array([gx, gy], p.dtype)
    lo = jnp.clip(lo, 0, lim).astype(jnp.int32)
    hi = jnp.clip(hi, 0, lim).astype(jnp.int32)
    return jnp.concatenate([lo, hi], axis=-1)


def project(
    g: Gaussians,
    c2w,
    intrinsics,
    height: int,
    width: int,
    *,
    sh_degree: int = 3,
    means2d_offset=None,
    near: float = NEAR_PLANE,
    tile_size: int = TILE_SIZE,
) -> Projection:
    """Projects every slot of ``g`` for one camera (see the module docstring for the conventions).

    Args:
      g: Gaussians with capacity N.
      c2w: (4, 4) OpenCV camera-to-world.
      intrinsics: (3, 3) normalised by the image width/height.
      height, width: image size in pixels (static).
      sh_degree: SH bands used for the colours (static, 0..3).
      means2d_offset: optional (N, 2) added to the projected pixel means (zeros: the gradient w.r.t. it is
        ∂L/∂mean2D in pixels).
      near: near-plane distance; Gaussians with view z ≤ near are culled.
    """
    dtype = g.means.dtype
    c2w = jnp.asarray(c2w, dtype)
    intrinsics = jnp.asarray(intrinsics, dtype)
    rot, trans = world_to_camera(c2w)
    fx, fy, cx, cy = pixel_camera(intrinsics, height, width)
    lim_x = CLAMP_FACTOR * 0.5 * width / fx
    lim_y = CLAMP_FACTOR * 0.5 * height / fy

    t_cam = jnp.matmul(g.means, rot.T, precision=_HIGHEST) + trans
    z = t_cam[:, 2]
    in_front = z > near
    # Culled slots get a harmless stand-in point so that no NaN or inf enters the (masked) gradients.
    safe_t = jnp.where(in_front[:, None], t_cam, jnp.array([0.0, 0.0, 1.0], dtype))

    cov3d = g.covariances()
    cov2d = covariance_2d(cov3d, rot, safe_t, fx, fy, lim_x, lim_y)
    a, b, c = cov2d[:, 0, 0], cov2d[:, 0, 1], cov2d[:, 1, 1]
    det = a * c - b * b
    det_ok = det > 0
    inv_det = 1.0 / jnp.where(det_ok, det, 1.0)
    conics = jnp.stack([c * inv_det, -b * inv_det, a * inv_det], axis=-1)

    means2d = project_points(safe_t, fx, fy, cx, cy)
    if means2d_offset is not None:
        means2d = means2d + means2d_offset

    # Radii and tile rectangles are integer bookkeeping: no gradient flows through them.
    a_s, c_s, det_s = jax.lax.stop_gradient((a, c, det))
    mid = 0.5 * (a_s + c_s)
    lam_max = mid + jnp.sqrt(jnp.maximum(0.1, mid * mid - det_s))
    radius = jnp.ceil(3.0 * jnp.sqrt(lam_max))
    radius = jnp.where(in_front & det_ok, radius, 0.0).astype(jnp.int32)
    rect = tile_rect(jax.lax.stop_gradient(means2d), radius, height, width, tile_size)
    area = (rect[:, 2] - rect[:, 0]) * (rect[:, 3] - rect[:, 1])
    visible = g.active & in_front & det_ok & (area > 0)
    radius = jnp.where(visible, radius, 0)

    cam_centre = c2w[:3, 3]
    view = g.means - cam_centre
    norm2 = jnp.sum(view * view, axis=-1, keepdims=True)
    dirs = view * jax.lax.rsqrt(jnp.where(norm2 > 0, norm2, 1.0))
    colors = sh_to_rgb(g.sh_dc, g.sh_rest, dirs, sh_degree)

    return Projection(
        means2d=means2d,
        depths=z,
        cov2d=cov2d,
        conics=conics,
        opacities=g.opacities(),
        colors=colors,
        radii=radius,
        tile_rect=rect,
        visible=visible,
    )
