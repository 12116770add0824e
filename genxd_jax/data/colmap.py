"""COLMAP sparse models (``cameras.bin``, ``images.bin``, ``points3D.bin``) read and written through pycolmap.

Format (https://colmap.github.io/format.html#binary-file-format): poses are world-to-camera (``cam_from_world``)
in OpenCV camera axes; intrinsics are in pixels with the top-left pixel's centre at (0.5, 0.5). pycolmap 4.x
reads both the legacy three-file models (CamVid-30K, MVImgNet, COLMAP ≤ 3.11) and the current ones that add
``rigs.bin``/``frames.bin``; :func:`write_colmap_model` writes the legacy three files (plus nothing else), the
layout of the released datasets.

Lens distortion parameters are ignored when reading: GenXD conditions on pinhole rays only (the CamVid-30K
models are SIMPLE_PINHOLE / PINHOLE / SIMPLE_RADIAL with tiny k). Image ids are not in frame order in COLMAP
output, so frames are sorted by name.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile

import numpy as np

from genxd_jax.data.cameras import normalised_intrinsics, qvec_to_rotmat, rt_to_matrix
from genxd_jax.data.errors import BadSceneError

# model_id → (name, number of params, how to read fx, fy, cx, cy from params).
_SINGLE_F = lambda p: (p[0], p[0], p[1], p[2])  # noqa: E731
_DUAL_F = lambda p: (p[0], p[1], p[2], p[3])  # noqa: E731
CAMERA_MODELS = {
    0: ("SIMPLE_PINHOLE", 3, _SINGLE_F),
    1: ("PINHOLE", 4, _DUAL_F),
    2: ("SIMPLE_RADIAL", 4, _SINGLE_F),
    3: ("RADIAL", 5, _SINGLE_F),
    4: ("OPENCV", 8, _DUAL_F),
    5: ("OPENCV_FISHEYE", 8, _DUAL_F),
    6: ("FULL_OPENCV", 12, _DUAL_F),
    7: ("FOV", 5, _DUAL_F),
    8: ("SIMPLE_RADIAL_FISHEYE", 4, _SINGLE_F),
    9: ("RADIAL_FISHEYE", 5, _SINGLE_F),
    10: ("THIN_PRISM_FISHEYE", 12, _DUAL_F),
}
_MODEL_IDS = {name: mid for mid, (name, _, _) in CAMERA_MODELS.items()}
# Files a current COLMAP writes besides the three of the released layout.
_EXTRA_FILES = ("rigs.bin", "frames.bin")


def _pycolmap():
    import pycolmap  # a runtime dependency; imported lazily so that `genxd_jax.data` imports stay light

    return pycolmap


@dataclasses.dataclass(frozen=True)
class ColmapCamera:
    model: str
    width: int
    height: int
    params: np.ndarray  # (n,) float64, pixels

    def normalised_intrinsics(self) -> np.ndarray:
        """(3, 3) intrinsics normalised by (width, height)."""
        if self.model not in _MODEL_IDS:
            raise BadSceneError("bad_layout", f"unsupported COLMAP camera model {self.model}")
        fx, fy, cx, cy = CAMERA_MODELS[_MODEL_IDS[self.model]][2](self.params)
        return normalised_intrinsics(fx, fy, cx, cy, self.width, self.height)


@dataclasses.dataclass(frozen=True)
class ColmapImage:
    name: str
    camera_id: int
    w2c: np.ndarray  # (4, 4) float64, OpenCV axes


def load_reconstruction(model_dir: str):
    """``pycolmap.Reconstruction`` of a model folder; unreadable or truncated files raise ``bad_layout``."""
    for name in ("cameras.bin", "images.bin"):
        if not os.path.isfile(os.path.join(model_dir, name)):
            raise BadSceneError("bad_layout", f"missing COLMAP file {os.path.join(model_dir, name)}")
    pycolmap = _pycolmap()
    try:
        if os.path.isfile(os.path.join(model_dir, "points3D.bin")):
            return pycolmap.Reconstruction(model_dir)
        # A model without points3D.bin (allowed by the readers of the released data): read it from a temporary
        # copy that has an empty points file, since pycolmap wants all three.
        with tempfile.TemporaryDirectory() as tmp:
            for name in ("cameras.bin", "images.bin"):
                os.symlink(os.path.abspath(os.path.join(model_dir, name)), os.path.join(tmp, name))
            with open(os.path.join(tmp, "points3D.bin"), "wb") as f:
                f.write(b"\x00" * 8)
            return pycolmap.Reconstruction(tmp)
    except (ValueError, RuntimeError, OSError, IndexError, KeyError) as err:  # pycolmap raises all of them
        raise BadSceneError("bad_layout", f"unreadable COLMAP model {model_dir}: {err}") from err


def _camera(cam) -> ColmapCamera:
    name = cam.model.name if hasattr(cam.model, "name") else str(cam.model)
    return ColmapCamera(name, int(cam.width), int(cam.height), np.asarray(cam.params, np.float64).copy())


def read_cameras(model_dir: str) -> dict[int, ColmapCamera]:
    """{camera_id: ColmapCamera} of a model folder."""
    rec = load_reconstruction(model_dir)
    return {int(cid): _camera(cam) for cid, cam in rec.cameras.items()}


def _images(rec, model_dir: str) -> list[ColmapImage]:
    images = []
    for img in rec.images.values():
        if not img.has_pose:
            continue  # not registered: no pose, not a frame of the scene
        pose = img.cam_from_world()
        x, y, z, w = np.asarray(pose.rotation.quat, np.float64)
        tvec = np.asarray(pose.translation, np.float64)
        if not np.all(np.isfinite(tvec)):
            raise BadSceneError("nonfinite_pose", f"{model_dir}: non-finite translation of {img.name}")
        w2c = rt_to_matrix(qvec_to_rotmat(np.array([w, x, y, z])), tvec)
        images.append(ColmapImage(img.name, int(img.camera_id), w2c))
    return images


def read_images(model_dir: str) -> list[ColmapImage]:
    """Registered images (pose + camera id + name) of a model folder, sorted by name."""
    return sorted(_images(load_reconstruction(model_dir), model_dir), key=lambda im: im.name)


def find_model_dir(root: str) -> str:
    """The sparse model folder of a clip: ``root/0`` (CamVid-30K), ``root/sparse/0`` (MVImgNet) or
    ``root/sparse``."""
    for sub in ("0", os.path.join("sparse", "0"), "sparse", "."):
        cand = os.path.join(root, sub)
        if os.path.isfile(os.path.join(cand, "cameras.bin")) and os.path.isfile(
            os.path.join(cand, "images.bin")
        ):
            return cand
    raise BadSceneError(
        "bad_layout", f"no COLMAP model (0/, sparse/0/ or sparse/ with cameras.bin) under {root}"
    )


def read_colmap_model(model_dir: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Reads a sparse model: (names sorted, c2w (N, 4, 4) OpenCV, intrinsics (N, 3, 3) normalised)."""
    rec = load_reconstruction(model_dir)
    cameras = {int(cid): _camera(cam) for cid, cam in rec.cameras.items()}
    images = sorted(_images(rec, model_dir), key=lambda im: im.name)
    if not images:
        raise BadSceneError("too_few_frames", f"{model_dir}: no registered images")
    missing = {im.camera_id for im in images} - set(cameras)
    if missing:
        raise BadSceneError("bad_layout", f"{model_dir}: images refer to unknown cameras {sorted(missing)}")
    w2c = np.stack([im.w2c for im in images])
    # w2c comes from a normalised quaternion, so its inverse is the rigid inverse.
    c2w = np.zeros_like(w2c)
    c2w[:, :3, :3] = np.transpose(w2c[:, :3, :3], (0, 2, 1))
    c2w[:, :3, 3] = -np.einsum("nij,nj->ni", c2w[:, :3, :3], w2c[:, :3, 3])
    c2w[:, 3, 3] = 1.0
    intr = np.stack([cameras[im.camera_id].normalised_intrinsics() for im in images])
    return [im.name for im in images], c2w, intr


