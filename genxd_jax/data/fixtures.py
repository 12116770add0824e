"""Writers of tiny datasets in each published layout, from the formats' documentation (for tests and
benchmarks).

Every writer takes ground-truth cameras, OpenCV c2w (N, 4, 4) and normalised intrinsics (N, 3, 3), converts
them to the format's own convention and writes the files, so reading them back through ``read_scene`` must
return the ground truth. Images are small PIL-encoded JPEG/PNG files.
"""

from __future__ import annotations

import gzip
import json
import os

import numpy as np
from PIL import Image

from genxd_jax.data import colmap
from genxd_jax.data.cameras import OPENGL_TO_OPENCV
from genxd_jax.data.colmap import CAMERA_MODELS

_FLIP_XY = np.diag([-1.0, -1.0, 1.0])


def _inv(mat: np.ndarray) -> np.ndarray:
    """Inverse of a pose; deliberately broken poses (for bad-input tests) stay broken instead of raising."""
    if not np.all(np.isfinite(mat)):
        return np.full((4, 4), np.nan)
    if abs(np.linalg.det(mat[:3, :3])) < 1e-12:
        out = np.eye(4)
        out[:3, :3] = mat[:3, :3].T
        return out
    return np.linalg.inv(mat)


def random_cameras(rng: np.random.Generator, n: int, *, focal=(0.8, 1.4)) -> tuple[np.ndarray, np.ndarray]:
    """n random OpenCV c2w (N, 4, 4) and normalised intrinsics (N, 3, 3) (off-centre principal points)."""
    c2w = np.tile(np.eye(4), (n, 1, 1))
    for i in range(n):
        q, r = np.linalg.qr(rng.normal(size=(3, 3)))
        q = q * np.sign(np.diag(r))
        if np.linalg.det(q) < 0:
            q[:, 0] = -q[:, 0]
        c2w[i, :3, :3] = q
        c2w[i, :3, 3] = rng.normal(size=3) * 2.0
    k = np.tile(np.eye(3), (n, 1, 1))
    k[:, 0, 0] = rng.uniform(*focal, n)
    k[:, 1, 1] = k[:, 0, 0] * rng.uniform(0.9, 1.1, n)
    k[:, 0, 2] = rng.uniform(0.4, 0.6, n)
    k[:, 1, 2] = rng.uniform(0.4, 0.6, n)
    return c2w, k


