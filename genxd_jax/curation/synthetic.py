"""Procedural test videos for curation: a richly textured room, static boxes and one box that can move,
ray-cast with exact cameras, z-depth and instance masks (for tests and benchmarks).

The textures are 3D value noise (four octaves, per-channel) so that SIFT and Lucas–Kanade have features
everywhere; a moving box carries its texture with it (noise evaluated in the box's own frame). Conventions:
OpenCV camera axes (x right, y down, z forward), c2w (4, 4), intrinsics in pixels with the COLMAP pixel
convention (the top-left pixel's centre is at (0.5, 0.5)); depth is z-depth in world units; mask 0 =
background, 1 = the (potentially) moving box.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from genxd_jax.curation.motion_field import motion_strength_from_correspondences


@dataclasses.dataclass
class SyntheticVideo:
    frames: np.ndarray  # (F, H, W, 3) uint8
    depth: np.ndarray  # (F, H, W) float32 z-depth
    masks: np.ndarray  # (F, H, W) uint8 instance ids
    c2w: np.ndarray  # (F, 4, 4) OpenCV
    k: np.ndarray  # (3, 3) pixels, COLMAP convention
    offsets: np.ndarray  # (F, 3) world translation of the moving box per frame

    def ground_truth_strength(self, stride: int = 2, num_frames: int | None = None) -> float:
        """Motion strength (eq. 4 × 100, mean per object, max over objects) from the exact scene: every
        ``stride``-th object pixel of frame i, back-projected with the true depth, moved with the box and
        projected into frame i+1 (the correspondence), against the same point projected as if static; over the
        first ``num_frames`` frames (default all)."""
        h, w = self.depth.shape[1:]
        src, dst, depth_src, pairs = [], [], [], []
        for i in range((num_frames or len(self.frames)) - 1):
            ys, xs = np.nonzero(self.masks[i][::stride, ::stride] == 1)
            ys, xs = ys * stride, xs * stride
            u = np.stack([xs + 0.5, ys + 0.5], -1)
            z = self.depth[i][ys, xs]
            pts = (np.linalg.inv(self.k) @ np.concatenate([u, np.ones((len(u), 1))], 1).T).T * z[:, None]
            world = (self.c2w[i][:3, :3] @ pts.T).T + self.c2w[i][:3, 3]
            moved = world + (self.offsets[i + 1] - self.offsets[i])
            w2c = np.linalg.inv(self.c2w[i + 1])
            cam = (w2c[:3, :3] @ moved.T).T + w2c[:3, 3]
            proj = (self.k @ cam.T).T
            uj = proj[:, :2] / proj[:, 2:]
            keep = (uj[:, 0] >= 0) & (uj[:, 0] <= w) & (uj[:, 1] >= 0) & (uj[:, 1] <= h) & (cam[:, 2] > 0)
            src.append(u[keep])
            dst.append(uj[keep])
            depth_src.append(z[keep])
            pairs.append(i)
        return motion_strength_from_correspondences(
            {1: list(zip(pairs, src, dst, depth_src, strict=True))}, self.k, self.c2w, (h, w)
        )[0]


def _noise_tables(rng: np.random.Generator, octaves: int, size: int = 32) -> np.ndarray:
    return rng.random((octaves, 3, size, size, size), dtype=np.float32)


def _value_noise(p: np.ndarray, tables: np.ndarray, freqs, weights) -> np.ndarray:
    """3D value noise of points p (N, 3) → (N, 3) in [0, 1] (smoothstep-interpolated random lattices)."""
    size = tables.shape[-1]
    out = np.zeros((len(p), 3), np.float32)
    for o, (freq, weight) in enumerate(zip(freqs, weights, strict=True)):
        q = p * freq
        base = np.floor(q).astype(np.int64)
        f = (q - base).astype(np.float32)
        f = f * f * (3 - 2 * f)
        acc = np.zeros((len(p), 3), np.float32)
        for dx in (0, 1):
            for dy in (0, 1):
                for dz in (0, 1):
                    ix, iy, iz = (base[:, 0] + dx) % size, (base[:, 1] + dy) % size, (base[:, 2] + dz) % size
                    wgt = (
                        (f[:, 0] if dx else 1 - f[:, 0])
                        * (f[:, 1] if dy else 1 - f[:, 1])
                        * (f[:, 2] if dz else 1 - f[:, 2])
                    )
                    acc += wgt[:, None] * tables[o][:, ix, iy, iz].T
        out += weight * acc
    return out / sum(weights)


def _box_hit(o, d, lo, hi, inside=False):
    """Slab test: (t, normal axis) of rays o + t·d (N, 3) against an axis-aligned box; inf where missed."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (lo - o) / d
        t2 = (hi - o) / d
    tmin, tmax = np.minimum(t1, t2), np.maximum(t1, t2)
    if inside:
        t = np.min(tmax, axis=1)
        axis = np.argmin(tmax, axis=1)
        return t, axis
    t_enter, t_exit = np.max(tmin, axis=1), np.min(tmax, axis=1)
    hit = (t_enter < t_exit) & (t_enter > 1e-6)
    return np.where(hit, t_enter, np.inf), np.argmax(tmin, axis=1)


