"""RealEstate10K and ACID camera files.

Layout (the published ``RealEstate10K/{train,test}/<sequence>.txt``, frames extracted next to it): path is the
``.txt``; its first line is the YouTube URL, then one line per frame with 19 numbers::

    timestamp fx fy cx cy 0 0 r00 r01 r02 t0 r10 r11 r12 t1 r20 r21 r22 t2

``fx fy cx cy`` are normalised by the image size, and the 3×4 matrix is **world-to-camera** in OpenCV axes.
Frames live in the sibling folder named after the file's stem, one image per timestamp:
``<dir>/<stem>/<timestamp>.{jpg,png,jpeg}``. Both datasets are static 3D scenes (indicator 0).
"""

from __future__ import annotations

import os

import numpy as np

from genxd_jax.data.cameras import invert_poses
from genxd_jax.data.errors import BadSceneError
from genxd_jax.data.scene import INDICATOR_3D, Scene

_EXTENSIONS = (".jpg", ".png", ".jpeg", ".JPG", ".PNG")


def parse_re10k_txt(path: str) -> tuple[str, np.ndarray, np.ndarray, np.ndarray]:
    """Returns (url, timestamps (N,) int64, intrinsics (N, 4) fx fy cx cy normalised, w2c (N, 3, 4))."""
    try:
        with open(path) as f:
            lines = [line.strip() for line in f if line.strip()]
    except OSError as err:
        raise BadSceneError("bad_layout", f"cannot read {path}: {err}") from err
    if len(lines) < 2:
        raise BadSceneError("too_few_frames", f"{path}: no camera lines")
    rows = []
    for i, line in enumerate(lines[1:], start=2):
        parts = line.split()
        if len(parts) != 19:
            raise BadSceneError("bad_layout", f"{path}:{i}: expected 19 numbers, got {len(parts)}")
        try:
            rows.append([float(p) for p in parts])
        except ValueError as err:
            raise BadSceneError("bad_layout", f"{path}:{i}: {err}") from err
    table = np.array(rows, dtype=np.float64)
    timestamps = np.array([int(line.split()[0]) for line in lines[1:]], dtype=np.int64)
    return lines[0], timestamps, table[:, 1:5], table[:, 7:19].reshape(-1, 3, 4)


def _frame_path(folder: str, timestamp: int) -> str:
    for ext in _EXTENSIONS:
        cand = os.path.join(folder, f"{timestamp}{ext}")
        if os.path.isfile(cand):
            return cand
    raise BadSceneError("missing_frame", f"no image for timestamp {timestamp} in {folder}")


def read_re10k(path: str) -> Scene:
    """Reads one RealEstate10K / ACID sequence (see module docstring)."""
    _, timestamps, intr, w2c = parse_re10k_txt(path)
    folder = os.path.splitext(path)[0]
    if not os.path.isdir(folder):
        raise BadSceneError("missing_frame", f"frame folder {folder} of {path} does not exist")
    frames = [_frame_path(folder, int(t)) for t in timestamps]
    k = np.zeros((len(timestamps), 3, 3))
    k[:, 0, 0], k[:, 1, 1], k[:, 0, 2], k[:, 1, 2], k[:, 2, 2] = (
        intr[:, 0],
        intr[:, 1],
        intr[:, 2],
        intr[:, 3],
        1.0,
    )
    return Scene(
        name=os.path.basename(folder),
        c2w=invert_poses(w2c),
        intrinsics=k,
        frames=frames,
        indicator=INDICATOR_3D,
        motion_strength=0.0,
    )
