"""Rotation matrices <-> unit quaternions and spherical linear interpolation (NumPy, float64).

Quaternions are ordered (w, x, y, z) and returned with w ≥ 0.
"""

from __future__ import annotations

import numpy as np


def matrix_to_quaternion(rot) -> np.ndarray:
    """Rotation matrices (..., 3, 3) -> unit quaternions (..., 4) as (w, x, y, z), w ≥ 0.

    Uses the largest-diagonal branch (Shepperd) for every matrix, so it is stable near 180° rotations.
    """
    r = np.asarray(rot, dtype=np.float64)
    if r.shape[-2:] != (3, 3):
        raise ValueError(f"rotation matrices must have shape (..., 3, 3), got {r.shape}")
    flat = r.reshape(-1, 3, 3)
    out = np.empty((flat.shape[0], 4))
    for n, m in enumerate(flat):
        tr = np.trace(m)
        diag = np.diag(m)
        if tr >= diag.max():
            s = 2.0 * np.sqrt(max(1.0 + tr, 1e-300))
            q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
        else:
            i = int(np.argmax(diag))
            j, k = (i + 1) % 3, (i + 2) % 3
            s = 2.0 * np.sqrt(max(1.0 + m[i, i] - m[j, j] - m[k, k], 1e-300))
            q = np.empty(4)
            q[0] = (m[k, j] - m[j, k]) / s
            q[1 + i] = 0.25 * s
            q[1 + j] = (m[j, i] + m[i, j]) / s
            q[1 + k] = (m[k, i] + m[i, k]) / s
        q = np.asarray(q, dtype=np.float64)
        q /= np.linalg.norm(q)
        out[n] = -q if q[0] < 0 else q
    return out.reshape(r.shape[:-2] + (4,))


def quaternion_to_matrix(quat) -> np.ndarray:
    """Quaternions (..., 4) as (w, x, y, z), normalised first -> rotation matrices (..., 3, 3)."""
    q = np.asarray(quat, dtype=np.float64)
    norm = np.linalg.norm(q, axis=-1, keepdims=True)
    if np.any(norm < 1e-12):
        raise ValueError("cannot convert a zero quaternion to a rotation")
    w, x, y, z = np.moveaxis(q / norm, -1, 0)
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )


def slerp(q0, q1, t) -> np.ndarray:
    """Spherical linear interpolation between unit quaternions q0, q1 (4,) at fractions t (...,) -> (..., 4).

    Takes the shorter arc (q1 is negated when q0·q1 < 0); falls back to normalised lerp for nearly equal
    rotations. t = 0 gives q0 and t = 1 gives ±q1 (the same rotation).
    """
    q0 = np.asarray(q0, dtype=np.float64) / np.linalg.norm(q0)
    q1 = np.asarray(q1, dtype=np.float64) / np.linalg.norm(q1)
    t = np.asarray(t, dtype=np.float64)[..., None]
    d = float(np.dot(q0, q1))
    if d < 0.0:
        q1, d = -q1, -d
    if d > 1.0 - 1e-10:
        q = (1.0 - t) * q0 + t * q1
    else:
        angle = np.arccos(min(d, 1.0))
        q = (np.sin((1.0 - t) * angle) * q0 + np.sin(t * angle) * q1) / np.sin(angle)
    return q / np.linalg.norm(q, axis=-1, keepdims=True)
