"""Camera trajectories: (F, 4, 4) OpenCV camera-to-world poses for the sampler.

- :func:`orbit_trajectory`: the official object orbit (dataset/custom_cam.py ``generate_orbit_cameras``).
- :func:`forward_trajectory`: the official forward-facing custom-camera mode
  (``generate_forwardfacing_cameras``).
- :func:`spiral_trajectory`: an LLFF-style spiral around a reference pose, looking at a focus point.
- :func:`interpolate_poses`: piecewise pose interpolation through key poses (rotation slerp, linear centres).
- :func:`smooth_trajectory`: a smooth (C¹) path through a few given views, for few-shot scenes: the idea of
  the official ``tools/pose_traj_generate.py`` (a spline through each camera's centre, a point ahead of it and
  a point above it, from which the rotations are rebuilt), with a Catmull–Rom spline that passes through the
  views.

Angles are in degrees; distances in world units.
"""

from __future__ import annotations

import numpy as np

from genxd_jax.geometry.cameras import CameraError, look_at, orbit_camera, validate_c2w
from genxd_jax.geometry.rotations import matrix_to_quaternion, quaternion_to_matrix, slerp


def _check_frames(num_frames: int, minimum: int = 1) -> int:
    if int(num_frames) != num_frames or num_frames < minimum:
        raise CameraError(f"a trajectory needs at least {minimum} frame(s), got {num_frames}")
    return int(num_frames)


def orbit_trajectory(
    num_frames: int,
    elevation: float = 0.0,
    azimuth_range=(0.0, 360.0),
    radius: float = 2.0,
    target=(0.0, 0.0, 0.0),
    *,
    consistent4d: bool = False,
) -> np.ndarray:
    """Cameras on a circle of constant elevation around ``target``: (F, 4, 4) OpenCV c2w.

    Azimuths are linspace(a1, a2, F) with the endpoint excluded (so a full 360° orbit does not repeat frame
    0). ``consistent4d`` reproduces the official special case azimuths = 360° − [0, linspace(a1, a2, F −
    1)...].
    """
    n = _check_frames(num_frames)
    a1, a2 = azimuth_range
    azimuths = np.linspace(a1, a2, n, endpoint=False)
    if consistent4d:
        azimuths = 360.0 - np.concatenate([[0.0], np.linspace(a1, a2, n - 1, endpoint=False)])
    return np.stack([orbit_camera(elevation, a, radius, target) for a in azimuths])