def render_video(
    *,
    num_frames: int = 24,
    height: int = 180,
    width: int = 240,
    object_speed: float = 0.06,
    object_size: float = 1.0,
    camera_step: float = 0.06,
    seed: int = 0,
) -> SyntheticVideo:
    """Renders a clip: the camera slides sideways (``camera_step`` world units per frame, ~1.2 % of the room
    width) while turning slightly towards the back wall; the box moves ``object_speed`` units per frame along
    a direction across the camera's epipolar lines (0 = a static scene). The box's half-size is
    ``object_size``/2 (1.0 ≈ 4 % of the frame's pixels)."""
    rng = np.random.default_rng(seed)
    tables = _noise_tables(rng, 4)
    obj_tables = _noise_tables(rng, 4)
    freqs, weights = (1.3, 2.9, 6.1, 12.7), (0.45, 0.3, 0.18, 0.07)
    room_lo, room_hi = np.array([-5.0, -3.0, -3.0]), np.array([5.0, 2.0, 8.0])
    static_boxes = [
        (np.array([-3.2, 0.6, 3.5]), np.array([-1.8, 2.0, 4.8])),
        (np.array([2.0, -0.4, 4.5]), np.array([3.4, 2.0, 5.6])),
        (np.array([-0.8, 1.2, 6.0]), np.array([0.8, 2.0, 7.0])),
    ]
    half = object_size / 2
    obj_centre = np.array([-0.5, 2.0 - half - 1.0, 4.0])
    direction = np.array([0.5, -0.6, 0.6]) / np.linalg.norm([0.5, -0.6, 0.6])
    f = 0.9 * width
    k = np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1.0]])
    ys, xs = np.mgrid[0:height, 0:width]
    pix = np.stack([xs + 0.5, ys + 0.5, np.ones_like(xs, dtype=float)], -1).reshape(-1, 3)
    rays_cam = pix @ np.linalg.inv(k).T  # z = 1: t is the z-depth
    frames, depths, masks, c2ws, offsets = [], [], [], [], []
    mid = (num_frames - 1) / 2
    for i in range(num_frames):
        s = i - mid
        centre = np.array([s * camera_step, -0.3 + 0.01 * s, -1.0 + 0.02 * s])
        yaw = np.deg2rad(-0.25 * s)
        pitch = np.deg2rad(4.0)
        ry = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
        rx = np.array([[1, 0, 0], [0, np.cos(pitch), -np.sin(pitch)], [0, np.sin(pitch), np.cos(pitch)]])
        rot = ry @ rx
        c2w = np.eye(4)
        c2w[:3, :3], c2w[:3, 3] = rot, centre
        offset = direction * object_speed * s
        d = rays_cam @ rot.T
        o = np.broadcast_to(centre, d.shape)
        t_best, axis_best = _box_hit(o, d, room_lo, room_hi, inside=True)
        label = np.zeros(len(d), np.int64)  # 0 room, 1 moving box, 2+ static boxes
        for b, (lo, hi) in enumerate(static_boxes):
            t, axis = _box_hit(o, d, lo, hi)
            closer = t < t_best
            t_best, axis_best, label = (np.where(closer, t, t_best), np.where(closer, axis, axis_best),
                                        np.where(closer, 2 + b, label))
        lo, hi = obj_centre + offset - half, obj_centre + offset + half
        t, axis = _box_hit(o, d, lo, hi)
        closer = t < t_best
        t_best, axis_best = np.where(closer, t, t_best), np.where(closer, axis, axis_best)
        label = np.where(closer, 1, label)
        p = o + t_best[:, None] * d
        colour = np.empty((len(d), 3), np.float32)
        on_obj = label == 1
        colour[~on_obj] = _value_noise(p[~on_obj], tables, freqs, weights)
        colour[on_obj] = _value_noise((p[on_obj] - offset) * 1.3 + 7.0, obj_tables, freqs, weights)
        shade = np.array([0.75, 1.0, 0.88], np.float32)[axis_best]
        img = np.clip((colour - 0.5) * 2.6 + 0.5, 0, 1) * shade[:, None]
        frames.append((img.reshape(height, width, 3) * 255 + 0.5).astype(np.uint8))
        depths.append(t_best.reshape(height, width).astype(np.float32))
        masks.append(on_obj.reshape(height, width).astype(np.uint8))
        c2ws.append(c2w)
        offsets.append(offset)
    return SyntheticVideo(
        np.stack(frames), np.stack(depths), np.stack(masks), np.stack(c2ws), k, np.stack(offsets)
    )


def trajectory_errors(c2w_est: np.ndarray, c2w_gt: np.ndarray) -> tuple[float, float]:
    """(ATE RMSE / trajectory extent after a Umeyama similarity alignment of the camera centres, mean relative
    rotation error in degrees between consecutive frames (alignment-free)), for (F, 4, 4) OpenCV c2w."""
    src, tgt = c2w_est[:, :3, 3], c2w_gt[:, :3, 3]
    mu_s, mu_t = src.mean(0), tgt.mean(0)
    xs, xt = src - mu_s, tgt - mu_t
    u, s, vt = np.linalg.svd(xt.T @ xs / len(src))
    d = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    rot = u @ d @ vt
    scale = np.trace(np.diag(s) @ d) / np.mean(np.sum(xs**2, 1))
    aligned = scale * xs @ rot.T + mu_t
    extent = np.max(np.linalg.norm(tgt[:, None] - tgt[None], axis=-1))
    ate = float(np.sqrt(np.mean(np.sum((aligned - tgt) ** 2, 1))) / extent)
    errs = []
    for i in range(len(c2w_gt) - 1):
        rel_e = c2w_est[i, :3, :3].T @ c2w_est[i + 1, :3, :3]
        rel_g = c2w_gt[i, :3, :3].T @ c2w_gt[i + 1, :3, :3]
        cos = np.clip((np.trace(rel_e.T @ rel_g) - 1) / 2, -1, 1)
        errs.append(np.degrees(np.arccos(cos)))
    return ate, float(np.mean(errs))