def finalize_model_dir(model_dir: str) -> None:
    """Makes a pycolmap-written folder the released layout: drops ``rigs.bin``/``frames.bin`` (every camera
    is a trivial rig) so that the folder holds exactly ``cameras.bin``, ``images.bin``, ``points3D.bin``."""
    for name in _EXTRA_FILES:
        path = os.path.join(model_dir, name)
        if os.path.exists(path):
            os.remove(path)


def write_colmap_model(
    model_dir: str,
    names: list[str],
    w2c: np.ndarray,
    cameras: list[tuple[str, int, int, list[float]]],
    *,
    camera_index=None,
    image_ids=None,
    points=None,
) -> None:
    """Writes a model through pycolmap: ``cameras.bin``, ``images.bin``, ``points3D.bin`` (released layout).

    ``names``: image names; ``w2c``: (N, 4, 4) world-to-camera, OpenCV axes; ``cameras``: list of
    (model name, width, height, params in pixels, COLMAP pixel convention); ``camera_index``: (N,) index into
    ``cameras`` per image (default: image i uses camera i); ``image_ids``: (N,) COLMAP ids (default 1..N);
    ``points``: optional (P, 3) world points with no observations.
    """
    pycolmap = _pycolmap()
    n = len(names)
    camera_index = list(range(n)) if camera_index is None else [int(c) for c in camera_index]
    image_ids = list(range(1, n + 1)) if image_ids is None else [int(i) for i in image_ids]
    rec = pycolmap.Reconstruction()
    for cid, (model, width, height, params) in enumerate(cameras, start=1):
        cam = pycolmap.Camera(
            model=model, width=int(width), height=int(height), params=[float(p) for p in params], camera_id=cid
        )
        rec.add_camera_with_trivial_rig(cam)
    for i in range(n):
        rot = np.asarray(w2c[i][:3, :3], np.float64)
        if np.all(np.isfinite(rot)):
            from genxd_jax.data.cameras import rotmat_to_qvec

            w, x, y, z = rotmat_to_qvec(rot)
            quat = np.array([x, y, z, w])
        else:
            quat = np.full(4, np.nan)
        pose = pycolmap.Rigid3d(pycolmap.Rotation3d(quat), np.asarray(w2c[i][:3, 3], np.float64))
        img = pycolmap.Image(name=names[i], camera_id=camera_index[i] + 1, image_id=image_ids[i])
        rec.add_image_with_trivial_frame(img, pose)
    for p in [] if points is None else np.asarray(points, np.float64):
        rec.add_point3D(p, pycolmap.Track(), np.zeros(3, np.uint8))
    os.makedirs(model_dir, exist_ok=True)
    rec.write_binary(model_dir)
    finalize_model_dir(model_dir)