def forward_trajectory(
    num_frames: int,
    elevation: float = 10.0,
    azimuth_range=(-30.0, 30.0),
    radius: float = 2.0,
    target=(0.0, 0.0, 0.0),
) -> np.ndarray:
    """The official forward-facing sweep: (F, 4, 4) OpenCV c2w; F must be a multiple of 4.

    Azimuths sweep a1 → a2 → a1 (two halves, endpoints excluded); elevations go 0 → e → 0 → −e → 0 (four
    quarters, endpoints excluded); frame 0 is then forced to azimuth 0, elevation 0. For F = 12 and ±30° the
    azimuths are 0, −20, −10, 0, 10, 20, 30, 20, 10, 0, −10, −20.
    """
    n = _check_frames(num_frames, 4)
    if n % 4:
        raise CameraError(f"the forward trajectory needs a multiple of 4 frames (official layout), got {n}")
    a1, a2 = azimuth_range
    azimuths = np.concatenate(
        [np.linspace(a1, a2, n // 2, endpoint=False), np.linspace(a2, a1, n // 2, endpoint=False)]
    )
    q = n // 4
    elevations = np.concatenate(
        [
            np.linspace(0, elevation, q, endpoint=False),
            np.linspace(elevation, 0, q, endpoint=False),
            np.linspace(0, -elevation, q, endpoint=False),
            np.linspace(-elevation, 0, q, endpoint=False),
        ]
    )
    azimuths[0] = 0.0
    elevations[0] = 0.0
    return np.stack([orbit_camera(e, a, radius, target) for a, e in zip(azimuths, elevations, strict=True)])


def spiral_trajectory(
    num_frames: int,
    radius: float = 0.3,
    focus_distance: float = 2.0,
    rotations: float = 1.0,
    z_amplitude: float = 0.0,
    reference=None,
) -> np.ndarray:
    """An LLFF-style spiral: (F, 4, 4) OpenCV c2w.

    In the axes of ``reference`` (a c2w, identity by default), camera k sits at
    (r·cos θ, r·sin θ, z_amplitude·sin(θ/2)) for θ = 2π·rotations·k/F and looks at the focus point
    (0, 0, focus_distance), keeping the reference image's up direction (−y).
    """
    n = _check_frames(num_frames)
    if not np.isfinite(radius) or radius < 0:
        raise CameraError(f"spiral radius must be non-negative, got {radius}")
    if not np.isfinite(focus_distance) or focus_distance <= 0:
        raise CameraError(f"spiral focus distance must be positive, got {focus_distance}")
    ref = np.eye(4) if reference is None else validate_c2w(reference, name="reference")
    theta = 2.0 * np.pi * rotations * np.arange(n) / n
    focus = np.array([0.0, 0.0, focus_distance])
    local = []
    for th in theta:
        eye = np.array([radius * np.cos(th), radius * np.sin(th), z_amplitude * np.sin(0.5 * th)])
        if eye[2] >= focus_distance:
            raise CameraError("spiral: z_amplitude puts a camera at or beyond the focus point")
        local.append(look_at(eye, focus, up=(0.0, -1.0, 0.0)))
    return np.einsum("ij,njk->nik", ref, np.stack(local))


def interpolate_poses(key_c2w, num_frames: int) -> np.ndarray:
    """Poses along the key poses (K, 4, 4), piecewise: rotations slerped, centres linear. -> (F, 4, 4).

    The path parameter is uniform over segments: frame k sits at u = k·(K − 1)/(F − 1), so the first and last
    frames are the first and last keys, and key j is hit exactly whenever (F − 1) is a multiple of (K − 1).
    """
    keys = validate_c2w(key_c2w, name="key poses")
    if keys.ndim != 3 or keys.shape[0] < 1:
        raise CameraError(f"key poses must be (K, 4, 4), got {keys.shape}")
    n = _check_frames(num_frames)
    if keys.shape[0] == 1:
        return np.repeat(keys, n, axis=0)
    quats = matrix_to_quaternion(keys[:, :3, :3])
    u = np.linspace(0.0, keys.shape[0] - 1, n) if n > 1 else np.zeros(1)
    out = np.zeros((n, 4, 4))
    out[:, 3, 3] = 1.0
    for k, uk in enumerate(u):
        j = min(int(np.floor(uk)), keys.shape[0] - 2)
        t = uk - j
        out[k, :3, :3] = quaternion_to_matrix(slerp(quats[j], quats[j + 1], t))
        out[k, :3, 3] = (1.0 - t) * keys[j, :3, 3] + t * keys[j + 1, :3, 3]
    return out


def order_by_proximity(key_c2w) -> np.ndarray:
    """Indices that chain the poses greedily from the first by nearest camera centre (the official tool's
    ordering)."""
    centres = validate_c2w(key_c2w, name="key poses")[:, :3, 3]
    remaining = list(range(1, len(centres)))
    order = [0]
    while remaining:
        d = np.linalg.norm(centres[remaining] - centres[order[-1]], axis=-1)
        order.append(remaining.pop(int(np.argmin(d))))
    return np.asarray(order)


def _catmull_rom(points: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Uniform Catmull–Rom spline through points (K, D) at parameters u ∈ [0, K − 1] -> (len(u), D).

    The ends use reflected phantom points, so the curve passes through every point and is C¹.
    """
    p = np.concatenate([2 * points[:1] - points[1:2], points, 2 * points[-1:] - points[-2:-1]])
    j = np.clip(np.floor(u).astype(int), 0, len(points) - 2)
    t = (u - j)[:, None]
    p0, p1, p2, p3 = p[j], p[j + 1], p[j + 2], p[j + 3]
    return 0.5 * (
        (2 * p1)
        + (-p0 + p2) * t
        + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
        + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3
    )


def smooth_trajectory(
    key_c2w, num_frames: int, *, offset: float | None = None, order: bool = False
) -> np.ndarray:
    """A smooth camera path through a few given views (K ≥ 2): (F, 4, 4) OpenCV c2w.

    Each key camera contributes three points: its centre p, a point ahead p + s·z and a point above p − s·y
    (s = ``offset``; default a quarter of the mean distance between consecutive centres). A Catmull–Rom spline
    through each set gives, at frame k (u = k·(K − 1)/(F − 1)), a centre, a look-at point and an up point,
    from which the rotation is rebuilt. The path passes through every key view exactly when (F − 1) is a
    multiple of (K − 1). ``order=True`` first chains the keys by proximity (the official tool's ordering).
    """
    keys = validate_c2w(key_c2w, name="key poses")
    if keys.ndim != 3 or keys.shape[0] < 2:
        raise CameraError(f"a smooth trajectory needs at least 2 key poses (K, 4, 4), got {keys.shape}")
    n = _check_frames(num_frames, 2)
    if order:
        keys = keys[order_by_proximity(keys)]
    centres = keys[:, :3, 3]
    if offset is None:
        gaps = np.linalg.norm(np.diff(centres, axis=0), axis=-1)
        offset = 0.25 * float(gaps.mean()) if gaps.mean() > 1e-9 else 1.0
    if not np.isfinite(offset) or offset <= 0:
        raise CameraError(f"smooth_trajectory offset must be positive, got {offset}")
    ahead = centres + offset * keys[:, :3, 2]
    above = centres - offset * keys[:, :3, 1]
    u = np.linspace(0.0, keys.shape[0] - 1, n)
    p, a, b = (_catmull_rom(x, u) for x in (centres, ahead, above))
    out = np.zeros((n, 4, 4))
    for k in range(n):
        z = a[k] - p[k]
        up = b[k] - p[k]
        z /= np.linalg.norm(z)
        x = np.cross(z, up)
        xn = np.linalg.norm(x)
        if xn < 1e-9:
            raise CameraError(
                "smooth_trajectory: degenerate orientation (the views turn too fast between keys); "
                "pass a smaller offset or more key views"
            )
        x /= xn
        out[k, :3, :3] = np.stack([x, np.cross(z, x), z], axis=1)
        out[k, :3, 3] = p[k]
        out[k, 3, 3] = 1.0
    return out
