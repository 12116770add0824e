"""Camera matrices: OpenCV camera-to-world poses, normalised intrinsics, relative poses, look-at.

Conventions (genxd-model.md §13.2, §14.2):
- A pose is a 4×4 **OpenCV camera-to-world** matrix ``c2w``: camera x right, y down, z forward (the viewing
  direction); ``c2w[:3, 3]`` is the camera centre in world units.
- Intrinsics are 3×3 and **normalised by the image size**: fx/W, fy/H, cx/W, cy/H, so a pixel centre (row i,
  column j) sits at ((j + 0.5)/W, (i + 0.5)/H).
- The official object-orbit cameras live in a Z-up "blender" world; :func:`orbit_camera` reproduces them and
  returns OpenCV c2w matrices.

All functions are NumPy (float64) and run on the host: they build the pipeline's inputs once per sample.
"""

from __future__ import annotations

import numpy as np

# Right-multiplying an OpenGL/Blender c2w (x right, y up, z backward) by this gives an OpenCV c2w, and back.
OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])


class CameraError(ValueError):
    """An impossible camera: non-finite values, a non-rigid pose, a degenerate look-at or bad intrinsics."""


def validate_c2w(c2w, *, name: str = "c2w", atol: float = 1e-3) -> np.ndarray:
    """Checks that ``c2w`` is a stack of rigid 4×4 poses and returns it as float64 (..., 4, 4).

    The rotation must be orthonormal with determinant +1 (within ``atol``) and the last row (0, 0, 0, 1).
    Raises :class:`CameraError` otherwise.
    """
    m = np.asarray(c2w, dtype=np.float64)
    if m.ndim < 2 or m.shape[-2:] != (4, 4):
        raise CameraError(f"{name} must have shape (..., 4, 4), got {m.shape}")
    if not np.all(np.isfinite(m)):
        raise CameraError(f"{name} contains non-finite values")
    if not np.allclose(m[..., 3, :], [0.0, 0.0, 0.0, 1.0], atol=atol):
        raise CameraError(f"{name}: the last row of a pose must be (0, 0, 0, 1)")
    rot = m[..., :3, :3]
    gram = np.einsum("...ji,...jk->...ik", rot, rot)
    if not np.allclose(gram, np.eye(3), atol=atol):
        bad = np.abs(gram - np.eye(3)).max()
        raise CameraError(f"{name}: rotation part is not orthonormal (max |RᵀR − I| = {bad:.3g})")
    if np.any(np.linalg.det(rot) < 0):
        raise CameraError(f"{name}: rotation part is a reflection (det < 0); expected a right-handed pose")
    return m


def rigid_inverse(c2w) -> np.ndarray:
    """Inverse of rigid poses (..., 4, 4): [Rᵀ | −Rᵀt]. Turns c2w into w2c and back."""
    m = np.asarray(c2w, dtype=np.float64)
    rot_t = np.swapaxes(m[..., :3, :3], -1, -2)
    out = np.zeros_like(m)
    out[..., :3, :3] = rot_t
    out[..., :3, 3] = -np.einsum("...ij,...j->...i", rot_t, m[..., :3, 3])
    out[..., 3, 3] = 1.0
    return out


def relative_poses(c2w, reference) -> np.ndarray:
    """Poses expressed in the frame of ``reference``: inv(reference) · c2w, still camera-to-world.

    c2w (..., 4, 4), reference (4, 4) -> (..., 4, 4). The reference camera itself becomes the identity
    (genxd-model.md §13.3 step 6: GenXD uses the first context camera).
    """
    return np.einsum("ij,...jk->...ik", rigid_inverse(reference), np.asarray(c2w, dtype=np.float64))


def intrinsics_matrix(fx: float, fy: float, cx: float = 0.5, cy: float = 0.5) -> np.ndarray:
    """A normalised 3×3 intrinsics matrix (focal lengths and principal point in units of the image size)."""
    k = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=np.float64)
    validate_intrinsics(k)
    return k


def normalise_intrinsics(k_pixels, width: int, height: int) -> np.ndarray:
    """Pixel intrinsics (..., 3, 3) -> normalised (fx/W, fy/H, cx/W, cy/H)."""
    k = np.array(k_pixels, dtype=np.float64)
    k[..., 0, :] /= width
    k[..., 1, :] /= height
    return k


