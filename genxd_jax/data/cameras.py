"""Camera conventions, conversions and the pose normalisation used for training examples.

Everything is expressed as OpenCV camera-to-world (c2w) matrices: camera x right, y down, z forward.

Pose normalisation (:func:`normalise_poses`), the choice and why:

1. **Relative to the reference frame**: ``rel_f = inv(c2w_ref) @ c2w_f``. GenXD's pipeline computes every ray
   in the first context camera's frame (genxd-model.md §13.3 step 6), so the reference is the first context
   frame and its pose becomes the identity. This removes the arbitrary world frame of each dataset (COLMAP,
   CO3D, Blender).
2. **Scale**: translations are divided by the largest distance of a sampled camera from the reference camera,
   so the farthest camera sits at distance 1. The paper does not specify a scale (the released code only has a
   user ``scale`` knob), and SfM reconstructions (CamVid-30K, MVImgNet, RealEstate10K) are defined up to
   scale, so some normalisation is needed for the Plücker moments ``o × d`` to live in the same range across
   datasets. The max (rather than median) bounds every moment by 1 and is exact for two-view examples.
   When all sampled cameras are (nearly) at the reference position, a static camera, this ratio is
   noise; then the scene's known ``scene_scale`` is used instead when there is one, otherwise no scaling.
   "Nearly" means max distance ≤ 1e-3 × scene_scale (or ≤ 1e-9 scene units when the scale is unknown).
"""

from __future__ import annotations

import numpy as np

from genxd_jax.data.errors import BadSceneError
from genxd_jax.geometry.rotations import matrix_to_quaternion, quaternion_to_matrix

# Right-multiplying an OpenGL/Blender c2w (x right, y up, z backward) by this gives an OpenCV c2w.
OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])


def qvec_to_rotmat(qvec: np.ndarray) -> np.ndarray:
    """Unit quaternion(s) (..., 4) ordered (w, x, y, z) → rotation matrices (..., 3, 3).

    The quaternion is normalised first; a non-finite quaternion raises ``nonfinite_pose`` and a zero one
    ``singular_pose`` (the data pipeline's reasons for skipping a scene).
    """
    q = np.asarray(qvec, dtype=np.float64)
    if not np.all(np.isfinite(q)):
        raise BadSceneError("nonfinite_pose", "non-finite quaternion")
    if np.any(np.linalg.norm(q, axis=-1) < 1e-12):
        raise BadSceneError("singular_pose", "zero quaternion")
    return quaternion_to_matrix(q)


def rotmat_to_qvec(rot: np.ndarray) -> np.ndarray:
    """Rotation matrix (3, 3) → unit quaternion (w, x, y, z) with w ≥ 0 (used to write test fixtures)."""
    return matrix_to_quaternion(rot)


def rt_to_matrix(rot: np.ndarray, trans: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation and (..., 3) translation → (..., 4, 4) homogeneous matrices."""
    rot = np.asarray(rot, dtype=np.float64)
    out = np.zeros(rot.shape[:-2] + (4, 4))
    out[..., :3, :3] = rot
    out[..., :3, 3] = trans
    out[..., 3, 3] = 1.0
    return out


def invert_poses(mats: np.ndarray) -> np.ndarray:
    """Inverts (..., 4, 4) or (..., 3, 4) poses (w2c ↔ c2w), returning (..., 4, 4) float64.

    Raises ``nonfinite_pose`` for NaN/Inf and ``singular_pose`` for a singular matrix.
    """
    m = np.asarray(mats, dtype=np.float64)
    if m.shape[-2] == 3:
        m = np.concatenate([m, np.broadcast_to([0.0, 0.0, 0.0, 1.0], m.shape[:-2] + (1, 4))], axis=-2)
    if not np.all(np.isfinite(m)):
        raise BadSceneError("nonfinite_pose", "non-finite camera matrix")
    det = np.linalg.det(m[..., :3, :3])
    if np.any(np.abs(det) < 1e-9):
        raise BadSceneError("singular_pose", "singular camera matrix")
    return np.linalg.inv(m)


def opengl_to_opencv_c2w(c2w_gl: np.ndarray) -> np.ndarray:
    """OpenGL/Blender c2w (..., 4, 4) (camera looks along −z, y up) → OpenCV c2w (..., 4, 4)."""
    return np.asarray(c2w_gl, dtype=np.float64) @ OPENGL_TO_OPENCV


def normalised_intrinsics(fx, fy, cx, cy, width, height) -> np.ndarray:
    """Pixel intrinsics (scalars or (N,) arrays) and image size → (..., 3, 3) normalised intrinsics."""
    fx, fy, cx, cy, width, height = np.broadcast_arrays(
        *(np.asarray(v, dtype=np.float64) for v in (fx, fy, cx, cy, width, height))
    )
    k = np.zeros(fx.shape + (3, 3))
    k[..., 0, 0] = fx / width
    k[..., 1, 1] = fy / height
    k[..., 0, 2] = cx / width
    k[..., 1, 2] = cy / height
    k[..., 2, 2] = 1.0
    return k


def normalise_poses(c2w: np.ndarray, ref: int, scene_scale: float | None = None) -> tuple[np.ndarray, float]:
    """Expresses poses relative to frame ``ref`` and normalises the translation scale (see module doc).

    Args:
        c2w: (F, 4, 4) OpenCV c2w in scene units.
        ref: index of the reference frame (the first context frame).
        scene_scale: optional typical scene distance, the fallback scale for static cameras.

    Returns:
        (rel, scale): rel (F, 4, 4) float64 with ``rel[ref] == I`` and max camera distance 1 (unless static),
        and the factor the translations were multiplied by.
    """
    c2w = np.asarray(c2w, dtype=np.float64)
    rel = np.linalg.inv(c2w[ref]) @ c2w
    dist = float(np.linalg.norm(rel[:, :3, 3], axis=-1).max())
    threshold = 1e-3 * scene_scale if scene_scale else 1e-9
    if dist > threshold:
        scale = 1.0 / dist
    elif scene_scale:
        scale = 1.0 / scene_scale
    else:
        scale = 1.0
    rel[:, :3, 3] *= scale
    rel[ref] = np.eye(4)
    return rel, scale


def project(points_world: np.ndarray, c2w: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
    """Projects world points (P, 3) into a camera: returns (P, 2) normalised image coordinates in [0, 1]²."""
    w2c = np.linalg.inv(c2w)
    cam = points_world @ w2c[:3, :3].T + w2c[:3, 3]
    uvw = cam @ np.asarray(intrinsics).T
    return uvw[:, :2] / uvw[:, 2:3]
