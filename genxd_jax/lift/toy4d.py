"""A procedural dynamic Gaussian scene with known ground truth, for tests and benchmarks of 4D fitting.

Three static coloured clusters and two moving ones (Z-up world, units ≈ the object size):

* static: green at (0, 0, −0.35), yellow at (0.45, 0.3, 0.05), white at (−0.4, −0.35, 0.15);
* mover A (red): centre (−0.55 + 1.1·t, 0, 0.35) — a straight line over t ∈ [0, 1];
* mover B (blue): centre 0.45·(cos 2πt, sin 2πt, 0) + (0, 0, 0.05) — a full circle.

The monocular clip follows GenXD's 4D clips: one camera per time, the camera orbiting while time runs
(:func:`genxd_jax.geometry.orbit_trajectory` at ``radius``, ``elevation``, azimuth ``azimuth_start`` →
``azimuth_end`` as t goes 0 → 1). Frames are rendered with :func:`genxd_jax.lift.render` (black background).
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from genxd_jax.geometry import intrinsics_matrix
from genxd_jax.geometry.cameras import orbit_camera
from genxd_jax.lift.gaussians import Gaussians
from genxd_jax.lift.render import render

STATIC = (((0.0, 0.0, -0.35), (0.2, 0.8, 0.25)), ((0.45, 0.3, 0.05), (0.9, 0.8, 0.15)),
          ((-0.4, -0.35, 0.15), (0.85, 0.85, 0.85)))
MOVING_COLORS = ((0.95, 0.2, 0.15), (0.2, 0.35, 0.95))


def mover_centres(t) -> np.ndarray:
    """Centres (2, 3) of movers A and B at time ``t`` ∈ [0, 1]."""
    t = float(t)
    a = (-0.55 + 1.1 * t, 0.0, 0.35)
    b = (0.45 * np.cos(2 * np.pi * t), 0.45 * np.sin(2 * np.pi * t), 0.05)
    return np.array([a, b])


@dataclasses.dataclass
class ToyDynamicScene:
    """Ground-truth Gaussians: ``offsets`` (M, 3) around each cluster centre, ``cluster`` (M,) in 0..4 (0–2
    static, 3–4 movers A, B), ``colors`` (M, 3), ``scale`` (world σ) and the camera path settings."""

    offsets: np.ndarray
    cluster: np.ndarray
    colors: np.ndarray
    scale: float = 0.06
    radius: float = 3.0
    elevation: float = 20.0
    azimuth_start: float = 0.0
    azimuth_end: float = 90.0
    focal: float = 1.3

    def gaussians(self, t) -> Gaussians:
        """The scene at time ``t`` as Gaussians (opacity 0.9, isotropic σ = ``scale``)."""
        centres = np.concatenate([np.array([c for c, _ in STATIC]), mover_centres(t)])
        means = centres[self.cluster] + self.offsets
        return Gaussians.create(means, self.colors, scales=self.scale, opacity=0.9)

    def camera(self, t) -> np.ndarray:
        """The clip's camera at time ``t``: (4, 4) OpenCV c2w on the orbit."""
        az = self.azimuth_start + (self.azimuth_end - self.azimuth_start) * float(t)
        return orbit_camera(self.elevation, az, self.radius)

    def intrinsics(self) -> np.ndarray:
        return intrinsics_matrix(self.focal, self.focal)

    def render(self, t, c2w, size: int) -> np.ndarray:
        """(size, size, 3) ground-truth frame of the scene at time ``t`` from ``c2w``, clipped to [0, 1]."""
        out = render(self.gaussians(t), jnp.asarray(c2w, jnp.float32), jnp.asarray(self.intrinsics(), jnp.float32),
                     size, size, rasterizer="dense")
        return np.clip(np.asarray(out.rgb), 0.0, 1.0)

    def clip(self, times, size: int):
        """Monocular clip at ``times``: (frames (T, S, S, 3), c2w (T, 4, 4), intrinsics (3, 3), times (T,))."""
        times = np.asarray(times, np.float64)
        c2w = np.stack([self.camera(t) for t in times])
        frames = np.stack([self.render(t, c, size) for t, c in zip(times, c2w)])
        return frames.astype(np.float32), c2w, self.intrinsics(), times


def make_toy_scene(per_cluster: int = 40, seed: int = 0, **kwargs) -> ToyDynamicScene:
    """``5 × per_cluster`` Gaussians: offsets ~ N(0, 0.09²) per axis, colours the cluster's ± 0.05."""
    rng = np.random.default_rng(seed)
    m = 5 * per_cluster
    cluster = np.repeat(np.arange(5), per_cluster)
    offsets = rng.normal(0.0, 0.09, (m, 3))
    base = np.array([c for _, c in STATIC] + list(MOVING_COLORS))
    colors = np.clip(base[cluster] + rng.uniform(-0.05, 0.05, (m, 3)), 0.0, 1.0)
    return ToyDynamicScene(offsets=offsets, cluster=cluster, colors=colors, **kwargs)


__all__ = ["ToyDynamicScene", "make_toy_scene", "mover_centres"]
