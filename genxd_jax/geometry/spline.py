"""A smoothing B-spline camera path through a few input cameras: the official few-view trajectory.

The official few-view pipeline (GenXD ``tools/pose_traj_generate.py`` → ``tools/internal/cam_utils.py``
``generate_interpolated_path``, commit 2c05146) samples the views to generate on a B-spline fitted through
the training cameras. This module reimplements that rule in OpenCV axes:

1. Each key camera becomes three points: its centre p, a look-at point p + d·z and an up point p − d·y
   (z forward, y down; d = ``rot_weight``, 0.1 world units as the official). Splining these points instead of
   rotations keeps the orientation smooth and is what the official does (its "rotation interpolation").
2. The 9-D points are fitted by ``scipy.interpolate.splprep`` with degree ``min(degree, K − 1)`` (official
   degree 5) and smoothing ``s = smoothness`` (official 0.03), parameterised by cumulative chord length.
   With K = 3 cameras the degree drops to 2: three points and three coefficients, so the curve is the
   parabola through the three cameras exactly (s has no effect); with K = 2 it is the straight segment.
   For K ≥ 4 the smoothing spline passes *near* the cameras (within √s in the 9-D residual).
3. The curve is sampled at u = linspace(0, 1, N, endpoint=False) (official; ``endpoint=True`` also hits the
   last camera) and every sample is rebuilt into a pose: z = normalise(look-at − p),
   x = normalise((p − up) × z) (i.e. the down vector × z), y = z × x.
4. Offsets (the official ``-sx 0.2 0.4 -0.2 -0.4 -sz 0.2 0.4 -0.2 -0.4``): the whole path is repeated for
   every pair (sx, sz) in ([0] + shift_x) × ([0] + shift_z), its centres translated by
   (sx·s_x, 0, sz·s_z) where s = (90th − 10th percentile of the key centres) / 2 per axis. As in the official
   code these are **world** x / z axes (for RealEstate10K, whose world frame is roughly the first camera's,
   that is sideways and forwards); the rotations are not changed. The unshifted path comes first.

Everything is NumPy float64 on the host; returns (M, 4, 4) OpenCV camera-to-world matrices.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from genxd_jax.geometry.cameras import CameraError, validate_c2w
from genxd_jax.geometry.trajectories import order_by_proximity


def _points_to_pose(p: np.ndarray, lookat: np.ndarray, up: np.ndarray) -> np.ndarray:
    z = lookat - p
    zn = np.linalg.norm(z)
    down = p - up
    x = np.cross(down, z)
    xn = np.linalg.norm(x)
    if zn < 1e-12 or xn < 1e-9 * max(zn * np.linalg.norm(down), 1e-300):
        raise CameraError(
            "spline_trajectory: degenerate orientation on the path (look-at and up points collapse); "
            "the input cameras turn too fast between neighbours: pass a larger rot_weight or more cameras"
        )
    z = z / zn
    x = x / xn
    out = np.eye(4)
    out[:3, 0], out[:3, 1], out[:3, 2], out[:3, 3] = x, np.cross(z, x), z, p
    return out


def shift_scale(key_c2w) -> np.ndarray:
    """(3,) the per-world-axis offset unit of the official path shifts: (P90 − P10) / 2 of the key centres."""
    centres = validate_c2w(key_c2w, name="key poses")[:, :3, 3]
    return (np.percentile(centres, 90, axis=0) - np.percentile(centres, 10, axis=0)) / 2.0


def spline_trajectory(
    key_c2w,
    num_frames: int,
    *,
    degree: int = 5,
    smoothness: float = 0.03,
    rot_weight: float = 0.1,
    shift_x: Sequence[float] | None = None,
    shift_z: Sequence[float] | None = None,
    endpoint: bool = False,
    order: bool = False,
) -> np.ndarray:
    """Samples the official smoothing B-spline path through the key cameras (see the module docstring).

    Args:
      key_c2w: (K, 4, 4) OpenCV camera-to-world poses of the input cameras, K ≥ 2, in path order.
      num_frames: N samples per path.
      degree: the B-spline degree (official 5), lowered to K − 1 when there are fewer cameras.
      smoothness: scipy ``splprep``'s s (official 0.03); 0 interpolates every camera exactly.
      rot_weight: distance d (world units) of the look-at and up points from each centre (official 0.1).
      shift_x, shift_z: extra path copies offset along world x / z, in units of :func:`shift_scale`.
      endpoint: sample u ∈ [0, 1] inclusive (the official excludes u = 1, so the last camera is not hit).
      order: chain the keys by proximity first (:func:`order_by_proximity`) instead of using their order.

    Returns:
      (N·(1 + len(shift_x))·(1 + len(shift_z)), 4, 4): the unshifted path first, then one copy per
      (sx, sz) pair, sx outer, sz inner (the official order).

    Raises:
      CameraError: fewer than 2 cameras, non-rigid or non-finite poses, two consecutive cameras at the
        same centre and orientation (the spline parameter is undefined), a degenerate rebuilt orientation,
        or bad settings.
    """
    from scipy.interpolate import splev, splprep

    keys = validate_c2w(key_c2w, name="key poses")
    if keys.ndim != 3 or keys.shape[0] < 2:
        raise CameraError(f"spline_trajectory needs at least 2 key poses (K, 4, 4), got {keys.shape}")
    if int(num_frames) != num_frames or num_frames < 1:
        raise CameraError(f"spline_trajectory needs at least 1 frame, got {num_frames}")
    if int(degree) != degree or degree < 1:
        raise CameraError(f"spline degree must be a positive integer, got {degree}")
    if not np.isfinite(smoothness) or smoothness < 0:
        raise CameraError(f"spline smoothness must be ≥ 0, got {smoothness}")
    if not np.isfinite(rot_weight) or rot_weight <= 0:
        raise CameraError(f"spline rot_weight must be positive, got {rot_weight}")
    if order:
        keys = keys[order_by_proximity(keys)]
    n = int(num_frames)
    centres = keys[:, :3, 3]
    points = np.concatenate(
        [centres, centres + rot_weight * keys[:, :3, 2], centres - rot_weight * keys[:, :3, 1]], axis=1
    )  # (K, 9): position, look-at, up
    steps = np.linalg.norm(np.diff(points, axis=0), axis=-1)
    if np.any(steps < 1e-9):
        i = int(np.argmin(steps))
        raise CameraError(f"key poses {i} and {i + 1} are identical; the spline needs distinct cameras")
    k = min(int(degree), keys.shape[0] - 1)
    tck, _ = splprep(points.T, k=k, s=float(smoothness))
    u = np.linspace(0.0, 1.0, n, endpoint=bool(endpoint)) if n > 1 else np.zeros(1)
    samples = np.asarray(splev(u, tck)).T  # (N, 9)
    path = np.stack([_points_to_pose(s[:3], s[3:6], s[6:]) for s in samples])

    scale = shift_scale(keys)
    sets = []
    for sx in [0.0, *(shift_x or [])]:
        for sz in [0.0, *(shift_z or [])]:
            if not (np.isfinite(sx) and np.isfinite(sz)):
                raise CameraError(f"path shifts must be finite, got sx={sx}, sz={sz}")
            shifted = path.copy()
            shifted[:, 0, 3] += sx * scale[0]
            shifted[:, 2, 3] += sz * scale[2]
            sets.append(shifted)
    return np.concatenate(sets, axis=0)
