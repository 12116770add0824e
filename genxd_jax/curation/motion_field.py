"""The object motion field (paper §3, eqs. 3–4) and the motion strength, in the units of
:mod:`genxd_jax.data.motion` (eq. 4 × ``MOTION_SCALE`` = 100).

For a keypoint (u_i, v_i) of an object in frame i with aligned depth Z_i (eq. 3):
``kp = Z_i · K_i⁻¹ (u_i, v_i, 1)ᵀ`` in camera i, moved to world with c2w_i and projected into camera j as if it
were static: (u_ij, v_ij). With (u_j, v_j) the keypoint's tracked position in frame j, the field is
``((u_j − u_ij) / W, (v_j − v_ij) / H)`` (eq. 4): what is left of the image motion once the camera's is
removed. The strength of an object is the mean |field| over its keypoints and adjacent pairs; a video's is the
maximum over objects (0 with no object).

Pixels follow the COLMAP convention (top-left pixel centre at (0.5, 0.5)); K is in pixels; poses are OpenCV
c2w in the SfM frame, depth in the same units (the aligned depth of :mod:`genxd_jax.curation.align`).
"""

from __future__ import annotations

import numpy as np

from genxd_jax.data.motion import MOTION_SCALE


def project_static(
    points_i: np.ndarray, depth_i: np.ndarray, k_i: np.ndarray, k_j: np.ndarray, c2w_i: np.ndarray,
    c2w_j: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 3 then projection: pixels (N, 2) of frame i with z-depth (N,) → (pixels (N, 2) in frame j, z_j
    (N,))."""
    homo = np.concatenate([points_i, np.ones((len(points_i), 1))], axis=1)
    cam_i = (np.linalg.inv(k_i) @ homo.T).T * depth_i[:, None]
    world = cam_i @ c2w_i[:3, :3].T + c2w_i[:3, 3]
    w2c_j = np.linalg.inv(c2w_j)
    cam_j = world @ w2c_j[:3, :3].T + w2c_j[:3, 3]
    proj = cam_j @ k_j.T
    with np.errstate(divide="ignore", invalid="ignore"):
        return proj[:, :2] / proj[:, 2:3], cam_j[:, 2]


def motion_field(
    points_i: np.ndarray, points_j: np.ndarray, depth_i: np.ndarray, k_i: np.ndarray, k_j: np.ndarray,
    c2w_i: np.ndarray, c2w_j: np.ndarray, hw: tuple[int, int],
) -> np.ndarray:
    """Eq. 4: (N, 2) field ((u_j − u_ij)/W, (v_j − v_ij)/H); rows are NaN where the point has no valid depth
    or projects behind camera j."""
    proj, z_j = project_static(points_i, depth_i, k_i, k_j, c2w_i, c2w_j)
    field = (points_j - proj) / np.array([hw[1], hw[0]], np.float64)
    bad = ~(np.isfinite(depth_i) & (depth_i > 0) & (z_j > 0))
    field[bad] = np.nan
    return field


def motion_strength_from_correspondences(
    objects: dict, k: np.ndarray, c2w: np.ndarray, hw: tuple[int, int]
) -> tuple[float, dict[int, dict]]:
    """Motion strength (× 100) from per-object keypoint correspondences.

    ``objects``: {object id: [(i, points_i (N, 2), points_{i+1} (N, 2), depth_i (N,)), ...]} over adjacent
    pairs (i, i+1); ``k``: (3, 3) or (F, 3, 3) pixels; ``c2w``: (F, 4, 4).
    Returns (video strength = max over objects, {id: {"strength", "keypoints", "pairs"}}); an object with no
    valid keypoint gets strength ``None`` and does not count.
    """
    k = np.asarray(k, np.float64)
    ks = np.broadcast_to(k, (len(c2w), 3, 3)) if k.ndim == 2 else k
    per_object = {}
    for obj, pairs in objects.items():
        mags = []
        for i, pts_i, pts_j, depth_i in pairs:
            if len(pts_i) == 0 or not (np.all(np.isfinite(c2w[i])) and np.all(np.isfinite(c2w[i + 1]))):
                continue  # no keypoints, or a frame without a pose
            field = motion_field(
                np.asarray(pts_i, np.float64), np.asarray(pts_j, np.float64), np.asarray(depth_i, np.float64),
                ks[i], ks[i + 1], c2w[i], c2w[i + 1], hw,
            )
            mag = np.linalg.norm(field, axis=1)
            mags.append(mag[np.isfinite(mag)])
        mags = np.concatenate(mags) if mags else np.zeros(0)
        per_object[int(obj)] = {
            "strength": float(MOTION_SCALE * mags.mean()) if len(mags) else None,
            "keypoints": int(len(mags)),
            "pairs": int(len(pairs)),
        }
    values = [o["strength"] for o in per_object.values() if o["strength"] is not None]
    return (float(max(values)) if values else 0.0), per_object
