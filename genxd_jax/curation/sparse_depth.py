"""Sparse depth from an SfM model (paper §3, eq. 1): each registered frame's observed 3D points projected
into it, ``P_cam = R·P_world + t``, ``(u, v, 1)ᵀ = K·(X/Z, Y/Z, 1)ᵀ``, ``d = Z``.

Only the points a frame *observes* (its ``points2D`` with a 3D point) are used, so occluded points do not leak
in; they lie on the static part (features were masked off the objects).
"""

from __future__ import annotations

import numpy as np


def project_points(points_world: np.ndarray, w2c: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 1: world points (N, 3) → (pixels (N, 2), COLMAP convention; z-depth (N,))."""
    cam = points_world @ w2c[:3, :3].T + w2c[:3, 3]
    proj = cam @ k.T
    with np.errstate(divide="ignore", invalid="ignore"):
        return proj[:, :2] / proj[:, 2:3], cam[:, 2]


def sparse_depth_from_reconstruction(rec, names: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per frame name: (pixels (N, 2), depth (N,)) of the 3D points it observes, in front of the camera.

    ``rec``: a ``pycolmap.Reconstruction``; frames missing from it get empty arrays.
    """
    out = []
    for name in names:
        img = rec.find_image_with_name(name)
        if img is None or not img.has_pose:
            out.append((np.zeros((0, 2)), np.zeros(0)))
            continue
        ids = [p.point3D_id for p in img.points2D if p.has_point3D()]
        if not ids:
            out.append((np.zeros((0, 2)), np.zeros(0)))
            continue
        xyz = np.array([rec.points3D[i].xyz for i in ids], np.float64)
        w2c = np.eye(4)
        w2c[:3] = img.cam_from_world().matrix()
        uv, z = project_points(xyz, w2c, img.camera.calibration_matrix())
        keep = np.isfinite(z) & (z > 0)
        out.append((uv[keep], z[keep]))
    return out


def sample_map(dense: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear sample of a (H, W) map at COLMAP-convention pixels (N, 2); NaN outside the image."""
    h, w = dense.shape
    x, y = uv[:, 0] - 0.5, uv[:, 1] - 0.5
    inside = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    x, y = np.clip(x, 0, w - 1), np.clip(y, 0, h - 1)
    x0, y0 = np.minimum(np.floor(x).astype(int), w - 2 if w > 1 else 0), np.minimum(
        np.floor(y).astype(int), h - 2 if h > 1 else 0
    )
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = x - x0, y - y0
    val = (
        dense[y0, x0] * (1 - fx) * (1 - fy) + dense[y0, x1] * fx * (1 - fy)
        + dense[y1, x0] * (1 - fx) * fy + dense[y1, x1] * fx * fy
    )
    return np.where(inside, val, np.nan)
