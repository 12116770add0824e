"""Choosing frames and context views of a training example (pure functions of a numpy Generator).

* 3D scenes: "orbit" picks F views in capture order with a random start and a random view stride (wrapping
  around closed orbits such as object renders); "random" picks F distinct views, kept in capture order.
* Video / 4D scenes: F consecutive frames with a temporal stride drawn in [1, max_stride] (lowered to fit).
* Context views: one view with probability ``single_view_ratio``, otherwise k ∈ [2, K] views (at least one
  target is always left); their slots are uniformly random ("any position in the sequence", paper §4.1).
"""

from __future__ import annotations

import numpy as np

from genxd_jax.data.errors import BadSceneError
from genxd_jax.data.scene import INDICATOR_3D


def choose_frames(
    rng: np.random.Generator,
    num_available: int,
    num_frames: int,
    *,
    indicator: int,
    view_sampling: str = "orbit",
    closed_orbit: bool = False,
    max_stride: int = 1,
    orbit_max_stride: int = 8,
) -> np.ndarray:
    """Indices (F,) int64 into a scene's N frames.

    Raises ``too_few_frames`` when N < F.
    """
    n, f = int(num_available), int(num_frames)
    if n < f:
        raise BadSceneError("too_few_frames", f"scene has {n} frames, the example needs {f}")
    if f == 1:
        return np.array([rng.integers(n)], dtype=np.int64)
    steps = np.arange(f, dtype=np.int64)
    if indicator == INDICATOR_3D:
        if view_sampling == "random":
            return np.sort(rng.choice(n, size=f, replace=False)).astype(np.int64)
        if view_sampling != "orbit":
            raise ValueError(f"unknown view_sampling {view_sampling!r}; expected 'orbit' or 'random'")
        if closed_orbit:
            stride = int(rng.integers(1, max(1, n // f) + 1))
            return (int(rng.integers(n)) + stride * steps) % n
        top = max(1, min(int(orbit_max_stride), (n - 1) // (f - 1)))
    else:
        top = max(1, min(int(max_stride), (n - 1) // (f - 1)))
    stride = int(rng.integers(1, top + 1))
    start = int(rng.integers(0, n - (f - 1) * stride))
    return start + stride * steps


def choose_context(
    rng: np.random.Generator, num_frames: int, *, single_view_ratio: float, max_context_views: int
) -> np.ndarray:
    """Context mask (F,) bool with 1..K True entries (never all F when F > 1)."""
    f = int(num_frames)
    most = max(1, min(int(max_context_views), f - 1))
    if most == 1 or rng.random() < single_view_ratio:
        k = 1
    else:
        k = int(rng.integers(2, most + 1))
    mask = np.zeros(f, dtype=bool)
    mask[rng.choice(f, size=k, replace=False)] = True
    return mask


def choose_views(
    rng: np.random.Generator,
    scene_length: int,
    *,
    closed_orbit: bool,
    num_frames: int,
    indicator: int,
    view_sampling: str,
    frame_stride: int,
    orbit_max_stride: int,
    single_view_ratio: float,
    max_context_views: int,
    indices: np.ndarray | None = None,
    context_mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The frames (F,) int64 of a scene of ``scene_length`` frames and their context mask (F,) bool.

    Frames are drawn first, then the context, so every example builder that calls this makes the same draws in
    the same order for one seed. ``indices`` / ``context_mask``, when given, replace the draw (evaluation).
    """
    if indices is None:
        idx = choose_frames(rng, scene_length, num_frames, indicator=indicator, view_sampling=view_sampling,
                            closed_orbit=closed_orbit, max_stride=frame_stride, orbit_max_stride=orbit_max_stride)
    else:
        idx = np.asarray(indices, dtype=np.int64)
    if context_mask is None:
        mask = choose_context(rng, num_frames, single_view_ratio=single_view_ratio,
                              max_context_views=max_context_views)
    else:
        mask = np.asarray(context_mask, dtype=bool)
    return idx, mask
