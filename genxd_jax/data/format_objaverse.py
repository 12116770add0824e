"""Rendered Objaverse objects (3D) and animated Objaverse objects (4D).

Two published render layouts are supported; ``read_scene``'s path is the object folder (or the json file):

* **Zero123 style** (``objaverse-rendering/scripts/blender_script.py``, used by Zero-1-to-3 and GenXD's
  12-view renders): ``<obj>/000.png, 000.npy, 001.png, 001.npy, …``: RGBA renders and a (3, 4)
  **world-to-camera**
  matrix
  ``[R|T]`` per view, in Blender camera axes (x right, y up, looking along −z). Intrinsics are not stored; the
  script's camera is a 35 mm lens on a 32 mm sensor, so fx = fy = 35/32 = 1.09375 (normalised), cx = cy = 0.5.
  An optional ``<obj>/meta.json`` may override ``focal`` (normalised) and give ``motion_strength``.
* **NeRF / Blender** ``transforms.json`` (or ``transforms_train.json``): ``camera_angle_x`` (radians,
  horizontal field of view) or ``fl_x``/``fl_y``/``cx``/``cy``/``w``/``h`` in pixels; ``frames[i].file_path``
  (relative to the json, extension optional, ``.png`` assumed) and ``frames[i].transform_matrix``: a 4×4
  **camera-to-world** matrix in OpenGL axes. Animated renders follow D-NeRF and give each frame a ``time`` in
  [0, 1].

Conversions: OpenGL c2w → OpenCV c2w by right-multiplying diag(1, −1, −1, 1). RGBA is composited on white when
decoded. ``objaverse`` scenes are static (indicator 0) and on a closed orbit; ``objaverse_anim`` scenes are 4D
(indicator 2), their frames in time order (by ``time``, else by file name / file order).
"""

from __future__ import annotations

import glob
import json
import math
import os

import numpy as np

from genxd_jax.data.cameras import invert_poses, opengl_to_opencv_c2w
from genxd_jax.data.errors import BadSceneError
from genxd_jax.data.images import image_size
from genxd_jax.data.scene import INDICATOR_3D, INDICATOR_4D, Scene

ZERO123_FOCAL = 35.0 / 32.0
_TRANSFORMS = ("transforms.json", "transforms_train.json")


def _read_json(path: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except OSError as err:
        raise BadSceneError("bad_layout", f"cannot read {path}: {err}") from err
    except ValueError as err:
        raise BadSceneError("bad_layout", f"malformed json {path}: {err}") from err


def _read_zero123(folder: str) -> tuple[list[str], np.ndarray, np.ndarray, dict]:
    meta_path = os.path.join(folder, "meta.json")
    meta = _read_json(meta_path) if os.path.isfile(meta_path) else {}
    poses = sorted(glob.glob(os.path.join(folder, "[0-9]*.npy")))
    if not poses:
        raise BadSceneError("bad_layout", f"{folder}: no NNN.npy camera files and no transforms.json")
    frames, w2c = [], []
    for pose_path in poses:
        image = os.path.splitext(pose_path)[0] + ".png"
        if not os.path.isfile(image):
            raise BadSceneError(
                "missing_frame", f"{folder}: camera {os.path.basename(pose_path)} has no image"
            )
        try:
            mat = np.load(pose_path)
        except (OSError, ValueError) as err:
            raise BadSceneError("bad_layout", f"unreadable camera file {pose_path}: {err}") from err
        if mat.shape not in ((3, 4), (4, 4)):
            raise BadSceneError("bad_layout", f"{pose_path}: expected a 3×4 matrix, got {mat.shape}")
        frames.append(image)
        w2c.append(np.asarray(mat[:3], dtype=np.float64))
    c2w = opengl_to_opencv_c2w(invert_poses(np.stack(w2c)))
    focal = float(meta.get("focal", ZERO123_FOCAL))
    k = np.tile(np.array([[focal, 0.0, 0.5], [0.0, focal, 0.5], [0.0, 0.0, 1.0]]), (len(frames), 1, 1))
    return frames, c2w, k, meta


def _frame_file(base: str, file_path: str) -> str:
    path = os.path.normpath(os.path.join(base, file_path))
    if os.path.splitext(path)[1] == "":
        path += ".png"
    return path


def _read_transforms(json_path: str, *, by_time: bool) -> tuple[list[str], np.ndarray, np.ndarray, dict]:
    meta = _read_json(json_path)
    base = os.path.dirname(json_path)
    entries = meta.get("frames")
    if not entries:
        raise BadSceneError("too_few_frames", f"{json_path}: no frames")
    if by_time and all("time" in e for e in entries):
        entries = sorted(entries, key=lambda e: float(e["time"]))
    try:
        frames = [_frame_file(base, e["file_path"]) for e in entries]
        c2w_gl = np.array([e["transform_matrix"] for e in entries], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as err:
        raise BadSceneError("bad_layout", f"{json_path}: malformed frame entry: {err}") from err
    if c2w_gl.shape[1:] != (4, 4):
        raise BadSceneError(
            "bad_layout", f"{json_path}: transform_matrix must be 4×4, got {c2w_gl.shape[1:]}"
        )
    for frame in frames:
        if not os.path.isfile(frame):
            raise BadSceneError("missing_frame", f"{json_path}: missing image {frame}")
    if "w" in meta and "h" in meta:
        height, width = float(meta["h"]), float(meta["w"])
    else:
        height, width = image_size(frames[0])
    if "fl_x" in meta:
        fx = float(meta["fl_x"]) / width
        fy = float(meta.get("fl_y", meta["fl_x"])) / height
    elif "camera_angle_x" in meta:
        fx = 0.5 / math.tan(0.5 * float(meta["camera_angle_x"]))
        if "camera_angle_y" in meta:
            fy = 0.5 / math.tan(0.5 * float(meta["camera_angle_y"]))
        else:
            fy = fx * width / height
    else:
        raise BadSceneError("bad_layout", f"{json_path}: neither camera_angle_x nor fl_x")
    cx = float(meta["cx"]) / width if "cx" in meta else 0.5
    cy = float(meta["cy"]) / height if "cy" in meta else 0.5
    k = np.tile(np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]]), (len(frames), 1, 1))
    return frames, opengl_to_opencv_c2w(c2w_gl), k, meta


def _read_objaverse(path: str, *, animated: bool) -> Scene:
    path = os.path.normpath(path)
    if path.endswith(".json"):
        json_path, folder = path, os.path.dirname(path)
    else:
        folder = path
        json_path = next(
            (os.path.join(path, n) for n in _TRANSFORMS if os.path.isfile(os.path.join(path, n))), None
        )
    if json_path is not None:
        frames, c2w, k, meta = _read_transforms(json_path, by_time=animated)
    else:
        frames, c2w, k, meta = _read_zero123(folder)
    motion = meta.get("motion_strength")
    return Scene(
        name=os.path.basename(folder),
        c2w=c2w,
        intrinsics=k,
        frames=frames,
        indicator=INDICATOR_4D if animated else INDICATOR_3D,
        motion_strength=(None if motion is None else float(motion)) if animated else 0.0,
        closed_orbit=not animated,
    )


def read_objaverse(path: str) -> Scene:
    return _read_objaverse(path, animated=False)


def read_objaverse_anim(path: str) -> Scene:
    return _read_objaverse(path, animated=True)
