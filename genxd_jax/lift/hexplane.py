"""HexPlane: a multi-resolution 4D feature field factorised into six planes (4DGaussians / K-Planes).

The field maps a point (x, y, z) and a time t to a feature vector. Coordinates are first normalised to the
grid's box: x̂ = 2·(x − aabb_min)/(aabb_max − aabb_min) − 1 per spatial axis (the reference ``normalize_aabb``);
the time coordinate is used as given (the reference passes t ∈ [0, 1] straight to ``grid_sample``, so the time
axis is read on its upper half, grid rows (R_t − 1)/2 … R_t − 1; we keep that, the reference wins). The four
coordinates (x̂, ŷ, ẑ, t) index six planes, one per pair of axes in the order of ``itertools.combinations``:

    xy, xz, xt, yz, yt, zt      (PLANES; "spatial" planes xy, xz, yz, "time" planes xt, yt, zt)

Plane (a, b) is an array (C, R_b, R_a): rows run along the second axis b, columns along the first axis a
(torch's ``[1, C, reso[b], reso[a]]`` without the batch dimension). It is sampled **bilinearly with
align_corners=True** (coordinate −1 is the centre of the first texel, +1 the centre of the last: texel index
= (c + 1)/2·(R − 1)) and **border padding** (coordinates outside [−1, 1] are clamped), exactly
``torch.nn.functional.grid_sample(..., mode="bilinear", align_corners=True, padding_mode="border")`` as the
reference calls it. The six sampled C-vectors are multiplied elementwise; the products of the scales are
concatenated, giving F = C·len(multires) features.

Scales: the spatial resolutions are multiplied by each entry of ``multires`` (time resolution unchanged; the
reference "multi-res only on spatial planes"). Initialisation: time planes 1 (so a field whose time planes are
all ones gives features that do not depend on t), spatial planes U[0.1, 0.5].

Parameters are a plain pytree: ``list`` (one per scale) of ``dict`` {plane name: (C, R_b, R_a) array}.
Everything here is jittable and differentiable.
"""

from __future__ import annotations

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np

AXES = "xyzt"
COMBOS = tuple(itertools.combinations(range(4), 2))  # (0,1) (0,2) (0,3) (1,2) (1,3) (2,3)
PLANES = tuple(AXES[a] + AXES[b] for a, b in COMBOS)  # xy xz xt yz yt zt
SPATIAL_PLANES = ("xy", "xz", "yz")
TIME_PLANES = ("xt", "yt", "zt")


@dataclasses.dataclass(frozen=True)
class HexPlaneSpec:
    """Static shape of a HexPlane (hashable, so it can be a static jit argument).

    channels: C, features per plane; resolution: base (R_x, R_y, R_z, R_t); multires: spatial resolution
    multipliers, one scale each (reference D-NeRF setting (1, 2), 32 channels, (64, 64, 64, 25)).
    """

    channels: int = 32
    resolution: tuple = (64, 64, 64, 25)
    multires: tuple = (1, 2)

    def __post_init__(self):
        object.__setattr__(self, "resolution", tuple(int(r) for r in self.resolution))
        object.__setattr__(self, "multires", tuple(int(m) for m in self.multires))
        if len(self.resolution) != 4 or min(self.resolution) < 3:
            raise ValueError("HexPlaneSpec.resolution must be 4 ints >= 3 (x, y, z, t; the smoothness terms take "
                             f"second differences), got {self.resolution}")
        if not self.multires or min(self.multires) < 1:
            raise ValueError(f"HexPlaneSpec.multires must be non-empty positive ints, got {self.multires}")
        if int(self.channels) < 1:
            raise ValueError(f"HexPlaneSpec.channels must be positive, got {self.channels}")

    @property
    def feature_dim(self) -> int:
        """F = channels × number of scales."""
        return int(self.channels) * len(self.multires)

    def scale_resolution(self, scale: int) -> tuple:
        """(R_x, R_y, R_z, R_t) of scale ``scale`` (spatial axes multiplied, time unchanged)."""
        m = self.multires[scale]
        r = self.resolution
        return (r[0] * m, r[1] * m, r[2] * m, r[3])

    def plane_shape(self, scale: int, name: str) -> tuple:
        """(C, R_b, R_a) of plane ``name`` ("xy", ..., "zt") at ``scale``."""
        res = self.scale_resolution(scale)
        a, b = AXES.index(name[0]), AXES.index(name[1])
        return (int(self.channels), res[b], res[a])

    def to_dict(self) -> dict:
        return {"channels": int(self.channels), "resolution": list(self.resolution), "multires": list(self.multires)}


