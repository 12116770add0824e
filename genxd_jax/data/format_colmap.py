"""CamVid-30K clips and MVImgNet objects: images plus a COLMAP sparse model.

* CamVid-30K (paper §3, HF dataset card): ``<clip>/images/*.jpg`` and
  ``<clip>/0/{cameras,images,points3D}.bin``.
  A 4D scene (indicator 2). Frames are the registered images in name order (= temporal order). An optional
  ``<clip>/meta.json`` with a ``"motion_strength"`` number supplies the motion label (else the proxy is used).
* MVImgNet: ``<category>/<object>/images/*.jpg`` and ``<category>/<object>/sparse/0/*.bin``. A 3D scene
  (indicator 0), frames in name order (= capture order of the orbit video).

Registered images whose file is missing raise ``missing_frame``; images COLMAP did not register have no pose
and are not frames of the scene.
"""

from __future__ import annotations

import json
import os

from genxd_jax.data.colmap import find_model_dir, read_colmap_model
from genxd_jax.data.errors import BadSceneError
from genxd_jax.data.scene import INDICATOR_3D, INDICATOR_4D, Scene


def _read_meta_motion(folder: str) -> float | None:
    path = os.path.join(folder, "meta.json")
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            value = json.load(f).get("motion_strength")
    except (OSError, ValueError) as err:
        raise BadSceneError("bad_layout", f"unreadable {path}: {err}") from err
    return None if value is None else float(value)


def read_colmap_scene(path: str, *, indicator: int) -> Scene:
    """Reads a folder with ``images/`` and a COLMAP model (see module docstring)."""
    path = os.path.normpath(path)
    names, c2w, intrinsics = read_colmap_model(find_model_dir(path))
    frames = [os.path.join(path, "images", name) for name in names]
    for frame in frames:
        if not os.path.isfile(frame):
            raise BadSceneError("missing_frame", f"registered image {frame} is missing")
    return Scene(
        name=os.path.basename(path),
        c2w=c2w,
        intrinsics=intrinsics,
        frames=frames,
        indicator=indicator,
        motion_strength=_read_meta_motion(path) if indicator == INDICATOR_4D else 0.0,
    )


def read_camvid30k(path: str) -> Scene:
    return read_colmap_scene(path, indicator=INDICATOR_4D)


def read_mvimgnet(path: str) -> Scene:
    return read_colmap_scene(path, indicator=INDICATOR_3D)
