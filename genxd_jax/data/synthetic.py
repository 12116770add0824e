"""Procedural camera-annotated scenes: the embedded default data, needing no download.

A scene is a checkered ground plane, a sky gradient and 2–4 textured spheres, ray-cast in numpy with exact
ground-truth cameras (OpenCV c2w, normalised intrinsics). World frame: z up, ground at z = 0, units are metres
of the toy world. Everything is a pure function of ``(kind, seed, index)``:

* ``kind="3d"``: static spheres, ``num_frames`` cameras evenly spaced on a closed orbit (random start azimuth,
  radius 3.2–4.2, elevation 15–35°, looking at (0, 0, 0.3)); indicator 0, motion 0.
* ``kind="4d"``: 1–2 spheres translate on the ground at constant velocity (0.01–0.06 units per frame) while
  the camera sweeps an arc of up to ±50° with sinusoidal elevation jitter (GenXD's "noise on the orbit
  trajectory"); indicator 2.

The motion label of a 4D example is **known exactly** (:meth:`SyntheticScene.motion_strength`): the paper's
motion field (eq. 4): for each moving object the displacement, in the image of frame j, between its position
at the previous sampled frame and at frame j, divided by the image size, then the mean over consecutive
sampled pairs, the max over objects, times 100 (see :mod:`genxd_jax.data.motion` for the units). Frames render
lazily, one at a time, at ``size`` × ``size`` pixels (≈1 ms at 64 px, ≈20 ms at 256 px on one core).

``read_scene("synthetic", "<kind>/<seed>/<index>", size=64, num_frames=None)`` returns such a scene.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from genxd_jax.data.errors import BadSceneError
from genxd_jax.data.motion import MOTION_SCALE
from genxd_jax.data.scene import INDICATOR_3D, INDICATOR_4D, Scene

DEFAULT_FRAMES = {"3d": 24, "4d": 32}
_LIGHT = np.array([0.4, -0.3, 0.85]) / np.linalg.norm([0.4, -0.3, 0.85])
_TARGET = np.array([0.0, 0.0, 0.3])


def look_at_c2w(eye: np.ndarray, target: np.ndarray, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """OpenCV c2w (4, 4) of a camera at ``eye`` looking at ``target`` (x right, y down, z forward)."""
    forward = target - eye
    forward = forward / np.linalg.norm(forward)
    right = np.cross(forward, np.asarray(up, dtype=np.float64))
    right = right / np.linalg.norm(right)
    down = np.cross(forward, right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, down, forward, eye
    return c2w


@dataclasses.dataclass(frozen=True)
class SyntheticScene:
    """Parameters of one procedural scene (all float64 numpy arrays; picklable)."""

    kind: str
    size: int
    c2w: np.ndarray  # (N, 4, 4)
    focal: float  # normalised fx = fy
    centers: np.ndarray  # (K, 3) sphere centres at the middle frame
    velocities: np.ndarray  # (K, 3) units per frame (zero for static spheres)
    radii: np.ndarray  # (K,)
    colors: np.ndarray  # (K, 3) in [0, 1]
    stripes: np.ndarray  # (K,) texture frequency
    ground_colors: np.ndarray  # (2, 3)
    tile: float

    @property
    def num_frames(self) -> int:
        return self.c2w.shape[0]

    def intrinsics(self) -> np.ndarray:
        k = np.array([[self.focal, 0.0, 0.5], [0.0, self.focal, 0.5], [0.0, 0.0, 1.0]])
        return np.tile(k, (self.num_frames, 1, 1))

    def positions(self, t) -> np.ndarray:
        """Sphere centres (K, 3) at frame ``t`` (may be fractional)."""
        return self.centers + self.velocities * (float(t) - 0.5 * (self.num_frames - 1))

    def render(self, t: int) -> np.ndarray:
        """Ray-casts frame ``t`` → (size, size, 3) uint8."""
        s = self.size
        c2w = self.c2w[t]
        coords = (np.arange(s, dtype=np.float32) + 0.5) / s
        x = (coords[None, :] - 0.5) / self.focal
        y = (coords[:, None] - 0.5) / self.focal
        dirs_cam = np.stack(np.broadcast_arrays(x, y, np.ones_like(x)), -1).reshape(-1, 3)
        d = dirs_cam @ c2w[:3, :3].T.astype(np.float32)
        d /= np.linalg.norm(d, axis=-1, keepdims=True)
        o = c2w[:3, 3].astype(np.float32)
        # sky
        sky_t = np.clip(d[:, 2:3] * 2.0, 0.0, 1.0)
        color = (1 - sky_t) * np.array([0.92, 0.92, 0.96], np.float32) + sky_t * np.array(
            [0.45, 0.62, 0.92], np.float32
        )
        depth = np.full(d.shape[0], np.inf, np.float32)
        # ground plane z = 0 (checker)
        with np.errstate(divide="ignore", invalid="ignore"):
            t_ground = np.where(d[:, 2] < -1e-6, -o[2] / d[:, 2], np.inf)
        hit = np.isfinite(t_ground)
        if hit.any():
            p = o + t_ground[hit, None] * d[hit]
            checker = (np.floor(p[:, 0] / self.tile) + np.floor(p[:, 1] / self.tile)) % 2
            base = np.where(checker[:, None] > 0, self.ground_colors[0], self.ground_colors[1]).astype(
                np.float32
            )
            fade = np.exp(-0.03 * t_ground[hit])[:, None]
            color[hit] = base * (0.55 + 0.45 * _LIGHT[2]) * fade + color[hit] * (1 - fade)
            depth[hit] = t_ground[hit]
        # spheres
        for center, radius, rgb, freq in zip(
            self.positions(t), self.radii, self.colors, self.stripes, strict=True
        ):
            oc = o - center.astype(np.float32)
            b = d @ oc
            disc = b * b - (oc @ oc - radius * radius)
            valid = disc > 0
            t_hit = np.where(valid, -b - np.sqrt(np.maximum(disc, 0)), np.inf)
            front = valid & (t_hit > 1e-4) & (t_hit < depth)
            if not front.any():
                continue
            p = o + t_hit[front, None] * d[front]
            n = (p - center) / radius
            lon = np.arctan2(n[:, 1], n[:, 0])
            pattern = (np.floor(lon * freq / np.pi) + np.floor(n[:, 2] * freq * 0.5)) % 2
            albedo = rgb[None, :] * (0.55 + 0.45 * pattern[:, None])
            shade = 0.3 + 0.7 * np.clip(n @ _LIGHT, 0.0, 1.0)
            color[front] = (albedo * shade[:, None]).astype(np.float32)
            depth[front] = t_hit[front]
        return (np.clip(color, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8).reshape(s, s, 3)

    def motion_strength(self, indices: np.ndarray) -> float:
        """Exact motion label (units of :mod:`genxd_jax.data.motion`) for the frames ``indices`` (F,)."""
        idx = np.asarray(indices)
        moving = np.linalg.norm(self.velocities, axis=-1) > 0
        if len(idx) < 2 or not moving.any():
            return 0.0
        k = self.intrinsics()[0]
        per_object = []
        for obj in np.flatnonzero(moving):
            steps = []
            for a, b in zip(idx[:-1], idx[1:], strict=True):
                pts = np.stack([self.positions(a)[obj], self.positions(b)[obj]])
                w2c = np.linalg.inv(self.c2w[b])
                cam = pts @ w2c[:3, :3].T + w2c[:3, 3]
                uv = (cam @ k.T)[:, :2] / cam[:, 2:3]
                steps.append(np.linalg.norm(uv[1] - uv[0]))
            per_object.append(np.mean(steps))
        return float(MOTION_SCALE * max(per_object))


@dataclasses.dataclass(frozen=True)
class _Frame:
    scene: SyntheticScene
    t: int

    def __call__(self) -> np.ndarray:
        return self.scene.render(self.t)


def make_synthetic_scene(
    kind: str, seed: int, index: int, *, size: int = 64, num_frames: int | None = None
) -> SyntheticScene:
    """Draws the parameters of scene ``index`` of the ``kind`` ("3d" or "4d") family seeded by ``seed``."""
    if kind not in DEFAULT_FRAMES:
        raise ValueError(f"synthetic kind must be '3d' or '4d', got {kind!r}")
    n = int(num_frames or DEFAULT_FRAMES[kind])
    rng = np.random.default_rng([int(seed), int(index), 0 if kind == "3d" else 1])
    k = int(rng.integers(2, 5))
    radii = rng.uniform(0.25, 0.55, k)
    angle, dist = rng.uniform(0, 2 * np.pi, k), 1.3 * np.sqrt(rng.uniform(0, 1, k))
    centers = np.stack([dist * np.cos(angle), dist * np.sin(angle), radii], -1)
    velocities = np.zeros((k, 3))
    if kind == "4d":
        n_moving = int(rng.integers(1, min(2, k) + 1))
        heading = rng.uniform(0, 2 * np.pi, n_moving)
        speed = rng.uniform(0.01, 0.06, n_moving)
        velocities[:n_moving, 0], velocities[:n_moving, 1] = speed * np.cos(heading), speed * np.sin(heading)
    radius, elev0, azim0 = rng.uniform(3.2, 4.2), np.deg2rad(rng.uniform(15, 35)), rng.uniform(0, 2 * np.pi)
    steps = np.arange(n)
    if kind == "3d":
        azim = azim0 + 2 * np.pi * steps / n
        elev = np.full(n, elev0)
    else:
        azim = azim0 + np.deg2rad(rng.uniform(-50, 50)) * steps / max(n - 1, 1)
        elev = elev0 + np.deg2rad(3.0) * np.sin(2 * np.pi * steps / n * rng.uniform(0.5, 1.5))
    eyes = (
        radius * np.stack([np.cos(elev) * np.sin(azim), np.cos(elev) * np.cos(azim), np.sin(elev)], -1)
        + _TARGET
    )
    c2w = np.stack([look_at_c2w(e, _TARGET) for e in eyes])
    return SyntheticScene(
        kind=kind,
        size=int(size),
        c2w=c2w,
        focal=float(rng.uniform(0.9, 1.2)),
        centers=centers,
        velocities=velocities,
        radii=radii,
        colors=rng.uniform(0.2, 0.95, (k, 3)),
        stripes=rng.integers(3, 7, k).astype(np.float64),
        ground_colors=np.stack([rng.uniform(0.55, 0.8, 3), rng.uniform(0.2, 0.4, 3)]),
        tile=float(rng.uniform(0.3, 0.7)),
    )


def synthetic_to_scene(params: SyntheticScene, name: str) -> Scene:
    """Wraps procedural parameters into a :class:`Scene` with lazy frame renderers."""
    is_4d = params.kind == "4d"
    return Scene(
        name=name,
        c2w=params.c2w,
        intrinsics=params.intrinsics(),
        frames=[_Frame(params, t) for t in range(params.num_frames)],
        indicator=INDICATOR_4D if is_4d else INDICATOR_3D,
        motion_strength=None if is_4d else 0.0,
        motion_fn=params.motion_strength if is_4d else None,
        closed_orbit=not is_4d,
        scene_scale=float(np.linalg.norm(params.c2w[0, :3, 3] - _TARGET)),
    )


def read_synthetic(path: str, *, size: int = 64, num_frames: int | None = None) -> Scene:
    """``path`` = "<kind>/<seed>/<index>", e.g. "4d/0/17"."""
    parts = str(path).strip("/").split("/")
    if len(parts) != 3:
        raise BadSceneError("bad_layout", f"synthetic path must be '<3d|4d>/<seed>/<index>', got {path!r}")
    try:
        seed, index = int(parts[1]), int(parts[2])
    except ValueError as err:
        raise BadSceneError(
            "bad_layout", f"synthetic path {path!r}: seed and index must be integers"
        ) from err
    params = make_synthetic_scene(parts[0], seed, index, size=size, num_frames=num_frames)
    return synthetic_to_scene(params, name=f"synthetic/{parts[0]}/{seed}/{index}")