def init_hexplane(key, spec: HexPlaneSpec, *, low: float = 0.1, high: float = 0.5) -> list:
    """Initial planes: time planes (xt, yt, zt) all ones, spatial planes U[low, high] (reference 0.1, 0.5).

    Returns a list (one per scale) of dicts {plane: (C, R_b, R_a) float32}.
    """
    grids = []
    for s in range(len(spec.multires)):
        planes = {}
        for name in PLANES:
            shape = spec.plane_shape(s, name)
            if name in TIME_PLANES:
                planes[name] = jnp.ones(shape, jnp.float32)
            else:
                key, sub = jax.random.split(key)
                planes[name] = jax.random.uniform(sub, shape, jnp.float32, low, high)
        grids.append(planes)
    return grids


def check_grids(grids, spec: HexPlaneSpec, *, what: str = "hexplane") -> None:
    """Raises ValueError naming the scale and plane whose shape disagrees with ``spec`` (host-side)."""
    if len(grids) != len(spec.multires):
        raise ValueError(f"{what}: {len(grids)} scales, spec has {len(spec.multires)} (multires {spec.multires})")
    for s, planes in enumerate(grids):
        missing = set(PLANES) - set(planes)
        if missing:
            raise ValueError(f"{what}: scale {s} lacks planes {sorted(missing)}")
        for name in PLANES:
            want, got = spec.plane_shape(s, name), tuple(planes[name].shape)
            if got != want:
                raise ValueError(f"{what}: scale {s} plane {name} has shape {got}, expected {want}")


def normalize_aabb(points, aabb):
    """World points (..., 3) -> [−1, 1] box coordinates; ``aabb`` (2, 3) = (min corner, max corner)."""
    lo, hi = aabb[0], aabb[1]
    return (points - lo) * (2.0 / (hi - lo)) - 1.0


def sample_plane(plane, u, v):
    """Bilinear, align_corners=True, border-clamped sample of ``plane`` (C, H, W) at (u, v) in [−1, 1].

    u indexes the columns (width W), v the rows (height H), as ``grid_sample``'s (x, y). u, v: (N,).
    Returns (N, C).
    """
    c, h, w = plane.shape
    x = jnp.clip((u + 1.0) * 0.5 * (w - 1), 0.0, w - 1)
    y = jnp.clip((v + 1.0) * 0.5 * (h - 1), 0.0, h - 1)
    x0 = jnp.clip(jnp.floor(x), 0, max(w - 2, 0)).astype(jnp.int32)
    y0 = jnp.clip(jnp.floor(y), 0, max(h - 2, 0)).astype(jnp.int32)
    x1 = jnp.minimum(x0 + 1, w - 1)
    y1 = jnp.minimum(y0 + 1, h - 1)
    fx = (x - x0)[:, None]
    fy = (y - y0)[:, None]
    flat = plane.reshape(c, h * w).T  # (H·W, C)
    idx = jnp.stack([y0 * w + x0, y0 * w + x1, y1 * w + x0, y1 * w + x1], axis=-1)  # (N, 4): one gather
    corners = flat[idx]  # (N, 4, C)
    weights = jnp.concatenate([(1.0 - fx) * (1.0 - fy), fx * (1.0 - fy), (1.0 - fx) * fy, fx * fy], axis=-1)
    return jnp.einsum("nk,nkc->nc", weights, corners, precision=jax.lax.Precision.HIGHEST)