def pixel_intrinsics(k_norm, width: int, height: int) -> np.ndarray:
    """Normalised intrinsics (..., 3, 3) -> pixels (the inverse of :func:`normalise_intrinsics`)."""
    k = np.array(k_norm, dtype=np.float64)
    k[..., 0, :] *= width
    k[..., 1, :] *= height
    return k


def validate_intrinsics(k, *, name: str = "intrinsics") -> np.ndarray:
    """Checks (..., 3, 3) intrinsics: finite, positive focal lengths, last row (0, 0, 1). Returns float64."""
    k = np.asarray(k, dtype=np.float64)
    if k.ndim < 2 or k.shape[-2:] != (3, 3):
        raise CameraError(f"{name} must have shape (3, 3) or (F, 3, 3), got {k.shape}")
    if not np.all(np.isfinite(k)):
        raise CameraError(f"{name} contains non-finite values")
    if np.any(k[..., 0, 0] <= 0) or np.any(k[..., 1, 1] <= 0):
        raise CameraError(f"{name}: focal lengths must be positive")
    if not np.allclose(k[..., 2, :], [0.0, 0.0, 1.0]) or not np.allclose(k[..., 1, 0], 0.0):
        raise CameraError(f"{name}: expected an upper-triangular K with last row (0, 0, 1)")
    return k


def broadcast_intrinsics(k, num_frames: int) -> np.ndarray:
    """(3, 3) or (F, 3, 3) normalised intrinsics -> (F, 3, 3), validated."""
    k = validate_intrinsics(k)
    if k.ndim == 2:
        return np.broadcast_to(k, (num_frames, 3, 3)).copy()
    if k.shape != (num_frames, 3, 3):
        raise CameraError(f"intrinsics has shape {k.shape}; expected (3, 3) or ({num_frames}, 3, 3)")
    return k


def look_at(eye, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """OpenCV c2w (4, 4) of a camera at ``eye`` looking at ``target``, image "up" towards ``up``.

    z (forward) = normalise(target − eye), x (right) = normalise(z × up), y (down) = z × x, so the world
    ``up`` appears at the top of the image (the official "blender" look-at, converted to OpenCV axes). Raises
    :class:`CameraError` when eye == target or the viewing direction is parallel to ``up``.
    """
    eye = np.asarray(eye, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    up = np.asarray(up, dtype=np.float64)
    forward = target - eye
    n = np.linalg.norm(forward)
    if not np.isfinite(n) or n < 1e-12:
        raise CameraError("look_at: the camera position coincides with its target")
    forward = forward / n
    right = np.cross(forward, up)
    rn = np.linalg.norm(right)
    if rn < 1e-9 * max(np.linalg.norm(up), 1e-300):
        raise CameraError(
            "look_at: the viewing direction is parallel to the up vector (looking straight "
            "up or down); change the elevation or the up vector"
        )
    right = right / rn
    down = np.cross(forward, right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, down, forward, eye
    return c2w


def orbit_camera(
    elevation: float, azimuth: float, radius: float, target=(0.0, 0.0, 0.0), *, degrees: bool = True
) -> np.ndarray:
    """The official object-orbit camera (utils/cam_utils.py, "blender" mode) as an OpenCV c2w (4, 4).

    Z-up world; the camera sits at target + r·(cos e·sin a, cos e·cos a, sin e) and looks at ``target``
    (at azimuth 0, elevation 0 it is at (0, r, 0)). Positive elevation moves the camera up.
    """
    if not np.isfinite(radius) or radius <= 0:
        raise CameraError(f"orbit radius must be positive, got {radius}")
    e, a = (np.deg2rad(elevation), np.deg2rad(azimuth)) if degrees else (elevation, azimuth)
    if abs(np.cos(e)) < 1e-6:
        raise CameraError(f"orbit elevation {elevation} looks straight up or down (degenerate look-at)")
    target = np.asarray(target, dtype=np.float64)
    eye = target + radius * np.array([np.cos(e) * np.sin(a), np.cos(e) * np.cos(a), np.sin(e)])
    return look_at(eye, target, up=(0.0, 0.0, 1.0))


def opengl_to_opencv(c2w_gl) -> np.ndarray:
    """OpenGL/Blender c2w (x right, y up, z backward) -> OpenCV c2w; the same matrix converts back."""
    return np.asarray(c2w_gl, dtype=np.float64) @ OPENGL_TO_OPENCV
