"""3D Gaussians as a fixed-capacity pytree with an active mask (static shapes under ``jit``).

Densification (clone / split / prune) is done by writing into or clearing slots of a fixed capacity N, so the
arrays never change shape. Inactive slots never render (the rasterisers mask them) and therefore receive zero
gradients.

Parameters are stored before activation, as in the reference 3D-GS and its ``.ply`` layout:

- ``means (N, 3)``: world-space centres.
- ``quats (N, 4)``: rotations as quaternions (w, x, y, z); unnormalised values are allowed, the renderer
  normalises.
- ``log_scales (N, 3)``: log of the standard deviations along the rotated axes (world units).
- ``opacity_logits (N,)``: logit of the opacity (opacity = sigmoid(logit)).
- ``sh_dc (N, 3)``: degree-0 SH coefficients (colour = SH_C0·dc + 0.5 for degree 0).
- ``sh_rest (N, 15, 3)``: SH coefficients 1..15 (degrees 1..3), coefficient-major, channel last.
- ``active (N,) bool``: which slots hold a Gaussian.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from genxd_jax.lift.sh import rgb_to_sh_dc


def _logit(p):
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-12, 1.0 - 1e-7)
    return np.log(p) - np.log1p(-p)


def quaternion_to_rotation(quats):
    """Quaternions (..., 4) (w, x, y, z), normalised here -> rotation matrices (..., 3, 3) (JAX, differentiable).

    Zero quaternions (only expected in inactive slots) map to the identity instead of NaN.
    """
    norm2 = jnp.sum(quats * quats, axis=-1, keepdims=True)
    safe = norm2 > 0
    q = jnp.where(safe, quats, jnp.array([1.0, 0.0, 0.0, 0.0], quats.dtype))
    q = q * jax.lax.rsqrt(jnp.where(safe, norm2, 1.0))
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    rows = [
        jnp.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        jnp.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        jnp.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ]
    return jnp.stack(rows, axis=-2)


def knn_log_scales(points, k: int = 3) -> np.ndarray:
    """Reference initial log-scales: log √(mean squared distance to the k nearest other points), (N,) float.

    Host-side (SciPy KD-tree). A lone point gets log(0.01)-ish fallback scale; coincident points are floored
    at a squared distance of 1e-7 as in the reference ``distCUDA2``.
    """
    from scipy.spatial import cKDTree

    pts = np.asarray(points, dtype=np.float64)
    n = pts.shape[0]
    if n < 2:
        return np.full((n,), np.log(0.01))
    kk = min(k, n - 1)
    dist, _ = cKDTree(pts).query(pts, k=kk + 1)
    mean_sq = np.mean(np.asarray(dist).reshape(n, kk + 1)[:, 1:] ** 2, axis=-1)
    return 0.5 * np.log(np.maximum(mean_sq, 1e-7))


PARAM_FIELDS = ("means", "quats", "log_scales", "opacity_logits", "sh_dc", "sh_rest")


@struct.dataclass
class Gaussians:
    """Fixed-capacity 3D Gaussians (a JAX pytree; see the module docstring for the fields and conventions)."""

    means: jax.Array  # (N, 3)
    quats: jax.Array  # (N, 4) w, x, y, z
    log_scales: jax.Array  # (N, 3)
    opacity_logits: jax.Array  # (N,)
    sh_dc: jax.Array  # (N, 3)
    sh_rest: jax.Array  # (N, 15, 3)
    active: jax.Array  # (N,) bool

    # ---------------------------------------------------------------- construction
    @classmethod
    def create(cls, means, colors_rgb=None, scales=None, capacity: int | None = None, opacity: float = 0.1):
        """Gaussians at ``means`` (M, 3), padded with inactive slots to ``capacity`` (default M).

        Args:
          means: (M, 3) world-space centres.
          colors_rgb: (M, 3) colours in [0, 1] (stored as SH DC, rest zero); default mid grey 0.5.
          scales: None (reference initialisation: √ of the mean squared distance to the 3 nearest
            neighbours, isotropic), a scalar, (M,) or (M, 3) standard deviations in world units.
          capacity: total number of slots N ≥ M.
          opacity: initial opacity in (0, 1) (the reference uses 0.1).
        Returns float32 Gaussians with identity rotations.
        """
        means = np.asarray(means, dtype=np.float64)
        if means.ndim != 2 or means.shape[1] != 3:
            raise ValueError(f"means must have shape (M, 3), got {means.shape}")
        if not np.all(np.isfinite(means)):
            raise ValueError("means contains non-finite values")
        m = means.shape[0]
        n = m if capacity is None else int(capacity)
        if n < m:
            raise ValueError(f"capacity {n} is smaller than the number of points {m}")
        if not 0.0 < opacity < 1.0:
            raise ValueError(f"opacity must be in (0, 1), got {opacity}")
        if colors_rgb is None:
            colors = np.full((m, 3), 0.5)
        else:
            colors = np.asarray(colors_rgb, dtype=np.float64)
            if colors.shape != (m, 3):
                raise ValueError(f"colors_rgb must have shape {(m, 3)}, got {colors.shape}")
        if scales is None:
            log_s = np.repeat(knn_log_scales(means)[:, None], 3, axis=1)
        else:
            s = np.asarray(scales, dtype=np.float64)
            if s.ndim == 0:
                s = np.full((m, 3), float(s))
            elif s.shape == (m,):
                s = np.repeat(s[:, None], 3, axis=1)
            elif s.shape != (m, 3):
                raise ValueError(f"scales must be a scalar, (M,) or (M, 3) with M={m}, got {s.shape}")
            if np.any(s <= 0) or not np.all(np.isfinite(s)):
                raise ValueError("scales must be finite and positive")
            log_s = np.log(s)

        def pad(x, fill=0.0):
            out = np.full((n,) + x.shape[1:], fill, dtype=np.float32)
            out[:m] = x
            return out

        quats = np.zeros((m, 4))
        quats[:, 0] = 1.0
        quats_p = pad(quats)
        quats_p[m:, 0] = 1.0
        active = np.zeros((n,), dtype=bool)
        active[:m] = True
        return cls(
            means=jnp.asarray(pad(means)),
            quats=jnp.asarray(quats_p),
            log_scales=jnp.asarray(pad(log_s)),
            opacity_logits=jnp.asarray(pad(np.full((m,), _logit(opacity)))),
            sh_dc=jnp.asarray(pad(np.asarray(rgb_to_sh_dc(colors)))),
            sh_rest=jnp.zeros((n, 15, 3), jnp.float32),
            active=jnp.asarray(active),
        )

    # ---------------------------------------------------------------- shape helpers
    @property
    def capacity(self) -> int:
        """N, the number of slots (static)."""
        return self.means.shape[0]

    @property
    def num_active(self):
        """Number of active slots (a JAX int32 scalar; use ``int(g.num_active)`` on the host)."""
        return jnp.sum(self.active.astype(jnp.int32))

    def validate(self) -> "Gaussians":
        """Checks shapes against the capacity (host-side); returns self."""
        n = self.capacity
        expect = {
            "means": (n, 3),
            "quats": (n, 4),
            "log_scales": (n, 3),
            "opacity_logits": (n,),
            "sh_dc": (n, 3),
            "sh_rest": (n, 15, 3),
            "active": (n,),
        }
        for name, shape in expect.items():
            got = tuple(getattr(self, name).shape)
            if got != shape:
                raise ValueError(f"Gaussians.{name} must have shape {shape}, got {got}")
        return self

    def pad_to(self, capacity: int) -> "Gaussians":
        """The same Gaussians with ``capacity`` slots (extra slots inactive). Host-side."""
        n = self.capacity
        if capacity < n:
            raise ValueError(f"cannot pad {n} slots down to {capacity}")
        extra = capacity - n

        def pad(x, fill=0.0):
            return jnp.concatenate([x, jnp.full((extra,) + x.shape[1:], fill, x.dtype)], axis=0)

        quats = pad(self.quats).at[n:, 0].set(1.0)
        return Gaussians(
            means=pad(self.means),
            quats=quats,
            log_scales=pad(self.log_scales),
            opacity_logits=pad(self.opacity_logits),
            sh_dc=pad(self.sh_dc),
            sh_rest=pad(self.sh_rest),
            active=pad(self.active, False),
        )

    def compact(self) -> "Gaussians":
        """Only the active slots, in slot order (host-side; changes the capacity to ``num_active``)."""
        idx = np.nonzero(np.asarray(self.active))[0]
        return jax.tree_util.tree_map(lambda x: x[idx], self)

    # ---------------------------------------------------------------- trainable parameters
    def params(self) -> dict:
        """The trainable float arrays as a dict {field: array} (everything but ``active``), for ``jax.grad``
        and optax (the boolean mask cannot be differentiated)."""
        return {f: getattr(self, f) for f in PARAM_FIELDS}

    def with_params(self, params: dict) -> "Gaussians":
        """A copy with the arrays of ``params`` (as returned by :meth:`params`) and the same active mask."""
        unknown = set(params) - set(PARAM_FIELDS)
        if unknown:
            raise ValueError(f"unknown Gaussian parameters {sorted(unknown)}; expected {PARAM_FIELDS}")
        return self.replace(**params)

    # ---------------------------------------------------------------- activations
    def scales(self):
        """Standard deviations (N, 3) = exp(log_scales), world units."""
        return jnp.exp(self.log_scales)

    def opacities(self):
        """Opacities (N,) = sigmoid(opacity_logits)."""
        return jax.nn.sigmoid(self.opacity_logits)

    def rotations(self):
        """Unit quaternions (N, 4) (w, x, y, z); zero quaternions become the identity."""
        norm2 = jnp.sum(self.quats * self.quats, axis=-1, keepdims=True)
        safe = norm2 > 0
        q = jnp.where(safe, self.quats, jnp.array([1.0, 0.0, 0.0, 0.0], self.quats.dtype))
        return q * jax.lax.rsqrt(jnp.where(safe, norm2, 1.0))

    def rotation_matrices(self):
        """Rotation matrices (N, 3, 3) from the normalised quaternions."""
        return quaternion_to_rotation(self.quats)

    def covariances(self):
        """World covariances Σ = R S Sᵀ Rᵀ, (N, 3, 3)."""
        m = self.rotation_matrices() * self.scales()[..., None, :]
        return jnp.matmul(m, jnp.swapaxes(m, -1, -2), precision=jax.lax.Precision.HIGHEST)
