"""Initial points for 3D-GS from posed views: triangulated SIFT tracks (pycolmap), else random in the frustum.

* :func:`triangulate_views` — pycolmap extracts SIFT features and matches all pairs with geometric
  verification (``extract_features``, ``match_exhaustive``); the verified inlier matches are chained into
  tracks (union-find over (view, keypoint)), and every track seen in ≥ 2 views is triangulated with the
  **known** poses by linear DLT (homogeneous least squares), then kept only if it lies in front of every
  observing camera, reprojects within ``max_reprojection_error`` pixels in all of them and has a
  triangulation angle ≥ ``min_angle_deg``. The point colour is the mean image colour at its observations.
  (We triangulate the tracks ourselves rather than through ``pycolmap.triangulate_points`` on a reconstruction
  built from the poses: it needs no COLMAP model and gives the same linear estimate for the fixed poses.)
* :func:`random_frustum_points` — uniform pixels and depths in randomly chosen views, kept only if they are
  inside the frustum of **every** view (in front, beyond ``near``, projecting inside the image); colour = the
  mean colour of the views at the point's projections.
* :func:`initial_points` — "auto": triangulate, and fall back to random points when fewer than
  ``min_triangulated`` points survive (or pycolmap fails); returns which method was used.

Cameras follow genxd_jax: OpenCV c2w (V, 4, 4), intrinsics normalised by the image size (3, 3) or (V, 3, 3);
pixel (i, j) has its centre at (i + 0.5, j + 0.5), as in COLMAP's keypoint coordinates. Images (V, H, W, 3)
in [0, 1]. Everything runs on the host (numpy); nothing here needs a GPU.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile

import numpy as np

from genxd_jax.geometry import broadcast_intrinsics, rigid_inverse, validate_c2w

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class InitPoints:
    """Initial points: ``points (M, 3)`` world, ``colors (M, 3)`` in [0, 1], ``method`` ("triangulated" or
    "random"), ``num_triangulated`` (how many triangulated points were found, also when falling back) and a
    human-readable ``note``."""

    points: np.ndarray
    colors: np.ndarray
    method: str
    num_triangulated: int
    note: str = ""


def _check_views(images, c2w, intrinsics):
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must have shape (V, H, W, 3), got {images.shape}")
    v, h, w, _ = images.shape
    c2w = validate_c2w(c2w, name="c2w")
    if c2w.shape != (v, 4, 4):
        raise ValueError(f"c2w must have shape ({v}, 4, 4) for {v} images, got {c2w.shape}")
    k = broadcast_intrinsics(intrinsics, v)
    return images, c2w, k, h, w


def _pixel_k(k_norm, h, w):
    k = np.array(k_norm, dtype=np.float64)
    k[..., 0, :] *= w
    k[..., 1, :] *= h
    return k


def project_world(points, c2w, k_norm, h, w):
    """Projects world points (M, 3) into each view: pixel coordinates (V, M, 2) and depths z (V, M)."""
    w2c = rigid_inverse(c2w)  # (V, 4, 4)
    cam = np.einsum("vij,mj->vmi", w2c[:, :3, :3], points) + w2c[:, None, :3, 3]
    kp = _pixel_k(k_norm, h, w)
    z = cam[..., 2]
    zs = np.where(np.abs(z) > 1e-12, z, 1e-12)
    u = kp[:, None, 0, 0] * cam[..., 0] / zs + kp[:, None, 0, 1] * cam[..., 1] / zs + kp[:, None, 0, 2]
    vv = kp[:, None, 1, 1] * cam[..., 1] / zs + kp[:, None, 1, 2]
    return np.stack([u, vv], -1), z


def _sample_colors(images, uv, valid):
    """Mean colour over views of nearest-pixel samples at uv (V, M, 2) where valid (V, M) -> (M, 3)."""
    v, h, w, _ = images.shape
    i = np.clip(np.floor(uv[..., 0]).astype(np.int64), 0, w - 1)
    j = np.clip(np.floor(uv[..., 1]).astype(np.int64), 0, h - 1)
    cols = images[np.arange(v)[:, None], j, i]  # (V, M, 3)
    wgt = valid.astype(np.float64)[..., None]
    total = np.sum(wgt, axis=0)
    mean = np.sum(cols * wgt, axis=0) / np.maximum(total, 1.0)
    return np.where(total > 0, mean, 0.5).astype(np.float32)


def auto_depth_range(c2w) -> tuple[float, float]:
    """(near, far) for random points: 0.2 (the reference near plane) and twice the largest distance from a
    camera to the point nearest all optical axes (least squares), or (0.2, 10) if that point is ill-posed
    (fewer than 2 views, parallel axes) or lies behind a camera."""
    c2w = np.asarray(c2w, dtype=np.float64)
    centres, axes = c2w[:, :3, 3], c2w[:, :3, 2]
    if len(c2w) >= 2:
        a = np.zeros((3, 3))
        b = np.zeros(3)
        for c, d in zip(centres, axes):
            p = np.eye(3) - np.outer(d, d)
            a += p
            b += p @ c
        if np.linalg.cond(a) < 1e6:
            x = np.linalg.solve(a, b)
            depth = np.einsum("vi,vi->v", x[None] - centres, axes)
            if np.all(depth > 0.2):
                return 0.2, 2.0 * float(np.max(np.linalg.norm(x[None] - centres, axis=-1)))
    return 0.2, 10.0


def random_frustum_points(
    images, c2w, intrinsics, num_points: int, *, seed: int = 0, near=None, far=None, max_rounds: int = 50
) -> tuple[np.ndarray, np.ndarray]:
    """``num_points`` random points inside the common frustum of all views, with colours.

    Candidates are uniform pixels of a randomly chosen view at a depth uniform in [near, far] (auto:
    :func:`auto_depth_range`); a candidate is kept if, in every view, its depth is ≥ near and it projects
    inside the image. Returns ``(points (M, 3) float32, colors (M, 3) float32)``. Raises ValueError naming
    the views when the frusta have (almost) nothing in common.
    """
    images, c2w, k, h, w = _check_views(images, c2w, intrinsics)
    if near is None or far is None:
        auto_near, auto_far = auto_depth_range(c2w)
        near = auto_near if near is None else near
        far = auto_far if far is None else far
    if not 0 < near < far:
        raise ValueError(f"random init: need 0 < near < far, got near={near}, far={far}")
    rng = np.random.default_rng(seed)
    v = len(c2w)
    kinv = np.linalg.inv(_pixel_k(k, h, w))
    kept = []
    count = 0
    batch = max(4 * num_points, 1024)
    for _ in range(max_rounds):
        view = rng.integers(0, v, size=batch)
        pix = np.stack([rng.uniform(0, w, batch), rng.uniform(0, h, batch), np.ones(batch)], -1)
        ray = np.einsum("bij,bj->bi", kinv[view], pix)  # camera coordinates with z = 1
        depth = rng.uniform(near, far, batch)
        cam = ray * depth[:, None]
        world = np.einsum("bij,bj->bi", c2w[view, :3, :3], cam) + c2w[view, :3, 3]
        uv, z = project_world(world, c2w, k, h, w)
        inside = (z >= near) & (uv[..., 0] >= 0) & (uv[..., 0] <= w) & (uv[..., 1] >= 0) & (uv[..., 1] <= h)
        ok = np.all(inside, axis=0)
        kept.append(world[ok])
        count += int(ok.sum())
        if count >= num_points:
            break
    pts = np.concatenate(kept, 0)[:num_points]
    if len(pts) < max(1, num_points // 10):
        raise ValueError(
            f"random init: the {v} views' frusta share almost no volume within depths [{near:.3g}, {far:.3g}] "
            f"({len(pts)} of {num_points} points found); pass init_points= explicitly"
        )
    uv, z = project_world(pts, c2w, k, h, w)
    return pts.astype(np.float32), _sample_colors(images, uv, z > 0)


class _UnionFind:
    def __init__(self):
        self.parent = {}

    def find(self, x):
        root = x
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while self.parent.get(x, x) != root:  # path compression
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a, b):
        self.parent.setdefault(a, a)
        self.parent.setdefault(b, b)
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra


def _sift_matches(images, workdir):
    """SIFT keypoints per view (list of (K_v, 2) pixel xy) and verified inlier matches {(a, b): (M, 2)}."""
    import cv2
    import pycolmap

    names = []
    img_dir = os.path.join(workdir, "images")
    os.makedirs(img_dir)
    for i, im in enumerate(images):
        name = f"view_{i:05d}.png"
        bgr = cv2.cvtColor((np.clip(im, 0, 1) * 255 + 0.5).astype(np.uint8), cv2.COLOR_RGB2BGR)
        if not cv2.imwrite(os.path.join(img_dir, name), bgr):
            raise OSError(f"could not write {name} to {img_dir}")
        names.append(name)
    db_path = os.path.join(workdir, "database.db")
    level = pycolmap.logging.minloglevel
    pycolmap.logging.minloglevel = max(level, 2)  # COLMAP's per-image INFO lines would flood the progress bar
    try:
        pycolmap.extract_features(db_path, img_dir, image_names=names, device=pycolmap.Device.cpu)
        pycolmap.match_exhaustive(db_path, device=pycolmap.Device.cpu)
    finally:
        pycolmap.logging.minloglevel = level
    db = pycolmap.Database.open(db_path)
    try:
        id_to_view = {im.image_id: names.index(im.name) for im in db.read_all_images()}
        keypoints = [None] * len(names)
        for image_id, view in id_to_view.items():
            keypoints[view] = np.asarray(db.read_keypoints(image_id))[:, :2].astype(np.float64)
        matches = {}
        ids = sorted(id_to_view)
        for ai, a in enumerate(ids):
            for b in ids[ai + 1 :]:
                if not db.exists_two_view_geometry(a, b):
                    continue
                m = np.asarray(db.read_two_view_geometry(a, b).inlier_matches)
                if m.size:
                    matches[(id_to_view[a], id_to_view[b])] = m.reshape(-1, 2)
    finally:
        db.close()
    return keypoints, matches


def triangulate_views(
    images,
    c2w,
    intrinsics,
    *,
    max_reprojection_error: float = 2.0,
    min_angle_deg: float = 1.0,
    workdir: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Triangulated points (M, 3) and colours (M, 3) from SIFT tracks with the known poses (module docstring).

    Needs pycolmap (and OpenCV to write the temporary PNGs). ``workdir``: where the COLMAP database and images
    go (default: a temporary directory, removed afterwards).
    """
    images, c2w, k, h, w = _check_views(images, c2w, intrinsics)
    if len(images) < 2:
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32)
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="genxd_triangulate_") as tmp:
            keypoints, matches = _sift_matches(images, tmp)
    else:
        keypoints, matches = _sift_matches(images, workdir)

    uf = _UnionFind()
    big = max(len(kp) for kp in keypoints) + 1
    for (a, b), m in matches.items():
        for ka, kb in m:
            uf.union(a * big + int(ka), b * big + int(kb))
    tracks = {}
    for node in list(uf.parent):
        tracks.setdefault(uf.find(node), []).append(node)

    kp_pix = _pixel_k(k, h, w)
    proj = np.einsum("vij,vjk->vik", kp_pix, rigid_inverse(c2w)[:, :3, :])  # (V, 3, 4)
    centres = c2w[:, :3, 3]
    pts, cols = [], []
    for nodes in tracks.values():
        all_views = np.array([n // big for n in nodes])
        all_xy = np.stack([keypoints[n // big][n % big] for n in nodes])
        views = np.unique(all_views)
        if len(views) < 2:
            continue
        # SIFT emits several keypoints (orientations) at one location; a track with two distinct locations
        # in one view is inconsistent and dropped.
        xy = np.stack([all_xy[all_views == vi].mean(0) for vi in views])
        spread = max(np.ptp(all_xy[all_views == vi], axis=0).max() for vi in views)
        if spread > 1.0:
            continue
        rows = []
        for vi, (x, y) in zip(views, xy):
            rows.append(x * proj[vi, 2] - proj[vi, 0])
            rows.append(y * proj[vi, 2] - proj[vi, 1])
        _, _, vt = np.linalg.svd(np.asarray(rows))
        hom = vt[-1]
        if abs(hom[3]) < 1e-12:
            continue
        x3 = hom[:3] / hom[3]
        uv, z = project_world(x3[None], c2w[views], k[views], h, w)
        if np.any(z[:, 0] <= 0.0):
            continue
        if np.max(np.linalg.norm(uv[:, 0] - xy, axis=-1)) > max_reprojection_error:
            continue
        rays = x3[None] - centres[views]
        rays /= np.linalg.norm(rays, axis=-1, keepdims=True)
        cosines = np.clip(rays @ rays.T, -1.0, 1.0)
        if np.degrees(np.arccos(np.min(cosines))) < min_angle_deg:
            continue
        ii = np.clip(np.floor(xy[:, 0]).astype(int), 0, w - 1)
        jj = np.clip(np.floor(xy[:, 1]).astype(int), 0, h - 1)
        pts.append(x3)
        cols.append(images[views, jj, ii].mean(0))
    if not pts:
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32)
    return np.asarray(pts, np.float32), np.asarray(cols, np.float32)


def initial_points(images, c2w, intrinsics, init_config, *, seed: int = 0) -> InitPoints:
    """Initial points by ``init_config.method`` ("auto", "triangulate" or "random"; see the module docstring).

    Reads ``method``, ``num_random``, ``min_triangulated``, ``max_reprojection_error`` and, for random points,
    ``near``/``far`` (None or 0: :func:`auto_depth_range`).
    """
    c = init_config
    method = str(c.method)
    if method not in ("auto", "triangulate", "random"):
        raise ValueError(f"config.init.method must be 'auto', 'triangulate' or 'random', got {method!r}")
    num_tri = 0
    note = ""
    if method in ("auto", "triangulate"):
        try:
            pts, cols = triangulate_views(
                images, c2w, intrinsics, max_reprojection_error=float(c.max_reprojection_error)
            )
            num_tri = len(pts)
        except (ImportError, RuntimeError, OSError) as err:  # pycolmap missing or failing: fall back
            if method == "triangulate":
                raise
            pts, num_tri, note = None, 0, f"triangulation failed ({err}); "
        if num_tri >= int(c.min_triangulated) or (method == "triangulate" and num_tri > 0):
            return InitPoints(pts, cols, "triangulated", num_tri, f"{num_tri} triangulated points")
        if method == "triangulate":
            raise ValueError("init: triangulation found no points (too little texture or overlap between views)")
        note += f"only {num_tri} triangulated points (< {int(c.min_triangulated)}); "
    near = float(c.near) if c.get("near") else None
    far = float(c.far) if c.get("far") else None
    pts, cols = random_frustum_points(images, c2w, intrinsics, int(c.num_random), seed=seed, near=near, far=far)
    note += f"{len(pts)} random points in the common frustum"
    log.info("init points: %s", note)
    return InitPoints(pts, cols, "random", num_tri, note)