def hexplane_features(grids, points, t, aabb):
    """Features of the field at world ``points`` (N, 3) and times ``t`` (scalar or (N,)) -> (N, F).

    ``aabb`` (2, 3): (min, max) corners of the box the spatial axes are normalised by. Per scale: the product
    over the six planes of their bilinear samples; scales concatenated along the features.
    """
    points = jnp.asarray(points)
    n = points.shape[0]
    t = jnp.broadcast_to(jnp.asarray(t, points.dtype), (n,))
    coords = jnp.concatenate([normalize_aabb(points, aabb), t[:, None]], axis=-1)  # (N, 4)
    feats = []
    for planes in grids:
        prod = None
        for (a, b), name in zip(COMBOS, PLANES):
            sample = sample_plane(planes[name], coords[:, a], coords[:, b])
            prod = sample if prod is None else prod * sample
        feats.append(prod)
    return jnp.concatenate(feats, axis=-1)


def _row_smoothness(plane):
    """Mean squared second difference along the rows (axis 1) of a plane (C, R_b, R_a).

    This is 4DGaussians' ``compute_plane_smoothness`` (from K-Planes), which the reference applies to the
    spatial planes (its "plane TV", weight 1e-4) as well as to the time planes (its "time smoothness", weight
    1e-2): for a time plane the rows run along t; for xy, xz, yz along y, z, z. (K-Planes' first-order
    ``compute_plane_tv`` is not what 4DGaussians uses; the reference wins.)
    """
    first = plane[:, 1:, :] - plane[:, :-1, :]
    second = first[:, 1:, :] - first[:, :-1, :]
    return jnp.mean(jnp.square(second))


def plane_tv(grids):
    """Smoothness of the spatial planes (xy, xz, yz): :func:`_row_smoothness` summed over planes and scales."""
    return sum(_row_smoothness(planes[name]) for planes in grids for name in SPATIAL_PLANES)


def time_smoothness(grids):
    """Second-order smoothness along t of the time planes (xt, yt, zt), summed over planes and scales."""
    return sum(_row_smoothness(planes[name]) for planes in grids for name in TIME_PLANES)


def time_l1(grids):
    """Mean |1 − value| of the time planes, summed over planes and scales (pulls them toward the static 1)."""
    return sum(jnp.mean(jnp.abs(1.0 - planes[name])) for planes in grids for name in TIME_PLANES)


def regularization(grids, *, plane_tv_weight: float = 1e-4, time_smoothness_weight: float = 1e-2,
                   time_l1_weight: float = 1e-4):
    """The 4DGaussians regulariser: w_tv·plane_tv + w_ts·time_smoothness + w_l1·time_l1 (reference weights)."""
    return (plane_tv_weight * plane_tv(grids) + time_smoothness_weight * time_smoothness(grids)
            + time_l1_weight * time_l1(grids))


def aabb_from_points(points, margin: float = 0.0) -> np.ndarray:
    """(2, 3) box of ``points`` (M, 3) (host-side), widened by ``margin`` × its size on each side; degenerate
    axes get a half-width of 1e-3 × the largest extent (or 1e-3) so the normalisation stays finite."""
    pts = np.asarray(points, np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) == 0:
        raise ValueError(f"aabb_from_points: points must have shape (M, 3) with M >= 1, got {pts.shape}")
    lo, hi = pts.min(0), pts.max(0)
    size = hi - lo
    floor = 1e-3 * max(float(size.max()), 1.0)
    half = np.maximum(0.5 * size * (1.0 + 2.0 * margin), floor)
    centre = 0.5 * (lo + hi)
    return np.stack([centre - half, centre + half]).astype(np.float32)


__all__ = [
    "COMBOS", "PLANES", "SPATIAL_PLANES", "TIME_PLANES", "HexPlaneSpec", "aabb_from_points", "check_grids",
    "hexplane_features", "init_hexplane", "normalize_aabb", "plane_tv", "regularization", "sample_plane",
    "time_l1", "time_smoothness",
]
