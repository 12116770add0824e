"""CO3Dv2 sequences.

Layout (facebookresearch/co3d): ``<root>/<category>/frame_annotations.jgz`` (gzipped JSON list of frame
annotations for the whole category) and ``<root>/<category>/<sequence>/images/frame%06d.jpg``.
``read_scene``'s
path is the sequence folder. Each annotation holds::

    {"sequence_name", "frame_number", "frame_timestamp",
     "image": {"path": "<category>/<sequence>/images/frame000001.jpg", "size": [H, W]},
     "viewpoint": {"R": 3×3, "T": [3], "focal_length": [fx, fy], "principal_point": [px, py],
                   "intrinsics_format": "ndc_isotropic" | "ndc_norm_image_bounds"}}

Cameras use PyTorch3D conventions: row-vector ``X_cam = X_world @ R + T`` and camera axes +x left, +y up, +z
forward; focal length and principal point are in NDC units. Conversions (as in PyTorch3D's
``opencv_from_cameras_projection`` and CO3D's ``_get_pytorch3d_camera``):

* pixels: ``rescale = (W/2, H/2)`` for ``ndc_norm_image_bounds``, ``min(W, H)/2`` for ``ndc_isotropic``;
  ``f_px = f_ndc · rescale``; ``c_px = (W/2, H/2) − p_ndc · rescale``.
* OpenCV w2c: ``R_cv = (R · diag(−1, −1, 1))ᵀ``, ``t_cv = diag(−1, −1, 1) · T``.

CO3D is object-centric 3D data (indicator 0); frames are sorted by ``frame_number``.
"""

from __future__ import annotations

import gzip
import json
import os
from collections import OrderedDict

import numpy as np

from genxd_jax.data.cameras import normalised_intrinsics, rt_to_matrix
from genxd_jax.data.errors import BadSceneError
from genxd_jax.data.scene import INDICATOR_3D, Scene

_FLIP_XY = np.diag([-1.0, -1.0, 1.0])
_CACHE: OrderedDict[str, dict[str, list[dict]]] = OrderedDict()
_CACHE_SIZE = 2  # category annotation files are large; keep the last two parsed


def load_category_annotations(path: str) -> dict[str, list[dict]]:
    """Parses a category's ``frame_annotations.jgz`` → {sequence_name: [frame annotation, ...]} (cached)."""
    if path in _CACHE:
        _CACHE.move_to_end(path)
        return _CACHE[path]
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            frames = json.load(f)
    except FileNotFoundError as err:
        raise BadSceneError("bad_layout", f"missing CO3D annotation file {path}") from err
    except (OSError, ValueError, EOFError) as err:
        raise BadSceneError("bad_layout", f"unreadable CO3D annotation file {path}: {err}") from err
    by_seq: dict[str, list[dict]] = {}
    for frame in frames:
        by_seq.setdefault(frame["sequence_name"], []).append(frame)
    _CACHE[path] = by_seq
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return by_seq


def co3d_camera_to_opencv(viewpoint: dict, size_hw) -> tuple[np.ndarray, np.ndarray]:
    """One CO3D viewpoint → (c2w (4, 4) OpenCV, intrinsics (3, 3) normalised)."""
    h, w = float(size_hw[0]), float(size_hw[1])
    fmt = viewpoint.get("intrinsics_format", "ndc_norm_image_bounds").lower()
    half = np.array([w / 2.0, h / 2.0])
    if fmt == "ndc_norm_image_bounds":
        rescale = half
    elif fmt == "ndc_isotropic":
        rescale = np.array([min(half), min(half)])
    else:
        raise BadSceneError("bad_layout", f"unknown CO3D intrinsics_format {fmt!r}")
    focal = np.asarray(viewpoint["focal_length"], dtype=np.float64) * rescale
    principal = half - np.asarray(viewpoint["principal_point"], dtype=np.float64) * rescale
    rot = np.asarray(viewpoint["R"], dtype=np.float64)
    trans = np.asarray(viewpoint["T"], dtype=np.float64)
    if not (np.all(np.isfinite(rot)) and np.all(np.isfinite(trans))):
        raise BadSceneError("nonfinite_pose", "non-finite CO3D viewpoint")
    r_cv = (rot @ _FLIP_XY).T
    t_cv = _FLIP_XY @ trans
    c2w = rt_to_matrix(r_cv.T, -r_cv.T @ t_cv)
    return c2w, normalised_intrinsics(focal[0], focal[1], principal[0], principal[1], w, h)


def read_co3d(path: str) -> Scene:
    """Reads one CO3Dv2 sequence; ``path`` is ``<root>/<category>/<sequence>``."""
    seq_dir = os.path.normpath(path)
    category_dir = os.path.dirname(seq_dir)
    root = os.path.dirname(category_dir)
    seq = os.path.basename(seq_dir)
    frames = load_category_annotations(os.path.join(category_dir, "frame_annotations.jgz")).get(seq)
    if not frames:
        raise BadSceneError(
            "bad_layout", f"sequence {seq} has no frames in {category_dir}/frame_annotations.jgz"
        )
    frames = sorted(frames, key=lambda fr: fr["frame_number"])
    c2w, intr, paths = [], [], []
    for fr in frames:
        try:
            pose, k = co3d_camera_to_opencv(fr["viewpoint"], fr["image"]["size"])
        except (KeyError, TypeError, ValueError) as err:
            if isinstance(err, BadSceneError):
                raise
            raise BadSceneError(
                "bad_layout", f"{seq}: malformed annotation of frame {fr.get('frame_number')}"
            ) from err
        image_path = os.path.join(root, fr["image"]["path"])
        if not os.path.isfile(image_path):
            raise BadSceneError("missing_frame", f"{seq}: missing image {image_path}")
        c2w.append(pose)
        intr.append(k)
        paths.append(image_path)
    return Scene(
        name=f"{os.path.basename(category_dir)}/{seq}",
        c2w=np.stack(c2w),
        intrinsics=np.stack(intr),
        frames=paths,
        indicator=INDICATOR_3D,
        motion_strength=0.0,
    )
