"""The :class:`Scene` record every reader returns, and its validation.

Conventions (all readers convert to these):

* ``c2w``: (N, 4, 4) float64 camera-to-world matrices in **OpenCV camera axes** (x right, y down, z forward).
* ``intrinsics``: (N, 3, 3) float64, **normalised by image size**: row 0 is (fx/W, 0, cx/W), row 1 is
  (0, fy/H, cy/H), row 2 is (0, 0, 1); pixel-edge convention, so the image spans [0, 1] in both axes.
* ``frames``: N frame references in temporal / capture order. A reference is a path (``str``), encoded image
  ``bytes`` (packed ArrayRecord scenes) or a zero-argument callable returning an (H, W, 3) uint8 array
  (procedural scenes). :func:`genxd_jax.data.images.load_frame` decodes any of them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Union

import numpy as np

from genxd_jax.data.errors import BadSceneError

FrameRef = Union[str, bytes, Callable[[], np.ndarray]]

# Data-type indicator of GenXD (genxd-model.md §1.5 of paper.md): 0 = multi-view 3D, 1 = video, 2 = 4D.
INDICATOR_3D = 0
INDICATOR_VIDEO = 1
INDICATOR_4D = 2


@dataclasses.dataclass(frozen=True)
class Scene:
    """One camera-annotated scene.

    Attributes:
        name: a stable identifier (e.g. the clip folder name).
        c2w: (N, 4, 4) float64 camera-to-world, OpenCV axes, scene units.
        intrinsics: (N, 3, 3) float64 normalised intrinsics (see module docstring).
        frames: N frame references, temporal / capture order.
        indicator: 0 (3D), 1 (video) or 2 (4D).
        motion_strength: per-scene motion label from dataset metadata (units of
            :mod:`genxd_jax.data.motion`), or None when the dataset has none.
        motion_fn: optional exact motion label for a choice of frame indices (procedural scenes know it):
            ``motion_fn(indices: (F,) int) -> float``.
        closed_orbit: True when the views lie on a closed orbit (object renders), so orbit sampling may wrap.
        scene_scale: a typical camera-to-scene distance in scene units, when known; used as the scale
            fallback for (near-)static cameras by :func:`genxd_jax.data.cameras.normalise_poses`.
    """

    name: str
    c2w: np.ndarray
    intrinsics: np.ndarray
    frames: Sequence[FrameRef]
    indicator: int
    motion_strength: float | None = None
    motion_fn: Callable[[np.ndarray], float] | None = None
    closed_orbit: bool = False
    scene_scale: float | None = None

    def __len__(self) -> int:
        return len(self.frames)


def validate_scene(scene: Scene, *, min_frames: int = 1) -> None:
    """Raises :class:`BadSceneError` unless ``scene`` has usable cameras and at least ``min_frames`` frames.

    Checks: array shapes agree with the number of frames; poses are finite; rotations are proper and
    orthonormal (|RᵀR − I| < 1e-3, det R > 0); focal lengths are finite and > 0; principal points are finite.
    """
    n = len(scene.frames)
    c2w = np.asarray(scene.c2w)
    k = np.asarray(scene.intrinsics)
    if c2w.shape != (n, 4, 4) or k.shape != (n, 3, 3):
        raise BadSceneError(
            "bad_layout", f"{scene.name}: c2w {c2w.shape} / intrinsics {k.shape} do not match {n} frames"
        )
    if n < min_frames:
        raise BadSceneError("too_few_frames", f"{scene.name}: {n} frames, need at least {min_frames}")
    if not np.all(np.isfinite(c2w)):
        raise BadSceneError("nonfinite_pose", f"{scene.name}: non-finite camera pose")
    rot = c2w[:, :3, :3]
    gram_err = np.abs(np.einsum("nji,njk->nik", rot, rot) - np.eye(3)).max(axis=(1, 2))
    det = np.linalg.det(rot)
    if np.any(gram_err > 1e-3) or np.any(det <= 0):
        bad = int(np.argmax((gram_err > 1e-3) | (det <= 0)))
        raise BadSceneError("singular_pose", f"{scene.name}: frame {bad} rotation is not a proper rotation")
    if not np.all(np.isfinite(k)):
        raise BadSceneError("bad_intrinsics", f"{scene.name}: non-finite intrinsics")
    if np.any(k[:, 0, 0] <= 0) or np.any(k[:, 1, 1] <= 0):
        raise BadSceneError("bad_intrinsics", f"{scene.name}: zero or negative focal length")
