"""``read_scene(fmt, path)``: one entry point for every supported scene layout, and scene discovery.

========================  ==========================================================  ==========
fmt                       path                                                         indicator
========================  ==========================================================  ==========
``camvid30k``             clip folder: ``images/*.jpg`` + ``0/{cameras,images}.bin``   2 (4D)
``mvimgnet``              object folder: ``images/*.jpg`` + ``sparse/0/*.bin``         0 (3D)
``co3d``                  sequence folder ``<root>/<category>/<sequence>``             0 (3D)
``re10k`` / ``acid``      the sequence's ``.txt`` (frames in the sibling ``<stem>/``)  0 (3D)
``objaverse``             render folder (Zero123 ``NNN.png/NNN.npy`` or transforms.json)  0 (3D)
``objaverse_anim``        the same with a time axis                                     2 (4D)
``synthetic``             ``"<3d|4d>/<seed>/<index>"`` (procedural, no files)           0 / 2
========================  ==========================================================  ==========

Each returns a validated :class:`~genxd_jax.data.scene.Scene` or raises
:class:`~genxd_jax.data.errors.BadSceneError` with a counted reason.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable

from genxd_jax.data.errors import BadSceneError
from genxd_jax.data.format_co3d import read_co3d
from genxd_jax.data.format_colmap import read_camvid30k, read_mvimgnet
from genxd_jax.data.format_objaverse import read_objaverse, read_objaverse_anim
from genxd_jax.data.format_re10k import read_re10k
from genxd_jax.data.scene import Scene, validate_scene
from genxd_jax.data.synthetic import read_synthetic

READERS: dict[str, Callable[..., Scene]] = {
    "camvid30k": read_camvid30k,
    "mvimgnet": read_mvimgnet,
    "co3d": read_co3d,
    "re10k": read_re10k,
    "acid": read_re10k,
    "objaverse": read_objaverse,
    "objaverse_anim": read_objaverse_anim,
    "synthetic": read_synthetic,
}


def read_scene(fmt: str, path: str, **options) -> Scene:
    """Reads one scene of format ``fmt`` at ``path`` (see the module table).

    Args:
        fmt: one of :data:`READERS`.
        path: the scene's path (or synthetic spec).
        **options: format options; ``synthetic`` takes ``size`` (pixels, default 64) and ``num_frames``.

    Returns:
        A validated Scene: c2w (N, 4, 4) float64 OpenCV, intrinsics (N, 3, 3) normalised, N frames in order.

    Raises:
        BadSceneError: unusable scene, with a reason from :data:`genxd_jax.data.errors.REASONS`.
        ValueError: unknown format.
    """
    if fmt not in READERS:
        raise ValueError(f"unknown scene format {fmt!r}; expected one of {sorted(READERS)}")
    path = os.fspath(path)
    if fmt != "synthetic" and not os.path.exists(path):
        raise BadSceneError("bad_layout", f"{fmt} scene path {path} does not exist")
    try:
        scene = READERS[fmt](path, **options)
    except BadSceneError as err:
        raise BadSceneError(err.reason, f"{fmt} {path}: {err}") from err
    validate_scene(scene)
    return scene


def _dirs_with(root: str, pattern: str) -> list[str]:
    return sorted(
        {
            os.path.dirname(os.path.dirname(p)) if p.endswith(".bin") else os.path.dirname(p)
            for p in glob.glob(os.path.join(root, pattern), recursive=True)
        }
    )


def discover_scenes(fmt: str, root: str) -> list[str]:
    """Lists the scene paths of a dataset root in its published layout, sorted (deterministic).

    camvid30k: every folder with ``0/cameras.bin``; mvimgnet: every folder with ``sparse/0/cameras.bin``;
    co3d: every sequence folder of every category with a ``frame_annotations.jgz``; re10k/acid: every
    ``*.txt`` (recursively); objaverse(_anim): every folder with ``transforms*.json`` or ``000.npy``.
    """
    if fmt not in READERS or fmt == "synthetic":
        raise ValueError(f"cannot discover scenes of format {fmt!r}")
    if not os.path.isdir(root):
        raise FileNotFoundError(f"{fmt} dataset root {root} does not exist")
    if fmt == "camvid30k":
        return sorted(
            os.path.dirname(os.path.dirname(p))
            for p in glob.glob(os.path.join(root, "**", "0", "cameras.bin"), recursive=True)
        )
    if fmt == "mvimgnet":
        return sorted(
            os.path.dirname(os.path.dirname(os.path.dirname(p)))
            for p in glob.glob(os.path.join(root, "**", "sparse", "0", "cameras.bin"), recursive=True)
        )
    if fmt == "co3d":
        out = []
        for ann in sorted(glob.glob(os.path.join(root, "**", "frame_annotations.jgz"), recursive=True)):
            category = os.path.dirname(ann)
            out += [
                os.path.join(category, d)
                for d in sorted(os.listdir(category))
                if os.path.isdir(os.path.join(category, d, "images"))
            ]
        return out
    if fmt in ("re10k", "acid"):
        return sorted(glob.glob(os.path.join(root, "**", "*.txt"), recursive=True))
    found = set()
    for pattern in ("transforms.json", "transforms_train.json", "000.npy"):
        found.update(os.path.dirname(p) for p in glob.glob(os.path.join(root, "**", pattern), recursive=True))
    return sorted(found)


__all__ = ["READERS", "BadSceneError", "discover_scenes", "read_scene"]