def write_image(
    path: str, rng: np.random.Generator, height: int, width: int, *, rgba: bool = False
) -> np.ndarray:
    """Writes a random smooth image (format from the extension) and returns its pixels."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    small = rng.integers(0, 256, size=(4, 4, 4 if rgba else 3), dtype=np.uint8)
    img = Image.fromarray(small, "RGBA" if rgba else "RGB").resize((width, height), Image.BILINEAR)
    img.save(path, quality=95) if path.lower().endswith((".jpg", ".jpeg")) else img.save(path)
    return np.asarray(img)


def write_colmap_model(
    model_dir: str,
    names: list[str],
    c2w: np.ndarray,
    intrinsics: np.ndarray,
    width: int,
    height: int,
    *,
    model: str = "PINHOLE",
    order=None,
) -> None:
    """COLMAP binary ``cameras.bin``/``images.bin``/``points3D.bin`` through pycolmap (one camera per image; no
    points).

    ``order`` permutes the image ids (COLMAP does not number images in name order): image ``order[j]`` gets id
    ``j + 1``.
    """
    n_params = CAMERA_MODELS[next(mid for mid, (name, _, _) in CAMERA_MODELS.items() if name == model)][1]
    cameras = []
    for k in intrinsics:
        fx, fy, cx, cy = k[0, 0] * width, k[1, 1] * height, k[0, 2] * width, k[1, 2] * height
        if model in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL"):
            params = [fx, cx, cy] + [0.0] * (n_params - 3)
        else:
            params = [fx, fy, cx, cy] + [0.0] * (n_params - 4)
        cameras.append((model, width, height, params))
    image_ids = np.arange(1, len(names) + 1)
    if order is not None:
        image_ids[np.asarray(order)] = np.arange(1, len(names) + 1)
    w2c = np.stack([_inv(m) for m in c2w])
    colmap.write_colmap_model(model_dir, list(names), w2c, cameras, image_ids=image_ids)


def write_colmap_scene(
    folder: str,
    rng: np.random.Generator,
    c2w,
    intrinsics,
    *,
    height=24,
    width=32,
    model_subdir="0",
    model="PINHOLE",
    ext=".jpg",
) -> list[str]:
    """CamVid-30K (``model_subdir="0"``) or MVImgNet (``"sparse/0"``) clip; returns frame paths in name
    order."""
    names = [f"{i:05d}{ext}" for i in range(len(c2w))]
    paths = [os.path.join(folder, "images", name) for name in names]
    for p in paths:
        write_image(p, rng, height, width)
    order = rng.permutation(len(names))
    write_colmap_model(
        os.path.join(folder, model_subdir), names, c2w, intrinsics, width, height, model=model, order=order
    )
    return paths


def write_re10k(
    txt_path: str, rng: np.random.Generator, c2w, intrinsics, *, height=24, width=32, timestamps=None
) -> list[str]:
    """RealEstate10K/ACID ``<stem>.txt`` plus the ``<stem>/<timestamp>.jpg`` frames."""
    n = len(c2w)
    timestamps = timestamps if timestamps is not None else [1_000_000 + 33_366 * i for i in range(n)]
    folder = os.path.splitext(txt_path)[0]
    lines = ["https://www.youtube.com/watch?v=dummy"]
    paths = []
    for i in range(n):
        w2c = _inv(c2w[i])[:3]
        k = intrinsics[i]
        values = [k[0, 0], k[1, 1], k[0, 2], k[1, 2], 0.0, 0.0, *w2c.reshape(-1)]
        lines.append(f"{timestamps[i]} " + " ".join(repr(float(v)) for v in values))
        paths.append(os.path.join(folder, f"{timestamps[i]}.jpg"))
        write_image(paths[-1], rng, height, width)
    with open(txt_path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return paths


def co3d_viewpoint(
    c2w: np.ndarray, k: np.ndarray, height: int, width: int, fmt: str = "ndc_isotropic"
) -> dict:
    """OpenCV camera → CO3D/PyTorch3D viewpoint dict (R, T row-vector convention, NDC intrinsics)."""
    w2c = _inv(c2w)
    r_cv, t_cv = w2c[:3, :3], w2c[:3, 3]
    rot = r_cv.T @ _FLIP_XY
    trans = _FLIP_XY @ t_cv
    half = np.array([width / 2.0, height / 2.0])
    rescale = half if fmt == "ndc_norm_image_bounds" else np.full(2, half.min())
    f_px = np.array([k[0, 0] * width, k[1, 1] * height])
    c_px = np.array([k[0, 2] * width, k[1, 2] * height])
    return {
        "R": rot.tolist(),
        "T": trans.tolist(),
        "focal_length": (f_px / rescale).tolist(),
        "principal_point": ((half - c_px) / rescale).tolist(),
        "intrinsics_format": fmt,
    }


def write_co3d_category(
    category_dir: str,
    rng: np.random.Generator,
    sequences: dict[str, tuple],
    *,
    height=24,
    width=32,
    fmt="ndc_isotropic",
) -> dict[str, list[str]]:
    """A CO3Dv2 category: ``frame_annotations.jgz`` + ``<seq>/images/frame%06d.jpg``.

    ``sequences`` maps name → (c2w, intrinsics). Annotations are written shuffled (readers must sort).
    """
    root = os.path.dirname(category_dir)
    category = os.path.basename(category_dir)
    annotations, paths = [], {}
    for seq, (c2w, intr) in sequences.items():
        paths[seq] = []
        for i in range(len(c2w)):
            rel = f"{category}/{seq}/images/frame{i + 1:06d}.jpg"
            write_image(os.path.join(root, rel), rng, height, width)
            paths[seq].append(os.path.join(root, rel))
            annotations.append(
                {
                    "sequence_name": seq,
                    "frame_number": i + 1,
                    "frame_timestamp": i / 30.0,
                    "image": {"path": rel, "size": [height, width]},
                    "viewpoint": co3d_viewpoint(c2w[i], intr[i], height, width, fmt),
                }
            )
    order = rng.permutation(len(annotations))
    with gzip.open(os.path.join(category_dir, "frame_annotations.jgz"), "wt", encoding="utf-8") as f:
        json.dump([annotations[i] for i in order], f)
    return paths


def write_zero123(
    folder: str, rng: np.random.Generator, c2w, *, size=16, meta: dict | None = None
) -> list[str]:
    """Zero123-style render: ``NNN.png`` (RGBA) + ``NNN.npy`` (3×4 Blender world-to-camera)."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i in range(len(c2w)):
        w2c_gl = _inv(c2w[i] @ OPENGL_TO_OPENCV)
        np.save(os.path.join(folder, f"{i:03d}.npy"), w2c_gl[:3])
        paths.append(os.path.join(folder, f"{i:03d}.png"))
        write_image(paths[-1], rng, size, size, rgba=True)
    if meta is not None:
        with open(os.path.join(folder, "meta.json"), "w") as f:
            json.dump(meta, f)
    return paths


def write_transforms(
    folder: str, rng: np.random.Generator, c2w, fx_norm: float, *, size=16, times=None, name="transforms.json"
) -> list[str]:
    """NeRF/Blender ``transforms.json`` (OpenGL c2w, ``camera_angle_x``); D-NeRF ``time`` when ``times``
    given.

    Entries are written in the given order; file paths omit the extension like the NeRF synthetic scenes.
    """
    frames, paths = [], []
    for i in range(len(c2w)):
        rel = f"./r_{i}"
        paths.append(os.path.join(folder, f"r_{i}.png"))
        write_image(paths[-1], rng, size, size, rgba=True)
        entry = {"file_path": rel, "transform_matrix": (c2w[i] @ OPENGL_TO_OPENCV).tolist()}
        if times is not None:
            entry["time"] = float(times[i])
        frames.append(entry)
    with open(os.path.join(folder, name), "w") as f:
        json.dump({"camera_angle_x": 2 * np.arctan(0.5 / fx_norm), "frames": frames}, f)
    return paths
