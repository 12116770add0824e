"""Real spherical harmonics up to degree 3, exactly as the reference 3D-GS rasteriser evaluates them.

Constants and basis ordering/signs follow graphdeco-inria diff-gaussian-rasterization (`auxiliary.h` and
`computeColorFromSH` in `forward.cu`). The colour of a Gaussian seen along the unit direction d = (x, y, z)
(from the camera centre to the Gaussian's mean, world frame) is

    rgb = max(0, SH_C0·dc + Σ_k basis_k(d)·rest_k + 0.5)

with `dc` of shape (..., 3) and `rest` of shape (..., 15, 3) (coefficients 1..15, coefficient-major, channel
last, the in-memory layout of :class:`genxd_jax.lift.Gaussians`).
"""

from __future__ import annotations

import jax.numpy as jnp

SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
SH_C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)

MAX_SH_DEGREE = 3


def num_sh_rest(degree: int) -> int:
    """Number of non-DC coefficients for SH degree 0..3: (degree + 1)² − 1 (0, 3, 8, 15)."""
    if not 0 <= degree <= MAX_SH_DEGREE:
        raise ValueError(f"sh_degree must be in 0..{MAX_SH_DEGREE}, got {degree}")
    return (degree + 1) ** 2 - 1


def sh_basis(dirs, degree: int = 3):
    """The reference SH basis (without the DC term) at unit directions dirs (..., 3) -> (..., 15).

    Entries beyond ``degree`` are zero, so ``jnp.einsum('...k,...kc->...c', basis, rest)`` uses only the
    first (degree + 1)² − 1 coefficients.
    """
    num_sh_rest(degree)
    x, y, z = dirs[..., 0], dirs[..., 1], dirs[..., 2]
    zero = jnp.zeros_like(x)
    terms = [zero] * 15
    if degree >= 1:
        terms[0] = -SH_C1 * y
        terms[1] = SH_C1 * z
        terms[2] = -SH_C1 * x
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        xy, yz, xz = x * y, y * z, x * z
        terms[3] = SH_C2[0] * xy
        terms[4] = SH_C2[1] * yz
        terms[5] = SH_C2[2] * (2.0 * zz - xx - yy)
        terms[6] = SH_C2[3] * xz
        terms[7] = SH_C2[4] * (xx - yy)
    if degree >= 3:
        terms[8] = SH_C3[0] * y * (3.0 * xx - yy)
        terms[9] = SH_C3[1] * xy * z
        terms[10] = SH_C3[2] * y * (4.0 * zz - xx - yy)
        terms[11] = SH_C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy)
        terms[12] = SH_C3[4] * x * (4.0 * zz - xx - yy)
        terms[13] = SH_C3[5] * z * (xx - yy)
        terms[14] = SH_C3[6] * x * (xx - 3.0 * yy)
    return jnp.stack(terms, axis=-1)


def sh_to_rgb(sh_dc, sh_rest, dirs, degree: int = 3):
    """Colours (..., 3) = max(0, SH(dirs) + 0.5), the reference `computeColorFromSH`.

    Args:
      sh_dc: (..., 3) DC coefficients.
      sh_rest: (..., 15, 3) coefficients 1..15 (only the first (degree+1)²−1 are used).
      dirs: (..., 3) unit view directions (mean − camera centre, normalised), world frame.
      degree: static SH degree 0..3.
    """
    result = SH_C0 * sh_dc
    if degree > 0:
        basis = sh_basis(dirs, degree)
        k = num_sh_rest(degree)
        result = result + jnp.einsum("...k,...kc->...c", basis[..., :k], sh_rest[..., :k, :])
    return jnp.maximum(result + 0.5, 0.0)


def rgb_to_sh_dc(rgb):
    """DC coefficients whose degree-0 colour is ``rgb`` (before the clamp): (rgb − 0.5) / SH_C0."""
    return (jnp.asarray(rgb) - 0.5) / SH_C0
